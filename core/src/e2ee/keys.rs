//! Device keys, one-time keys and fallback keys (spec: "Key management API"): upload, query,
//! claim.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
};

use ruma::{
    CanonicalJsonObject, OneTimeKeyAlgorithm, OwnedDeviceId, OwnedOneTimeKeyId, OwnedServerName,
    OwnedUserId, UInt, UserId,
    api::{
        client::keys::{claim_keys, get_keys, upload_keys},
        federation::keys as federation_keys,
    },
    encryption::{CrossSigningKey, DeviceKeys, OneTimeKey},
    serde::Raw,
};
use serde_json::json;

use super::{E2ee, signed_json};
use crate::{
    Error, Result,
    federation::{FederationClient, FederationError},
    store::{KeyClaim, KeyUpload, StoredSignature, UploadedKey},
    users::Caller,
};

/// A device's unclaimed one-time keys per algorithm and its unused fallback key algorithms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyCounts {
    pub one_time_keys: BTreeMap<OneTimeKeyAlgorithm, UInt>,
    pub unused_fallback_keys: Vec<OneTimeKeyAlgorithm>,
}

/// Most unclaimed one-time keys a device may hold: clients keep about 50 (half of what
/// vodozemac and libolm accounts hold); the cap keeps one device from filling the database.
const MAX_ONE_TIME_KEYS: usize = 1000;

fn too_many_one_time_keys() -> Error {
    Error::InvalidParam(format!(
        "A device may hold at most {MAX_ONE_TIME_KEYS} unclaimed one-time keys"
    ))
}

