//! Other servers' signing keys (spec: Server-Server API, "Retrieving server keys"): asked of the
//! server itself, then of the configured notaries; every response checked (server name, its
//! own signatures, the notary's signature) before its keys are used; kept in memory and in the
//! database. A key is used only while it is valid at the time that matters (now for requests,
//! the event's timestamp for events).

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime},
};

use ruma::{
    CanonicalJsonObject, CanonicalJsonValue, MilliSecondsSinceUnixEpoch, OwnedServerName,
    ServerName, SigningKeyAlgorithm, UInt,
    api::federation::discovery::{OldVerifyKey, ServerSigningKeys, VerifyKey},
    serde::Base64,
    signatures::{sign_json, to_canonical_json_string_for_signing, verify_canonical_json_bytes},
};
use serde_json::json;

use super::{FederationClient, FederationError};
use crate::{
    Config,
    keys::SigningKey,
    store::{Store, StoredServerKey},
};

/// How long our own key response says it may be cached: Synapse's default, one day.
const OWN_KEY_VALIDITY: Duration = Duration::from_secs(24 * 60 * 60);
/// The spec's cap: a fetched key is trusted for at most 7 days from when it was fetched.
const MAX_KEY_VALIDITY: Duration = Duration::from_secs(7 * 24 * 60 * 60);
/// After a fetch that did not produce the wanted key, the server is not asked again before this.
const REFETCH_COOLDOWN: Duration = Duration::from_secs(30);

fn now_ms() -> u64 {
    MilliSecondsSinceUnixEpoch::now().get().into()
}

pub struct ServerKeys {
    config: Arc<Config>,
    store: Store,
    signing_key: Arc<SigningKey>,
    client: Arc<FederationClient>,
    cache: Mutex<HashMap<OwnedServerName, KnownKeys>>,
    failed_fetches: Mutex<HashMap<OwnedServerName, Instant>>,
}

/// A server's keys by key ID: (unpadded base64 key, valid until in ms).
type KnownKeys = HashMap<String, (String, u64)>;

/// A key response that passed the checks: the keys it vouches for and until when.
struct VerifiedResponse {
    object: CanonicalJsonObject,
    valid_until_ts: u64,
    keys: Vec<StoredServerKey>,
}

impl ServerKeys {
    pub fn new(
        config: Arc<Config>,
        store: Store,
        signing_key: Arc<SigningKey>,
        client: Arc<FederationClient>,
    ) -> Self {
        Self {
            config,
            store,
            signing_key,
            client,
            cache: Mutex::default(),
            failed_fetches: Mutex::default(),
        }
    }

    /// This server's key response (`GET /_matrix/key/v2/server`), signed by itself.
    pub fn own_response(&self) -> Result<CanonicalJsonObject, FederationError> {
        let internal = |reason: String| FederationError::Request {
            server: self.config.server_name.clone(),
            reason,
        };
        let valid_until =
            MilliSecondsSinceUnixEpoch::from_system_time(SystemTime::now() + OWN_KEY_VALIDITY)
                .ok_or_else(|| internal("clock out of range".to_owned()))?;
        let mut keys = ServerSigningKeys::new(self.config.server_name.clone(), valid_until);
        let key_id = self
            .signing_key
            .key_id()
            .try_into()
            .map_err(|e| internal(format!("signing key id: {e}")))?;
        let public = Base64::parse(self.signing_key.public_key_base64())
            .map_err(|e| internal(format!("public key: {e}")))?;
        keys.verify_keys.insert(key_id, VerifyKey::new(public));
        for old in self.signing_key.old_keys() {
            let key_id = old
                .key_id
                .as_str()
                .try_into()
                .map_err(|e| internal(format!("old signing key id {}: {e}", old.key_id)))?;
            let public = Base64::parse(&old.public_key)
                .map_err(|e| internal(format!("old public key {}: {e}", old.key_id)))?;
            let expired = MilliSecondsSinceUnixEpoch(UInt::new_saturating(old.expired_ts));
            keys.old_verify_keys
                .insert(key_id, OldVerifyKey::new(expired, public));
        }
        let CanonicalJsonValue::Object(mut object) =
            ruma::canonical_json::to_canonical_value(&keys).map_err(|e| internal(e.to_string()))?
        else {
            return Err(internal(
                "server keys did not serialize to an object".to_owned(),
            ));
        };
        sign_json(
            self.config.server_name.as_str(),
            self.signing_key.pair(),
            &mut object,
        )
        .map_err(|e| internal(format!("signing failed: {e}")))?;
        Ok(object)
    }

