//! Push rules (spec: "Push Rules", "Push Rules: API"): each user's ruleset, kept as the global
//! account data `m.push_rules` so that it reaches clients through sync like any account data,
//! and cached in memory because every new event is evaluated against its recipients' rules.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
};

use ruma::{
    OwnedUserId, UserId,
    events::push_rules::PushRulesEventContent,
    push::{
        Action, AnyPushRule, InsertPushRuleError, NewPushRule, RemovePushRuleError, RuleKind,
        Ruleset,
    },
};

use super::Users;
use crate::{Error, Result, store::Store};

/// The account data type the ruleset is stored as.
const PUSH_RULES: &str = "m.push_rules";

/// Every user's ruleset, read from the database once and kept up to date by every change.
pub struct PushRules {
    store: Store,
    cache: Mutex<HashMap<OwnedUserId, Arc<Ruleset>>>,
    /// Changes read, modify and write a whole ruleset: one at a time, so that two concurrent
    /// changes cannot lose one another. They are rare next to reads.
    changes: tokio::sync::Mutex<()>,
}

impl PushRules {
    pub fn new(store: Store) -> Self {
        Self {
            store,
            cache: Mutex::default(),
            changes: tokio::sync::Mutex::default(),
        }
    }

    fn cache(&self) -> MutexGuard<'_, HashMap<OwnedUserId, Arc<Ruleset>>> {
        // Every update is a single map operation: a panic elsewhere cannot leave it half done.
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The user's ruleset: the stored one, or the server-default rules if they never changed any.
    pub async fn ruleset(&self, user_id: &UserId) -> Result<Arc<Ruleset>> {
        if let Some(ruleset) = self.cache().get(user_id) {
            return Ok(ruleset.clone());
        }
        let loaded = Arc::new(self.load(user_id).await?);
        // A change that committed while this load ran has put its newer ruleset here already.
        Ok(self
            .cache()
            .entry(user_id.to_owned())
            .or_insert(loaded)
            .clone())
    }

    async fn load(&self, user_id: &UserId) -> Result<Ruleset> {
        let Some(stored) = self.store.account_data(user_id, None, PUSH_RULES).await? else {
            return Ok(Ruleset::server_default(user_id));
        };
        match serde_json::from_str::<PushRulesEventContent>(&stored) {
            Ok(content) => {
                // Stored with the server-default rules of its time: those of this version
                // replace them, keeping whether the user enabled them and their actions.
                let mut ruleset = content.global;
                ruleset.update_with_server_default(Ruleset::server_default(user_id));
                Ok(ruleset)
            }
            Err(e) => {
                // Only this server writes it; falling back keeps the user's notifications
                // working rather than failing every event sent to them.
                tracing::warn!(%user_id, "stored push rules do not parse, using the defaults: {e}");
                Ok(Ruleset::server_default(user_id))
            }
        }
    }

    /// Applies `change` to the user's ruleset and stores the result; nothing is stored if it
    /// fails.
    async fn change<T>(
        &self,
        user_id: &UserId,
        change: impl FnOnce(&mut Ruleset) -> Result<T>,
    ) -> Result<T> {
        let _one_at_a_time = self.changes.lock().await;
        let mut ruleset = Ruleset::clone(&*self.ruleset(user_id).await?);
        let outcome = change(&mut ruleset)?;
        let content = PushRulesEventContent::new(ruleset);
        let json = serde_json::to_string(&content)
            .map_err(|e| Error::Internal(format!("push rules do not serialise: {e}")))?;
        self.store
            .set_account_data(user_id, None, PUSH_RULES, &json)
            .await?;
        self.cache()
            .insert(user_id.to_owned(), Arc::new(content.global));
        Ok(outcome)
    }
}

fn rule_not_found(kind: &RuleKind, rule_id: &str) -> Error {
    Error::NotFound(format!("No push rule {kind}/{rule_id}"))
}

impl Users {
    /// Changes the user's rules; their devices hear of it through sync's account data.
    async fn change_push_rules<T>(
        &self,
        user_id: &UserId,
        change: impl FnOnce(&mut Ruleset) -> Result<T>,
    ) -> Result<T> {
        let outcome = self.push_rules.change(user_id, change).await?;
        self.notifier.wake([user_id]);
        Ok(outcome)
    }