/// How long remote servers are waited for when the client gives no `timeout` (spec: 10 s).
const DEFAULT_REMOTE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
const MAX_REMOTE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Asks every server at once, waiting at most `timeout` (the client's, capped; 10 s by
/// default); the answers, and a `failures` entry for each server that failed.
async fn ask_servers<V, R, Ask, Answer>(
    remote: BTreeMap<OwnedServerName, BTreeMap<OwnedUserId, V>>,
    timeout: Option<std::time::Duration>,
    failures: &mut BTreeMap<String, serde_json::Value>,
    ask: Ask,
) -> Vec<(OwnedServerName, R)>
where
    Ask: Fn(OwnedServerName, BTreeMap<OwnedUserId, V>) -> Answer,
    Answer: Future<Output = std::result::Result<R, FederationError>>,
{
    let timeout = timeout
        .unwrap_or(DEFAULT_REMOTE_TIMEOUT)
        .min(MAX_REMOTE_TIMEOUT);
    let ask = &ask;
    let asked = remote.into_iter().map(|(server, users)| async move {
        let answer = tokio::time::timeout(timeout, ask(server.clone(), users)).await;
        (server, answer)
    });
    let mut answers = Vec::new();
    for (server, answer) in futures::future::join_all(asked).await {
        match answer {
            Ok(Ok(answer)) => answers.push((server, answer)),
            Ok(Err(e)) => {
                failures.insert(server.to_string(), failure(&e.to_string()));
            }
            Err(_) => {
                failures.insert(
                    server.to_string(),
                    failure("the server did not answer in time"),
                );
            }
        }
    }
    answers
}

/// The `failures` entry of a server that could not be asked (Synapse's shape).
fn failure(message: &str) -> serde_json::Value {
    json!({ "status": 503, "message": message })
}

fn raw<T>(json: &str) -> Result<Raw<T>> {
    serde_json::value::RawValue::from_string(json.to_owned())
        .map(Raw::from_json)
        .map_err(|e| Error::Internal(format!("stored key JSON does not parse: {e}")))
}

fn to_raw<T>(object: &CanonicalJsonObject) -> Result<Raw<T>> {
    raw(&signed_json::canonical(object))
}

/// The device keys of the calling device, checked: the caller's own user and device, and
/// signed by the device's own ed25519 key.
pub(super) fn self_signed_device_keys(
    caller: &Caller,
    keys: &Raw<DeviceKeys>,
) -> Result<CanonicalJsonObject> {
    let object = signed_json::parse(keys.json().get(), "device keys")?;
    keys.deserialize()
        .map_err(|e| Error::BadJson(format!("Invalid device keys: {e}")))?;
    if signed_json::string_field(&object, "user_id") != Some(caller.user_id.as_str())
        || signed_json::string_field(&object, "device_id") != Some(caller.device_id.as_str())
    {
        return Err(Error::InvalidParam(format!(
            "The device keys must be those of the calling device: user {} and device {}",
            caller.user_id, caller.device_id
        )));
    }
    let signing_key_id = format!("ed25519:{}", caller.device_id);
    let public_key = signed_json::keys(&object)
        .into_iter()
        .find(|(id, _)| *id == signing_key_id)
        .map(|(_, key)| key)
        .ok_or_else(|| {
            Error::InvalidParam(format!("The device keys lack the key {signing_key_id}"))
        })?;
    signed_json::verify(
        &object,
        caller.user_id.as_str(),
        &signing_key_id,
        public_key,
    )
    .map_err(|e| Error::InvalidParam(format!("Invalid device keys: {e}")))?;
    Ok(object)
}

impl E2ee {
    /// `POST /keys/upload`: stores the calling device's keys; returns its one-time key counts.
    pub async fn upload_keys(
        &self,
        caller: &Caller,
        request: upload_keys::v3::Request,
    ) -> Result<BTreeMap<OneTimeKeyAlgorithm, UInt>> {
        let device_keys = match &request.device_keys {
            Some(keys) => self.new_device_keys(caller, keys).await?,
            None => None,
        };
        let (one_time_keys, fallback_keys) =
            uploaded_key_sets(&request.one_time_keys, &request.fallback_keys)?;
        self.check_one_time_keys(caller, &one_time_keys).await?;
        let position = self
            .store
            .upload_keys(KeyUpload {
                user_id: caller.user_id.clone(),
                device_id: caller.device_id.clone(),
                device_keys,
                one_time_keys,
                fallback_keys,
            })
            .await?;
        self.forget_key_counts(&caller.user_id, &caller.device_id);
        if position.is_some() {
            self.notifier
                .wake_room_mates(&self.store, &caller.user_id)
                .await?;
            self.edus
                .device_changed(&caller.user_id, &caller.device_id, false)
                .await?;
        }
        Ok(self
            .device_key_counts(&caller.user_id, &caller.device_id)
            .await?
            .one_time_keys
            .clone())
    }

    /// Checks uploaded device keys: the caller's own, self-signed, and the same as any keys the
    /// device already has. Returns them as canonical JSON if the device has none yet.
    async fn new_device_keys(
        &self,
        caller: &Caller,
        keys: &Raw<DeviceKeys>,
    ) -> Result<Option<String>> {
        let object = self_signed_device_keys(caller, keys)?;
        let stored = self
            .store
            .device_keys_json(&caller.user_id, &caller.device_id)
            .await?;
        match stored {
            None => Ok(Some(signed_json::canonical(&object))),
            Some(stored) => {
                let stored = signed_json::parse(&stored, "stored device keys")?;
                if signed_json::signed_part(&stored, "device keys")?
                    == signed_json::signed_part(&object, "device keys")?
                {
                    Ok(None)
                } else {
                    Err(Error::InvalidParam(
                        "This device already has different keys; device keys cannot change \
                         (log in as a new device instead)"
                            .to_owned(),
                    ))
                }
            }
        }
    }

    /// A one-time key ID is used once: uploading it again is only allowed with the same key.
    /// And a device holds at most [`MAX_ONE_TIME_KEYS`] unclaimed keys.
    async fn check_one_time_keys(&self, caller: &Caller, keys: &[UploadedKey]) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let ids: Vec<&str> = keys.iter().map(|k| k.key_id.as_str()).collect();
        let stored = self
            .store
            .one_time_keys_named(&caller.user_id, &caller.device_id, &ids)
            .await?;
        for key in keys {
            if stored
                .get(&key.key_id)
                .is_some_and(|json| *json != key.key_json)
            {
                return Err(Error::InvalidParam(format!(
                    "The one-time key {} already exists with a different value",
                    key.key_id
                )));
            }
        }
        let unclaimed: u64 = self
            .device_key_counts(&caller.user_id, &caller.device_id)
            .await?
            .one_time_keys
            .values()
            .map(|count| u64::from(*count))
            .sum();
        let new = (keys.len() - stored.len()) as u64;
        if unclaimed + new > MAX_ONE_TIME_KEYS as u64 {
            return Err(too_many_one_time_keys());
        }
        Ok(())
    }

    pub(super) fn forget_key_counts(&self, user_id: &UserId, device_id: &ruma::DeviceId) {
        self.key_counts()
            .remove(&(user_id.to_owned(), device_id.to_owned()));
    }

    /// The device's key counts, from memory when nothing changed since they were last read.
    pub async fn device_key_counts(
        &self,
        user_id: &UserId,
        device_id: &ruma::DeviceId,
    ) -> Result<Arc<KeyCounts>> {
        let key = (user_id.to_owned(), device_id.to_owned());
        if let Some(counts) = self.key_counts().get(&key) {
            return Ok(counts.clone());
        }
        let one_time_keys = self
            .store
            .one_time_key_counts(user_id, device_id)
            .await?
            .into_iter()
            .map(|(algorithm, count)| {
                (
                    OneTimeKeyAlgorithm::from(algorithm),
                    UInt::try_from(count).unwrap_or_default(),
                )
            })
            .collect();
        let unused_fallback_keys = self
            .store
            .unused_fallback_key_algorithms(user_id, device_id)
            .await?
            .into_iter()
            .map(OneTimeKeyAlgorithm::from)
            .collect();
        let counts = Arc::new(KeyCounts {
            one_time_keys,
            unused_fallback_keys,
        });
        // A concurrent upload or claim may have changed the keys since the read: its own
        // removal of the entry runs after its write, so at worst the next read is one change
        // late, never stale for good.
        self.key_counts().insert(key, counts.clone());
        Ok(counts)
    }

    /// `POST /keys/query`: the device and cross-signing keys of the users asked for; those of
    /// remote users are asked of their servers at once, and a server that fails is listed in
    /// `failures`.
    pub async fn query_keys(
        &self,
        requester: &UserId,
        request: &get_keys::v3::Request,
        federation: &FederationClient,
    ) -> Result<get_keys::v3::Response> {
        let (local, remote) = self.split_by_server(&request.device_keys);
        let mut response = self.local_keys(Some(requester), &local).await?;
        let answers = ask_servers(
            remote,
            request.timeout,
            &mut response.failures,
            |server, users| async move {
                let request = federation_keys::get_keys::v1::Request::new(users);
                federation.send(&server, request).await
            },
        )
        .await;
        for (server, keys) in answers {
            // Only keys of the server's own users are taken from it.
            let own = |user: &OwnedUserId| user.server_name() == server;
            response
                .device_keys
                .extend(keys.device_keys.into_iter().filter(|(u, _)| own(u)));
            response
                .master_keys
                .extend(keys.master_keys.into_iter().filter(|(u, _)| own(u)));
            response
                .self_signing_keys
                .extend(keys.self_signing_keys.into_iter().filter(|(u, _)| own(u)));
        }
        self.add_signatures_on_remote_master_keys(requester, &mut response)
            .await?;
        Ok(response)
    }

    /// Adds the requester's signatures on remote users' master keys: made with their
    /// user-signing key, they are kept on this server only.
    async fn add_signatures_on_remote_master_keys(
        &self,
        requester: &UserId,
        response: &mut get_keys::v3::Response,
    ) -> Result<()> {
        let remote_masters = response
            .master_keys
            .keys()
            .any(|user_id| !self.is_local(user_id));
        if !remote_masters
            || !self
                .store
                .cross_signing_keys(requester)
                .await?
                .contains_key("user_signing")
        {
            return Ok(());
        }
        for (user_id, master) in &mut response.master_keys {
            if self.is_local(user_id) {
                continue;
            }
            let signatures = self.store.signatures_on(user_id, &[requester]).await?;
            if signatures.is_empty() {
                continue;
            }
            // A key the other server sent malformed is passed on as it came.
            let Ok(mut object) = signed_json::parse(master.json().get(), "master key") else {
                continue;
            };
            let public_key = super::cross_signing::public_key(&object)
                .unwrap_or_default()
                .to_owned();
            add_signatures(&mut object, &signatures, &public_key, |_| true);
            *master = to_raw(&object)?;
        }
        Ok(())
    }

    /// The keys of local users, as `/keys/query` and federation's `/user/keys/query` return
    /// them. `requester` is the local user asking (who also sees their own user-signing key
    /// and their signatures); `None` for another server. Non-local users are skipped.
    pub async fn local_keys(
        &self,
        requester: Option<&UserId>,
        users: &BTreeMap<OwnedUserId, Vec<OwnedDeviceId>>,
    ) -> Result<get_keys::v3::Response> {
        let mut response = get_keys::v3::Response::new();
        for (user_id, device_ids) in users {
            if !self.is_local(user_id) {
                continue;
            }
            let signers: Vec<&UserId> = std::iter::once(&**user_id).chain(requester).collect();
            let signatures = self.store.signatures_on(user_id, &signers).await?;
            let mut devices = BTreeMap::new();
            for device in self.store.device_keys_of(user_id, device_ids).await? {
                let mut object = signed_json::parse(&device.key_json, "stored device keys")?;
                add_signatures(
                    &mut object,
                    &signatures,
                    device.device_id.as_str(),
                    |signer| signer == user_id,
                );
                if let Some(name) = device.display_name {
                    object.insert(
                        "unsigned".to_owned(),
                        ruma::CanonicalJsonValue::Object(
                            [(
                                "device_display_name".to_owned(),
                                ruma::CanonicalJsonValue::String(name),
                            )]
                            .into(),
                        ),
                    );
                }
                devices.insert(device.device_id, to_raw(&object)?);
            }
            response.device_keys.insert(user_id.clone(), devices);
            self.add_cross_signing_keys(&mut response, requester, user_id, &signatures)
                .await?;
        }
        Ok(response)
    }

    async fn add_cross_signing_keys(
        &self,
        response: &mut get_keys::v3::Response,
        requester: Option<&UserId>,
        user_id: &UserId,
        signatures: &[StoredSignature],
    ) -> Result<()> {
        let mut keys = self.store.cross_signing_keys(user_id).await?;
        if let Some(master) = keys.remove("master") {
            let mut object = signed_json::parse(&master, "stored master key")?;
            let public_key = super::cross_signing::public_key(&object)
                .unwrap_or_default()
                .to_owned();
            add_signatures(&mut object, signatures, &public_key, |_| true);
            response
                .master_keys
                .insert(user_id.to_owned(), to_raw::<CrossSigningKey>(&object)?);
        }
        if let Some(self_signing) = keys.remove("self_signing") {
            response
                .self_signing_keys
                .insert(user_id.to_owned(), raw(&self_signing)?);
        }
        // A user-signing key is its owner's business alone.
        if requester == Some(user_id)
            && let Some(user_signing) = keys.remove("user_signing")
        {
            response
                .user_signing_keys
                .insert(user_id.to_owned(), raw(&user_signing)?);
        }
        Ok(())
    }

    /// `POST /keys/claim`: one one-time key (or the fallback key) per device asked for; remote
    /// users' keys are claimed from their servers at once.
    pub async fn claim_keys(
        &self,
        request: &claim_keys::v3::Request,
        federation: &FederationClient,
    ) -> Result<claim_keys::v3::Response> {
        let (local, remote) = self.split_by_server(&request.one_time_keys);
        let mut response = claim_keys::v3::Response::new(self.claim_local_keys(&local).await?);
        let answers = ask_servers(
            remote,
            request.timeout,
            &mut response.failures,
            |server, users| async move {
                let request = federation_keys::claim_keys::v1::Request::new(users);
                federation.send(&server, request).await
            },
        )
        .await;
        for (server, claimed) in answers {
            response.one_time_keys.extend(
                claimed
                    .one_time_keys
                    .into_iter()
                    .filter(|(user, _)| user.server_name() == server),
            );
        }
        Ok(response)
    }

    /// A per-user request split into this server's users and the others', by server.
    #[allow(clippy::type_complexity)]
    fn split_by_server<V: Clone>(
        &self,
        users: &BTreeMap<OwnedUserId, V>,
    ) -> (
        BTreeMap<OwnedUserId, V>,
        BTreeMap<OwnedServerName, BTreeMap<OwnedUserId, V>>,
    ) {
        let mut local = BTreeMap::new();
        let mut remote: BTreeMap<OwnedServerName, BTreeMap<OwnedUserId, V>> = BTreeMap::new();
        for (user_id, value) in users {
            if self.is_local(user_id) {
                local.insert(user_id.clone(), value.clone());
            } else {
                remote
                    .entry(user_id.server_name().to_owned())
                    .or_default()
                    .insert(user_id.clone(), value.clone());
            }
        }
        (local, remote)
    }

    /// Claims keys of local devices (for clients and for other servers); others are skipped.
    pub async fn claim_local_keys(
        &self,
        users: &BTreeMap<OwnedUserId, BTreeMap<OwnedDeviceId, OneTimeKeyAlgorithm>>,
    ) -> Result<BTreeMap<OwnedUserId, claim_keys::v3::OneTimeKeys>> {
        let mut claims = Vec::new();
        for (user_id, devices) in users {
            if !self.is_local(user_id) {
                continue;
            }
            for (device_id, algorithm) in devices {
                claims.push(KeyClaim {
                    user_id: user_id.clone(),
                    device_id: device_id.clone(),
                    algorithm: algorithm.to_string(),
                });
            }
        }
        let claimed = self.store.claim_keys(claims).await?;
        let mut one_time_keys: BTreeMap<OwnedUserId, claim_keys::v3::OneTimeKeys> = BTreeMap::new();
        for key in claimed {
            self.forget_key_counts(&key.user_id, &key.device_id);
            let key_id = OwnedOneTimeKeyId::try_from(key.key_id.as_str())
                .map_err(|e| Error::Internal(format!("stored one-time key ID: {e}")))?;
            let key_json: Raw<OneTimeKey> = raw(&key.key_json)?;
            one_time_keys
                .entry(key.user_id)
                .or_default()
                .entry(key.device_id)
                .or_default()
                .insert(key_id, key_json);
        }
        Ok(one_time_keys)
    }
}