    /// The public key `key_id` of `server` (unpadded base64), valid at `valid_at` (ms).
    pub async fn verify_key(
        &self,
        server: &ServerName,
        key_id: &str,
        valid_at: u64,
    ) -> Result<String, FederationError> {
        if server == self.config.server_name {
            if key_id == self.signing_key.key_id() {
                return Ok(self.signing_key.public_key_base64().to_owned());
            }
            return self
                .signing_key
                .old_keys()
                .iter()
                .find(|old| old.key_id == key_id && old.expired_ts >= valid_at)
                .map(|old| old.public_key.clone())
                .ok_or_else(|| {
                    keys_error(
                        server,
                        format!("this server has no key {key_id} valid at {valid_at}"),
                    )
                });
        }
        if let Some(key) = self.known_key(server, key_id, valid_at).await? {
            return Ok(key);
        }
        if self.recently_failed(server) {
            return Err(keys_error(
                server,
                format!("key {key_id} is unknown and the server was asked moments ago"),
            ));
        }
        let fetched = self.fetch(server).await;
        if let Some(key) = self.known_key(server, key_id, valid_at).await? {
            return Ok(key);
        }
        self.failed_fetches
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(server.to_owned(), Instant::now());
        Err(match fetched {
            Err(e) => e,
            Ok(()) => keys_error(
                server,
                format!("the server has no key {key_id} valid at {valid_at}"),
            ),
        })
    }

    fn recently_failed(&self, server: &ServerName) -> bool {
        self.failed_fetches
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(server)
            .is_some_and(|at| at.elapsed() < REFETCH_COOLDOWN)
    }

    /// A cached or stored key that is valid at `valid_at`.
    async fn known_key(
        &self,
        server: &ServerName,
        key_id: &str,
        valid_at: u64,
    ) -> Result<Option<String>, FederationError> {
        let cached = self
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(server)
            .map(|keys| keys.get(key_id).cloned());
        let entry = match cached {
            Some(entry) => entry,
            None => {
                let stored = self
                    .store
                    .server_signing_keys(server)
                    .await
                    .map_err(|e| keys_error(server, e.to_string()))?;
                let keys: KnownKeys = stored
                    .into_iter()
                    .map(|k| {
                        let until = u64::try_from(k.valid_until_ts).unwrap_or_default();
                        (k.key_id, (k.verify_key, until))
                    })
                    .collect();
                let entry = keys.get(key_id).cloned();
                self.cache
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(server.to_owned(), keys);
                entry
            }
        };
        Ok(entry
            .filter(|(_, until)| *until >= valid_at)
            .map(|(key, _)| key))
    }

    /// Asks the server, then each notary, and stores the first response that verifies.
    async fn fetch(&self, server: &ServerName) -> Result<(), FederationError> {
        let direct = self.fetch_direct(server).await;
        let mut error = match direct {
            Ok(response) => return self.remember(server, response).await,
            Err(e) => e,
        };
        for notary in &self.config.federation.trusted_key_servers {
            if notary == server {
                continue;
            }
            match self.fetch_from_notary(notary, server).await {
                Ok(response) => return self.remember(server, response).await,
                Err(e) => error = e,
            }
        }
        Err(error)
    }

    async fn fetch_direct(&self, server: &ServerName) -> Result<VerifiedResponse, FederationError> {
        let body = self
            .client
            .get_json(server, "/_matrix/key/v2/server")
            .await?;
        let object: CanonicalJsonObject = serde_json::from_slice(&body)
            .map_err(|e| keys_error(server, format!("the key response is not JSON: {e}")))?;
        verify_response(server, object, now_ms())
    }

    async fn fetch_from_notary(
        &self,
        notary: &ServerName,
        server: &ServerName,
    ) -> Result<VerifiedResponse, FederationError> {
        let body = self
            .client
            .post_json(
                notary,
                "/_matrix/key/v2/query",
                &json!({ "server_keys": { server.as_str(): {} } }),
            )
            .await?;
        #[derive(serde::Deserialize)]
        struct NotaryResponse {
            server_keys: Vec<CanonicalJsonObject>,
        }
        let response: NotaryResponse = serde_json::from_slice(&body)
            .map_err(|e| keys_error(server, format!("notary {notary} answered nonsense: {e}")))?;
        let mut last_error = keys_error(server, format!("notary {notary} has no keys for it"));
        for object in response.server_keys {
            if object
                .get("server_name")
                .and_then(CanonicalJsonValue::as_str)
                != Some(server.as_str())
            {
                continue;
            }
            match self.check_notary_signature(notary, &object).await {
                Ok(()) => match verify_response(server, object, now_ms()) {
                    Ok(verified) => return Ok(verified),
                    Err(e) => last_error = e,
                },
                Err(e) => last_error = e,
            }
        }
        Err(last_error)
    }