    /// `GET /pushrules/`: the user's whole ruleset.
    pub async fn push_rules(&self, user_id: &UserId) -> Result<Arc<Ruleset>> {
        self.push_rules.ruleset(user_id).await
    }

    /// `GET /pushrules/global/{kind}/{ruleId}` (and its `/enabled` and `/actions`).
    pub async fn push_rule(
        &self,
        user_id: &UserId,
        kind: RuleKind,
        rule_id: &str,
    ) -> Result<AnyPushRule> {
        let ruleset = self.push_rules.ruleset(user_id).await?;
        ruleset
            .get(kind.clone(), rule_id)
            .map(|rule| rule.to_owned())
            .ok_or_else(|| rule_not_found(&kind, rule_id))
    }

    /// `PUT /pushrules/global/{kind}/{ruleId}`: adds or replaces a user-defined rule, placed
    /// relative to `before`/`after` if given. Server-default rules (IDs starting with a dot)
    /// cannot be written, only enabled, disabled or given other actions.
    pub async fn set_push_rule(
        &self,
        user_id: &UserId,
        rule: NewPushRule,
        before: Option<&str>,
        after: Option<&str>,
    ) -> Result<()> {
        self.change_push_rules(user_id, |ruleset| {
            ruleset.insert(rule, after, before).map_err(insert_error)
        })
        .await
    }

    /// `DELETE /pushrules/global/{kind}/{ruleId}`.
    pub async fn delete_push_rule(
        &self,
        user_id: &UserId,
        kind: RuleKind,
        rule_id: &str,
    ) -> Result<()> {
        self.change_push_rules(user_id, |ruleset| {
            ruleset.remove(kind.clone(), rule_id).map_err(|e| match e {
                // As Synapse: the user has no such rule of their own to delete.
                RemovePushRuleError::ServerDefault => Error::NotFound(format!(
                    "{rule_id} is a server-default rule and cannot be deleted"
                )),
                _ => rule_not_found(&kind, rule_id),
            })
        })
        .await
    }

    /// `PUT /pushrules/global/{kind}/{ruleId}/enabled`.
    pub async fn set_push_rule_enabled(
        &self,
        user_id: &UserId,
        kind: RuleKind,
        rule_id: &str,
        enabled: bool,
    ) -> Result<()> {
        self.change_push_rules(user_id, |ruleset| {
            ruleset
                .set_enabled(kind.clone(), rule_id, enabled)
                .map_err(|_| rule_not_found(&kind, rule_id))
        })
        .await
    }

    /// `PUT /pushrules/global/{kind}/{ruleId}/actions`.
    pub async fn set_push_rule_actions(
        &self,
        user_id: &UserId,
        kind: RuleKind,
        rule_id: &str,
        actions: Vec<Action>,
    ) -> Result<()> {
        self.change_push_rules(user_id, |ruleset| {
            ruleset
                .set_actions(kind.clone(), rule_id, actions)
                .map_err(|_| rule_not_found(&kind, rule_id))
        })
        .await
    }
}

/// The spec's (and Synapse's) errors for a rule that cannot be inserted: 400 `M_UNKNOWN`, or
/// `M_INVALID_PARAM` for a malformed rule ID.
fn insert_error(e: InsertPushRuleError) -> Error {
    match e {
        InsertPushRuleError::ServerDefaultRuleId => Error::Unknown(
            "Rule IDs starting with '.' are reserved for server-default rules".to_owned(),
        ),
        InsertPushRuleError::InvalidRuleId => {
            Error::InvalidParam("Rule IDs may not contain slashes or backslashes".to_owned())
        }
        InsertPushRuleError::RelativeToServerDefaultRule => {
            Error::Unknown("A rule cannot be placed relative to a server-default rule".to_owned())
        }
        InsertPushRuleError::UnknownRuleId => {
            Error::Unknown("The before/after rule is not one of your rules of this kind".to_owned())
        }
        InsertPushRuleError::BeforeHigherThanAfter => Error::Unknown(
            "The 'before' rule has a higher priority than the 'after' rule".to_owned(),
        ),
        other => Error::Unknown(other.to_string()),
    }
}
