//! Accounts, sessions, devices, profiles, account data and filters of local users.

mod account_data;
mod auth;
mod devices;
mod filters;
mod localpart;
pub mod presence;
mod profile;
mod push_rules;
mod registration;
pub mod secrets;
mod shared_secret;

use std::sync::Arc;

use rand::{Rng, distributions::Uniform};
use ruma::{DeviceId, OwnedDeviceId, OwnedServerName, OwnedUserId, UserId};

use crate::federation::edus::EduQueue;
use crate::{
    Config, Error, Result,
    ratelimit::RateLimiter,
    store::{KeepSessions, NewSession, Store},
    sync::Notifier,
    time::now_ms,
    uia::Uia,
};

pub use auth::{Authenticated, LoginIdentifier};
pub use push_rules::PushRules;
pub use registration::Registration;
pub use shared_secret::SharedSecretRegistration;

/// The authenticated sender of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub user_id: OwnedUserId,
    pub device_id: OwnedDeviceId,
}

/// A fresh login: the tokens exist in plain text only here, on their way to the client.
#[derive(Debug, Clone)]
pub struct Session {
    pub user_id: OwnedUserId,
    pub device_id: OwnedDeviceId,
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub expires_in_ms: Option<u64>,
}

/// Where a new session comes from.
pub struct SessionRequest<'a> {
    pub device_id: Option<&'a DeviceId>,
    pub display_name: Option<&'a str>,
    pub refresh_token: bool,
    pub ip: Option<&'a str>,
}

const ACCESS_TOKEN_PREFIX: &str = "tsr_";
const REFRESH_TOKEN_PREFIX: &str = "tsrf_";
/// The longest password accepted; argon2 on megabyte inputs would be a cheap way to burn CPU.
const MAX_PASSWORD_LENGTH: usize = 512;
/// Longest client-chosen device ID accepted.
const MAX_DEVICE_ID_BYTES: usize = 255;

pub struct Users {
    store: Store,
    config: Arc<Config>,
    rate_limiter: Arc<RateLimiter>,
    uia: Uia,
    shared_secret: shared_secret::Nonces,
    notifier: Arc<Notifier>,
    push_rules: Arc<PushRules>,
    /// Device list updates for other servers.
    edus: Arc<EduQueue>,
}

impl Users {
    pub fn new(
        store: Store,
        config: Arc<Config>,
        rate_limiter: Arc<RateLimiter>,
        notifier: Arc<Notifier>,
        push_rules: Arc<PushRules>,
        edus: Arc<EduQueue>,
    ) -> Self {
        Self {
            edus,
            store,
            config,
            rate_limiter,
            uia: Uia::default(),
            shared_secret: shared_secret::Nonces::default(),
            notifier,
            push_rules,
        }
    }

    fn server_name(&self) -> &OwnedServerName {
        &self.config.server_name
    }

    /// Resolves an access token to its user and device.
    pub async fn authenticate(&self, access_token: &str) -> Result<Caller> {
        let hash = secrets::token_hash(access_token);
        let info = self
            .store
            .access_token(&hash)
            .await?
            .ok_or(Error::UnknownToken { soft_logout: false })?;
        if info.expires_ts.is_some_and(|expires| expires <= now_ms()) {
            return Err(Error::UnknownToken { soft_logout: true });
        }
        if let Some(predecessor) = &info.predecessor_refresh_hash {
            // Once per refreshed token: its first use makes the old refresh token invalid.
            self.store
                .retire_refresh_predecessor(&hash, predecessor)
                .await?;
        }
        Ok(Caller {
            user_id: info.user_id,
            device_id: info.device_id,
        })
    }

    /// Creates a device (or reuses the given one) with new tokens.
    pub async fn open_session(
        &self,
        who: &Authenticated,
        request: SessionRequest<'_>,
    ) -> Result<Session> {
        let user_id = &who.user_id;
        let device_id = match request.device_id {
            Some(id) if id.as_str().is_empty() || id.as_str().len() > MAX_DEVICE_ID_BYTES => {
                return Err(Error::InvalidParam(format!(
                    "device_id must be 1 to {MAX_DEVICE_ID_BYTES} bytes"
                )));
            }
            Some(id) => id.to_owned(),
            None => new_device_id(),
        };
        let access_token = secrets::new_token(ACCESS_TOKEN_PREFIX);
        let refresh = request.refresh_token && self.config.registration.refresh_tokens;
        let refresh_token = refresh.then(|| secrets::new_token(REFRESH_TOKEN_PREFIX));
        let lifetime = self.config.auth.access_token_lifetime_ms;
        let now = now_ms();
        let expires_ts = refresh.then(|| now.saturating_add_unsigned(lifetime));
        let created = self
            .store
            .create_session(NewSession {
                user_id,
                device_id: &device_id,
                display_name: request.display_name,
                access_token_hash: &secrets::token_hash(&access_token),
                refresh_token_hash: refresh_token.as_deref().map(secrets::token_hash).as_deref(),
                expires_ts,
                now_ts: now,
                ip: request.ip,
                verified_password_hash: who.verified_password_hash(),
            })
            .await?;
        if !created {
            return Err(Error::Forbidden(
                "The account changed while logging in; try again".to_owned(),
            ));
        }
        Ok(Session {
            user_id: user_id.to_owned(),
            device_id,
            access_token,
            refresh_token,
            expires_in_ms: refresh.then_some(lifetime),
        })
    }