    /// The notary's own signature on a response it relays, checked with its keys (fetched
    /// from the notary itself).
    async fn check_notary_signature(
        &self,
        notary: &ServerName,
        object: &CanonicalJsonObject,
    ) -> Result<(), FederationError> {
        let key_ids: Vec<String> = signatures_of(object, notary.as_str())
            .map(|s| s.keys().cloned().collect())
            .unwrap_or_default();
        if key_ids.is_empty() {
            return Err(keys_error(
                notary,
                "the notary did not sign the response".to_owned(),
            ));
        }
        for key_id in key_ids {
            let key = Box::pin(self.verify_key(notary, &key_id, now_ms())).await?;
            verify_signature(object, notary.as_str(), &key_id, &key)
                .map_err(|reason| keys_error(notary, reason))?;
        }
        Ok(())
    }

    async fn remember(
        &self,
        server: &ServerName,
        response: VerifiedResponse,
    ) -> Result<(), FederationError> {
        let json = serde_json::to_string(&response.object)
            .map_err(|e| keys_error(server, e.to_string()))?;
        self.store
            .save_server_keys(
                server,
                json,
                i64::try_from(response.valid_until_ts).unwrap_or(i64::MAX),
                response.keys,
            )
            .await
            .map_err(|e| keys_error(server, e.to_string()))?;
        // Reloaded from the store, which merged old and new keys.
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(server);
        Ok(())
    }

    /// The key responses of `server` valid until at least `minimum_valid_until` (ms), as a
    /// notary serves them: the server's own signature kept, ours added.
    pub async fn notary_responses(
        &self,
        server: &ServerName,
        minimum_valid_until: u64,
    ) -> Result<Vec<CanonicalJsonObject>, FederationError> {
        let object = if server == self.config.server_name {
            self.own_response()?
        } else {
            let stored = self
                .store
                .server_key_response(server)
                .await
                .map_err(|e| keys_error(server, e.to_string()))?
                .filter(|(_, until)| {
                    u64::try_from(*until).unwrap_or_default() >= minimum_valid_until
                })
                .and_then(|(json, _)| serde_json::from_str::<CanonicalJsonObject>(&json).ok());
            match stored {
                Some(object) => object,
                None => {
                    let response = self.fetch_direct(server).await?;
                    let object = response.object.clone();
                    self.remember(server, response).await?;
                    object
                }
            }
        };
        Ok(vec![key_response_with_notary_signature(
            object,
            &self.config.server_name,
            &self.signing_key,
        )?])
    }
}

/// `object` with this server's signature added beside the ones it has.
pub fn key_response_with_notary_signature(
    mut object: CanonicalJsonObject,
    server_name: &ServerName,
    signing_key: &SigningKey,
) -> Result<CanonicalJsonObject, FederationError> {
    sign_json(server_name.as_str(), signing_key.pair(), &mut object).map_err(|e| {
        FederationError::Request {
            server: server_name.to_owned(),
            reason: format!("signing failed: {e}"),
        }
    })?;
    Ok(object)
}

fn keys_error(server: &ServerName, reason: String) -> FederationError {
    FederationError::Keys {
        server: server.to_owned(),
        reason,
    }
}

fn signatures_of<'a>(
    object: &'a CanonicalJsonObject,
    entity: &str,
) -> Option<&'a BTreeMap<String, CanonicalJsonValue>> {
    match object.get("signatures")? {
        CanonicalJsonValue::Object(signatures) => match signatures.get(entity)? {
            CanonicalJsonValue::Object(by_key) => Some(by_key),
            _ => None,
        },
        _ => None,
    }
}

/// Checks `entity`'s signature with `key_id` on `object` against `key` (unpadded base64).
pub(super) fn verify_signature(
    object: &CanonicalJsonObject,
    entity: &str,
    key_id: &str,
    key: &str,
) -> Result<(), String> {
    let signature = signatures_of(object, entity)
        .and_then(|s| s.get(key_id))
        .and_then(CanonicalJsonValue::as_str)
        .ok_or_else(|| format!("no signature by {entity} with {key_id}"))?;
    let signature = Base64::<ruma::serde::base64::Standard>::parse(signature)
        .map_err(|e| format!("signature {key_id} is not base64: {e}"))?;
    let key = Base64::<ruma::serde::base64::Standard>::parse(key)
        .map_err(|e| format!("key {key_id} is not base64: {e}"))?;
    let canonical =
        to_canonical_json_string_for_signing(object).map_err(|e| format!("not canonical: {e}"))?;
    verify_canonical_json_bytes(
        &SigningKeyAlgorithm::Ed25519,
        key.as_bytes(),
        signature.as_bytes(),
        canonical.as_bytes(),
    )
    .map_err(|e| format!("signature {key_id} of {entity} does not verify: {e}"))
}

