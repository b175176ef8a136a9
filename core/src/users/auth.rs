//! Proving who you are: password and token login, and the UIA stages that re-check it.

use ruma::{
    OwnedUserId, UserId,
    api::client::uiaa::{AuthData, AuthType, UserIdentifier},
};

use super::{Users, localpart::login_user_id, secrets};
use crate::{
    Error, Result,
    ratelimit::Action,
    store::ShortLivedToken,
    time::now_ms,
    uia::{Progress, StageOutcome},
};

/// How long a token from `/login/get_token` stays usable.
const LOGIN_TOKEN_LIFETIME_MS: u64 = 120_000;
const LOGIN_TOKEN_PREFIX: &str = "tsrl_";
/// How long an OpenID token proves its user's identity (Synapse: one hour).
const OPENID_TOKEN_LIFETIME_MS: u64 = 3_600_000;
const OPENID_TOKEN_PREFIX: &str = "tsro_";

/// Who just proved their identity: what a session may be opened for.
pub struct Authenticated {
    pub user_id: OwnedUserId,
    /// For password logins, the hash that was checked: the session is opened only if the
    /// account still has it.
    verified_password_hash: Option<String>,
}

impl Authenticated {
    /// A user authenticated other than by password (new account, login token).
    pub(super) fn fresh(user_id: OwnedUserId) -> Self {
        Self {
            user_id,
            verified_password_hash: None,
        }
    }

    pub(super) fn verified_password_hash(&self) -> Option<&str> {
        self.verified_password_hash.as_deref()
    }
}

/// The identifier of a password login or UIA password stage, as the client sent it.
pub enum LoginIdentifier<'a> {
    User(&'a str),
    Unsupported(&'a str),
}

impl<'a> LoginIdentifier<'a> {
    pub fn from_ruma(identifier: &'a UserIdentifier) -> Self {
        match identifier {
            UserIdentifier::Matrix(id) => Self::User(&id.user),
            other => Self::Unsupported(other.identifier_type()),
        }
    }
}

impl Users {
    /// `POST /user/{userId}/openid/request_token`: a token that proves to a third party that
    /// the caller is `user_id`; its lifetime in milliseconds.
    pub async fn create_openid_token(
        &self,
        caller: &UserId,
        user_id: &UserId,
    ) -> Result<(String, u64)> {
        if caller != user_id {
            return Err(Error::Forbidden(format!(
                "You cannot request an OpenID token for {user_id}"
            )));
        }
        let token = secrets::new_token(OPENID_TOKEN_PREFIX);
        let now = now_ms();
        let expires_ts = now.saturating_add(OPENID_TOKEN_LIFETIME_MS as i64);
        self.store
            .add_short_lived_token(
                ShortLivedToken::OpenId,
                &secrets::token_hash(&token),
                user_id,
                expires_ts,
                now,
            )
            .await?;
        Ok((token, OPENID_TOKEN_LIFETIME_MS))
    }

    /// `GET /_matrix/federation/v1/openid/userinfo`: whose OpenID token this is.
    pub async fn openid_token_user(&self, token: &str) -> Result<OwnedUserId> {
        self.store
            .openid_token_user(&secrets::token_hash(token), now_ms())
            .await?
            .ok_or(Error::UnknownToken { soft_logout: false })
    }

    /// `m.login.password`: who logged in, if the password is right and the account active.
    pub async fn password_login(
        &self,
        identifier: LoginIdentifier<'_>,
        password: &str,
    ) -> Result<Authenticated> {
        let user = match identifier {
            LoginIdentifier::User(user) => user,
            LoginIdentifier::Unsupported(kind) => {
                return Err(Error::Unknown(format!(
                    "Identifier type {kind} is not supported"
                )));
            }
        };
        let user_id = login_user_id(user, self.server_name())?;
        // Failures are counted per account, so guessing spread over many addresses is slowed
        // too. The token is taken before the check, so concurrent guesses cannot all pass, and
        // given back on success; while the budget is spent even the right password is refused.
        self.rate_limiter
            .check(Action::LoginFailure, user_id.as_str())?;
        let account = self.store.account(&user_id).await?;
        let hash = account.as_ref().and_then(|a| a.password_hash.clone());
        let valid = secrets::verify_password(password.to_owned(), hash.clone()).await?;
        match account {
            Some(account) if account.deactivated => Err(Error::UserDeactivated),
            Some(_) if valid => {
                self.rate_limiter
                    .refund(Action::LoginFailure, user_id.as_str());
                Ok(Authenticated {
                    user_id,
                    verified_password_hash: hash,
                })
            }
            _ => Err(Error::Forbidden("Invalid username or password".to_owned())),
        }
    }

    /// `m.login.token`: consumes a token made by [`Users::create_login_token`].
    pub async fn token_login(&self, token: &str) -> Result<Authenticated> {
        let user_id = self
            .store
            .take_login_token(&secrets::token_hash(token), now_ms())
            .await?
            .ok_or_else(|| Error::Forbidden("Invalid or expired login token".to_owned()))?;
        match self.store.account(&user_id).await? {
            Some(account) if !account.deactivated => Ok(Authenticated::fresh(user_id)),
            _ => Err(Error::UserDeactivated),
        }
    }

    /// A single-use token another device can log in with (spec: `POST /login/get_token`).
    pub async fn create_login_token(&self, user_id: &UserId) -> Result<(String, u64)> {
        let token = secrets::new_token(LOGIN_TOKEN_PREFIX);
        let now = now_ms();
        let expires_ts = now.saturating_add_unsigned(LOGIN_TOKEN_LIFETIME_MS);
        self.store
            .add_short_lived_token(
                ShortLivedToken::Login,
                &secrets::token_hash(&token),
                user_id,
                expires_ts,
                now,
            )
            .await?;
        Ok((token, LOGIN_TOKEN_LIFETIME_MS))
    }

    /// Re-authenticates `user_id` with its password for a sensitive action (UIA with one
    /// `m.login.password` stage). `purpose` binds the UIA session to that action.
    pub async fn confirm_with_password(
        &self,
        purpose: &'static str,
        user_id: &UserId,
        auth: Option<&AuthData>,
    ) -> Result<()> {
        let flows = [vec![AuthType::Password]];
        let session = auth.and_then(AuthData::session);
        let stage = auth.and_then(AuthData::auth_type);
        let session = match self
            .uia
            .begin(purpose, Some(user_id), &flows, session, stage)?
        {
            Progress::Challenge(challenge) => return Err(Error::AuthRequired(challenge)),
            Progress::Attempt { session, .. } => session,
        };
        let Some(AuthData::Password(password)) = auth else {
            return Err(Error::Internal(
                "UIA accepted a stage that is not in its flows".into(),
            ));
        };
        let outcome = match self
            .password_login(
                LoginIdentifier::from_ruma(&password.identifier),
                &password.password,
            )
            .await
        {
            Ok(who) if who.user_id == user_id => StageOutcome::Passed,
            Ok(_) => StageOutcome::Failed {
                errcode: "M_FORBIDDEN",
                message: "The password given is for another user".to_owned(),
            },
            Err(Error::Forbidden(message) | Error::Unknown(message)) => StageOutcome::Failed {
                errcode: "M_FORBIDDEN",
                message,
            },
            Err(other) => return Err(other),
        };
        self.uia
            .record(&session, &flows, AuthType::Password, outcome)
    }
}