    /// Exchanges a refresh token for new tokens (spec: `POST /refresh`).
    pub async fn refresh(&self, refresh_token: &str) -> Result<Session> {
        let access_token = secrets::new_token(ACCESS_TOKEN_PREFIX);
        let new_refresh_token = secrets::new_token(REFRESH_TOKEN_PREFIX);
        let lifetime = self.config.auth.access_token_lifetime_ms;
        let (user_id, device_id) = self
            .store
            .rotate_refresh_token(
                &secrets::token_hash(refresh_token),
                &secrets::token_hash(&access_token),
                &secrets::token_hash(&new_refresh_token),
                now_ms().saturating_add_unsigned(lifetime),
            )
            .await?
            .ok_or(Error::UnknownToken { soft_logout: false })?;
        Ok(Session {
            user_id,
            device_id,
            access_token,
            refresh_token: Some(new_refresh_token),
            expires_in_ms: Some(lifetime),
        })
    }

    /// Ends the caller's session and deletes its device (spec: `POST /logout`).
    pub async fn logout(&self, caller: &Caller) -> Result<()> {
        self.delete_devices(&caller.user_id, std::slice::from_ref(&caller.device_id))
            .await?;
        Ok(())
    }

    /// Ends every session of the user and deletes all devices (spec: `POST /logout/all`).
    pub async fn logout_all(&self, user_id: &UserId) -> Result<()> {
        let before = self.device_ids(user_id).await?;
        self.store.delete_devices_except(user_id, None).await?;
        self.devices_deleted(user_id, &before).await
    }

    /// Sets a new password and ends the sessions `keep` does not keep, atomically.
    pub async fn set_password(
        &self,
        user_id: &UserId,
        password: &str,
        keep: KeepSessions<'_>,
    ) -> Result<()> {
        check_password_policy(password)?;
        let hash = secrets::hash_password(password.to_owned()).await?;
        let ends_sessions = !matches!(keep, KeepSessions::All);
        let before = self.device_ids(user_id).await?;
        if !self.store.set_password_hash(user_id, &hash, keep).await? {
            return Err(Error::NotFound(format!("No active account {user_id}")));
        }
        if ends_sessions {
            self.devices_deleted(user_id, &before).await?;
        }
        Ok(())
    }

    /// Deactivates the account for good: sessions, devices and profile are removed, the ID stays
    /// taken.
    pub async fn deactivate(&self, user_id: &UserId) -> Result<()> {
        let before = self.device_ids(user_id).await?;
        if !self.store.deactivate_account(user_id).await? {
            return Err(Error::NotFound(format!("No active account {user_id}")));
        }
        self.devices_deleted(user_id, &before).await
    }

    pub async fn list(&self) -> Result<Vec<crate::store::Account>> {
        Ok(self.store.accounts().await?)
    }

    pub async fn count(&self) -> Result<i64> {
        Ok(self.store.account_count().await?)
    }
}

fn check_password_policy(password: &str) -> Result<()> {
    if password.is_empty() {
        return Err(Error::WeakPassword(
            "The password must not be empty".to_owned(),
        ));
    }
    if password.chars().count() > MAX_PASSWORD_LENGTH {
        return Err(Error::InvalidParam(format!(
            "The password is too long (at most {MAX_PASSWORD_LENGTH} characters)"
        )));
    }
    Ok(())
}

/// Ten upper-case letters, like Synapse's device IDs.
fn new_device_id() -> OwnedDeviceId {
    let letters = Uniform::new_inclusive(b'A', b'Z');
    let id: String = rand::thread_rng()
        .sample_iter(letters)
        .take(10)
        .map(char::from)
        .collect();
    id.into()
}
