//! Creating accounts: `/register` with UIA, and the admin paths (CLI, shared secret).

use rand::{Rng, distributions::Alphanumeric};
use ruma::{
    OwnedUserId, UserId,
    api::client::uiaa::{AuthData, AuthType},
};
use subtle::ConstantTimeEq;

use super::{
    Authenticated, Session, SessionRequest, Users, check_password_policy, localpart::new_user_id,
    secrets,
};
use crate::{
    Error, Result,
    config::RegistrationMode,
    store::NewAccount,
    time::now_ms,
    uia::{Progress, StageOutcome},
};

/// A `/register` request, already parsed.
pub struct Registration<'a> {
    pub localpart: Option<&'a str>,
    pub password: Option<&'a str>,
    pub auth: Option<&'a AuthData>,
    pub inhibit_login: bool,
    pub session: SessionRequest<'a>,
}

impl Users {
    /// Checks that a localpart could be registered now (spec: `GET /register/available`).
    /// `GET /register/available`. Refused while registration is disabled, as Synapse does, so
    /// that a closed server does not answer who has an account.
    pub async fn username_available(&self, localpart: &str) -> Result<()> {
        if self.config.registration.mode == RegistrationMode::Disabled {
            return Err(Error::Forbidden(
                "Registration is disabled on this server".to_owned(),
            ));
        }
        self.check_available(localpart).await.map(drop)
    }

    async fn check_available(&self, localpart: &str) -> Result<OwnedUserId> {
        let user_id = new_user_id(
            localpart,
            self.server_name(),
            &self.config.auth.reserved_localparts,
        )?;
        if self.store.account(&user_id).await?.is_some() {
            return Err(Error::UserInUse);
        }
        Ok(user_id)
    }

    /// Whether a registration token is valid (spec: `GET /register/m.login.registration_token/validity`).
    pub fn registration_token_valid(&self, token: &str) -> Result<bool> {
        if self.config.registration.mode != RegistrationMode::Token {
            return Err(Error::Forbidden(
                "Registration tokens are not in use on this server".to_owned(),
            ));
        }
        Ok(self
            .config
            .registration
            .tokens
            .iter()
            .any(|t| bool::from(t.value().as_bytes().ct_eq(token.as_bytes()))))
    }

    /// `/register`: runs UIA for the configured mode, creates the account, logs in unless asked
    /// not to. Returns the user ID and, with login, the session.
    pub async fn register(
        &self,
        request: Registration<'_>,
    ) -> Result<(OwnedUserId, Option<Session>)> {
        let flows = match self.config.registration.mode {
            RegistrationMode::Disabled => {
                return Err(Error::Forbidden(
                    "Registration is disabled on this server".to_owned(),
                ));
            }
            RegistrationMode::Open => vec![vec![AuthType::Dummy]],
            RegistrationMode::Token => vec![vec![AuthType::RegistrationToken]],
        };
        // Check the name before any UIA stage, so the client learns early that it must pick another.
        let user_id = match request.localpart {
            Some(localpart) => self.check_available(localpart).await?,
            None => self.check_available(&generated_localpart()).await?,
        };
        if let Some(password) = request.password {
            check_password_policy(password)?;
        }
        self.registration_uia(&flows, request.auth)?;
        self.create_account(&user_id, request.password, false, None)
            .await?;
        if request.inhibit_login {
            return Ok((user_id, None));
        }
        let session = self
            .open_session(&Authenticated::fresh(user_id.clone()), request.session)
            .await?;
        Ok((user_id, Some(session)))
    }

    fn registration_uia(&self, flows: &[Vec<AuthType>], auth: Option<&AuthData>) -> Result<()> {
        let session = auth.and_then(AuthData::session);
        let stage = auth.and_then(AuthData::auth_type);
        let (session, stage) = match self.uia.begin("register", None, flows, session, stage)? {
            Progress::Challenge(challenge) => return Err(Error::AuthRequired(challenge)),
            Progress::Attempt { session, stage } => (session, stage),
        };
        let outcome = match auth {
            Some(AuthData::Dummy(_)) => StageOutcome::Passed,
            Some(AuthData::RegistrationToken(t)) if self.registration_token_valid(&t.token)? => {
                StageOutcome::Passed
            }
            Some(AuthData::RegistrationToken(_)) => StageOutcome::Failed {
                errcode: "M_FORBIDDEN",
                message: "Invalid registration token".to_owned(),
            },
            _ => {
                return Err(Error::Internal(
                    "UIA accepted a stage that is not in its flows".into(),
                ));
            }
        };
        self.uia.record(&session, flows, stage, outcome)
    }

    /// Creates an account directly (admin paths, and `/register` after UIA), with its display
    /// name in the same write: `displayname`, or the localpart as Synapse does, so new users
    /// are not nameless in rooms.
    pub async fn create_account(
        &self,
        user_id: &UserId,
        password: Option<&str>,
        admin: bool,
        displayname: Option<&str>,
    ) -> Result<()> {
        let password_hash = match password {
            Some(password) => {
                check_password_policy(password)?;
                Some(secrets::hash_password(password.to_owned()).await?)
            }
            None => None,
        };
        let created = self
            .store
            .create_account(NewAccount {
                user_id,
                password_hash: password_hash.as_deref(),
                displayname: Some(displayname.unwrap_or(user_id.localpart())),
                admin,
                created_ts: now_ms(),
            })
            .await?;
        if !created {
            return Err(Error::UserInUse);
        }
        Ok(())
    }

    /// Validates a localpart given by an admin and builds the user ID.
    pub fn admin_user_id(&self, localpart: &str) -> Result<OwnedUserId> {
        // Admins may use reserved names: the reservation protects them from self-registration.
        new_user_id(localpart, self.server_name(), &[])
    }
}

/// A localpart for a registration that did not ask for one.
fn generated_localpart() -> String {
    let suffix: String = rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(12)
        .map(|b| char::from(b).to_ascii_lowercase())
        .collect();
    format!("u{suffix}")
}