/// Checks a server's key response: it names the server, is still valid, and every key in
/// `verify_keys` signed it. Validity is capped at 7 days from now (spec).
fn verify_response(
    server: &ServerName,
    object: CanonicalJsonObject,
    now: u64,
) -> Result<VerifiedResponse, FederationError> {
    let fail = |reason: String| keys_error(server, reason);
    if object
        .get("server_name")
        .and_then(CanonicalJsonValue::as_str)
        != Some(server.as_str())
    {
        return Err(fail("the key response names another server".to_owned()));
    }
    let valid_until = match object.get("valid_until_ts") {
        Some(CanonicalJsonValue::Integer(ts)) => u64::try_from(i64::from(*ts)).unwrap_or_default(),
        _ => return Err(fail("the key response has no valid_until_ts".to_owned())),
    };
    let capped = valid_until.min(now + MAX_KEY_VALIDITY.as_millis() as u64);
    let mut keys = Vec::new();
    let verify_keys = match object.get("verify_keys") {
        Some(CanonicalJsonValue::Object(keys)) if !keys.is_empty() => keys,
        _ => return Err(fail("the key response lists no verify_keys".to_owned())),
    };
    for (key_id, entry) in verify_keys {
        let key = entry
            .as_object()
            .and_then(|e| e.get("key"))
            .and_then(CanonicalJsonValue::as_str)
            .ok_or_else(|| fail(format!("verify key {key_id} has no key")))?;
        if !key_id.starts_with("ed25519:") {
            continue;
        }
        verify_signature(&object, server.as_str(), key_id, key).map_err(fail)?;
        keys.push(StoredServerKey {
            key_id: key_id.clone(),
            verify_key: key.to_owned(),
            valid_until_ts: i64::try_from(capped).unwrap_or(i64::MAX),
        });
    }
    if keys.is_empty() {
        return Err(fail("the key response has no ed25519 key".to_owned()));
    }
    if let Some(CanonicalJsonValue::Object(old)) = object.get("old_verify_keys") {
        for (key_id, entry) in old {
            let entry = entry.as_object();
            let key = entry
                .and_then(|e| e.get("key"))
                .and_then(CanonicalJsonValue::as_str);
            let expired = entry.and_then(|e| match e.get("expired_ts") {
                Some(CanonicalJsonValue::Integer(ts)) => Some(i64::from(*ts)),
                _ => None,
            });
            if let (Some(key), Some(expired)) = (key, expired) {
                keys.push(StoredServerKey {
                    key_id: key_id.clone(),
                    verify_key: key.to_owned(),
                    valid_until_ts: expired,
                });
            }
        }
    }
    Ok(VerifiedResponse {
        object,
        valid_until_ts: valid_until,
        keys,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signed_response(key: &SigningKey, server: &str, valid_until: u64) -> CanonicalJsonObject {
        let mut object: CanonicalJsonObject = serde_json::from_value(json!({
            "server_name": server,
            "valid_until_ts": valid_until,
            "verify_keys": { key.key_id(): { "key": key.public_key_base64() } },
            "old_verify_keys": {},
        }))
        .unwrap();
        sign_json(server, key.pair(), &mut object).unwrap();
        object
    }

    fn test_key() -> SigningKey {
        let dir = tempfile::tempdir().unwrap();
        SigningKey::load_or_generate(&dir.path().join("k")).unwrap()
    }

    #[test]
    fn a_self_signed_response_verifies_and_is_capped_at_seven_days() {
        let key = test_key();
        let server = ServerName::parse("remote.example").unwrap();
        let now = 1_000_000;
        let far = now + 365 * 24 * 3600 * 1000;
        let verified =
            verify_response(&server, signed_response(&key, "remote.example", far), now).unwrap();
        assert_eq!(verified.keys.len(), 1);
        assert_eq!(
            verified.keys[0].valid_until_ts,
            i64::try_from(now + MAX_KEY_VALIDITY.as_millis() as u64).unwrap()
        );
    }

    #[test]
    fn tampered_or_misnamed_responses_are_refused() {
        let key = test_key();
        let server = ServerName::parse("remote.example").unwrap();
        let mut tampered = signed_response(&key, "remote.example", 5_000);
        tampered.insert(
            "valid_until_ts".to_owned(),
            CanonicalJsonValue::Integer(9_000u32.into()),
        );
        assert!(verify_response(&server, tampered, 1_000).is_err());
        let other = signed_response(&key, "other.example", 5_000);
        assert!(verify_response(&server, other, 1_000).is_err());
        let mut unsigned = signed_response(&key, "remote.example", 5_000);
        unsigned.remove("signatures");
        assert!(verify_response(&server, unsigned, 1_000).is_err());
    }
}
