//! Synapse-compatible shared-secret registration (`/_synapse/admin/v1/register`), which bots,
//! scripts and test harnesses use to create accounts without UIA.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use hmac::{Hmac, Mac};
use ruma::OwnedServerName;
use sha1::Sha1;

use super::{Authenticated, Session, SessionRequest, Users, secrets};
use crate::{Error, Result};

const NONCE_LIFETIME: Duration = Duration::from_secs(60);
/// Outstanding nonces at most.
const MAX_NONCES: usize = 1000;

#[derive(Default)]
pub(super) struct Nonces(Mutex<HashMap<String, Instant>>);

impl Nonces {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        // A poisoned lock only means a panic elsewhere mid-update; the map stays consistent.
        let mut nonces = self.0.lock().unwrap_or_else(|e| e.into_inner());
        nonces.retain(|_, issued| issued.elapsed() < NONCE_LIFETIME);
        nonces
    }
}

pub struct SharedSecretRegistration<'a> {
    pub nonce: &'a str,
    pub username: &'a str,
    pub password: &'a str,
    pub admin: bool,
    pub user_type: Option<&'a str>,
    pub displayname: Option<&'a str>,
    /// Hex HMAC-SHA1 of `nonce\0username\0password\0(admin|notadmin)[\0user_type]`.
    pub mac: &'a str,
}

impl Users {
    fn shared_secret(&self) -> Result<&str> {
        match self.config.registration.shared_secret.value() {
            "" => Err(Error::Unknown(
                "Shared secret registration is not enabled".to_owned(),
            )),
            secret => Ok(secret),
        }
    }

    /// A single-use nonce for the next shared-secret registration.
    pub fn shared_secret_nonce(&self) -> Result<String> {
        self.shared_secret()?;
        let nonce = secrets::new_token("");
        let mut nonces = self.shared_secret.lock();
        // Unauthenticated callers mint these: past the cap the oldest is dropped.
        if nonces.len() >= MAX_NONCES
            && let Some(oldest) = nonces
                .iter()
                .min_by_key(|(_, issued)| **issued)
                .map(|(n, _)| n.clone())
        {
            nonces.remove(&oldest);
        }
        nonces.insert(nonce.clone(), Instant::now());
        Ok(nonce)
    }

    pub async fn register_with_shared_secret(
        &self,
        request: SharedSecretRegistration<'_>,
    ) -> Result<(Session, OwnedServerName)> {
        let secret = self.shared_secret()?;
        if self.shared_secret.lock().remove(request.nonce).is_none() {
            return Err(Error::Unknown("Unrecognised nonce".to_owned()));
        }
        let mut mac = Hmac::<Sha1>::new_from_slice(secret.as_bytes())
            .map_err(|e| Error::Internal(format!("HMAC key rejected: {e}")))?;
        mac.update(request.nonce.as_bytes());
        mac.update(b"\0");
        mac.update(request.username.as_bytes());
        mac.update(b"\0");
        mac.update(request.password.as_bytes());
        mac.update(b"\0");
        mac.update(if request.admin { b"admin" } else { b"notadmin" });
        if let Some(user_type) = request.user_type {
            mac.update(b"\0");
            mac.update(user_type.as_bytes());
        }
        let given =
            hex::decode(request.mac).map_err(|_| Error::Forbidden("HMAC incorrect".to_owned()))?;
        mac.verify_slice(&given)
            .map_err(|_| Error::Forbidden("HMAC incorrect".to_owned()))?;

        let user_id = self.admin_user_id(&request.username.to_lowercase())?;
        self.create_account(
            &user_id,
            Some(request.password),
            request.admin,
            request.displayname,
        )
        .await?;
        let session = self
            .open_session(
                &Authenticated::fresh(user_id.clone()),
                SessionRequest {
                    device_id: None,
                    display_name: None,
                    refresh_token: false,
                    ip: None,
                },
            )
            .await?;
        Ok((session, self.server_name().clone()))
    }
}