/// The one-time and fallback keys of an upload, checked: at most one fallback key per
/// algorithm.
pub(super) fn uploaded_key_sets(
    one_time_keys: &BTreeMap<OwnedOneTimeKeyId, Raw<OneTimeKey>>,
    fallback_keys: &BTreeMap<OwnedOneTimeKeyId, Raw<OneTimeKey>>,
) -> Result<(Vec<UploadedKey>, Vec<UploadedKey>)> {
    if one_time_keys.len() > MAX_ONE_TIME_KEYS {
        return Err(too_many_one_time_keys());
    }
    let one_time_keys = uploaded_keys(one_time_keys, "one-time key")?;
    let fallback_keys = uploaded_keys(fallback_keys, "fallback key")?;
    let mut algorithms: Vec<&str> = fallback_keys.iter().map(|k| k.algorithm.as_str()).collect();
    algorithms.sort_unstable();
    if algorithms.windows(2).any(|pair| pair[0] == pair[1]) {
        return Err(Error::InvalidParam(
            "Upload at most one fallback key per algorithm".to_owned(),
        ));
    }
    Ok((one_time_keys, fallback_keys))
}

/// The keys of an upload, each as canonical JSON with its algorithm.
fn uploaded_keys(
    keys: &BTreeMap<OwnedOneTimeKeyId, Raw<OneTimeKey>>,
    what: &str,
) -> Result<Vec<UploadedKey>> {
    keys.iter()
        .map(|(key_id, key)| {
            let value: serde_json::Value = serde_json::from_str(key.json().get())
                .map_err(|e| Error::BadJson(format!("Invalid {what} {key_id}: {e}")))?;
            if !(value.is_string() || value.is_object()) {
                return Err(Error::BadJson(format!(
                    "Invalid {what} {key_id}: expected a string or a signed key object"
                )));
            }
            let canonical: ruma::CanonicalJsonValue = serde_json::from_value(value)
                .map_err(|e| Error::BadJson(format!("Invalid {what} {key_id}: {e}")))?;
            Ok(UploadedKey {
                algorithm: key_id.algorithm().to_string(),
                key_id: key_id.to_string(),
                key_json: canonical.to_string(),
            })
        })
        .collect()
}

/// Adds stored signatures on the key `target_key_id` to its object, those whose signer `shown`
/// lets through.
fn add_signatures(
    object: &mut CanonicalJsonObject,
    signatures: &[StoredSignature],
    target_key_id: &str,
    shown: impl Fn(&UserId) -> bool,
) {
    use ruma::CanonicalJsonValue as Value;
    let mut added: HashMap<&UserId, Vec<&StoredSignature>> = HashMap::new();
    for signature in signatures {
        if signature.target_key_id == target_key_id && shown(&signature.signer_user_id) {
            added
                .entry(&signature.signer_user_id)
                .or_default()
                .push(signature);
        }
    }
    if added.is_empty() {
        return;
    }
    let entry = object
        .entry("signatures".to_owned())
        .or_insert_with(|| Value::Object(BTreeMap::new()));
    let Value::Object(by_signer) = entry else {
        return;
    };
    for (signer, signatures) in added {
        let signer_entry = by_signer
            .entry(signer.to_string())
            .or_insert_with(|| Value::Object(BTreeMap::new()));
        if let Value::Object(keys) = signer_entry {
            for signature in signatures {
                keys.insert(
                    signature.signer_key_id.clone(),
                    Value::String(signature.signature.clone()),
                );
            }
        }
    }
}
