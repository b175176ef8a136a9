//! Cross-signing (spec: "Cross-signing"): a user's master, self-signing and user-signing keys,
//! and the signatures they (and devices) make on devices and on other users' master keys.

use std::collections::{BTreeMap, HashMap};

use ruma::{
    CanonicalJsonObject, CanonicalJsonValue, OwnedUserId, UserId,
    api::client::keys::upload_signatures::v3::SignedKeys, encryption::CrossSigningKey, serde::Raw,
};

use super::{E2ee, signed_json};
use crate::{Error, Result, federation::FederationClient, store::StoredSignature, users::Caller};

/// The keys of one `/keys/device_signing/upload`.
pub struct SigningKeysUpload {
    pub master: Option<Raw<CrossSigningKey>>,
    pub self_signing: Option<Raw<CrossSigningKey>>,
    pub user_signing: Option<Raw<CrossSigningKey>>,
}

/// A signature of `/keys/signatures/upload` that was refused.
#[derive(Debug)]
pub struct SignatureFailure {
    pub user_id: OwnedUserId,
    pub key_id: String,
    pub message: String,
}

/// The public key of a cross-signing key: its only key, `ed25519:<public key>`.
pub(super) fn public_key(object: &CanonicalJsonObject) -> Option<&str> {
    match signed_json::keys(object)[..] {
        [(id, key)] if id.strip_prefix("ed25519:") == Some(key) => Some(key),
        _ => None,
    }
}

/// A checked cross-signing key: its object and public key.
struct SigningKey {
    object: CanonicalJsonObject,
    public_key: String,
}

impl SigningKey {
    /// Parses and checks a key of `user_id` for `usage` (`master`, `self_signing`,
    /// `user_signing`).
    fn parse(key: &Raw<CrossSigningKey>, user_id: &UserId, usage: &str) -> Result<Self> {
        let what = format!("{usage} key");
        let object = signed_json::parse(key.json().get(), &what)?;
        key.deserialize()
            .map_err(|e| Error::BadJson(format!("Invalid {what}: {e}")))?;
        if signed_json::string_field(&object, "user_id") != Some(user_id.as_str()) {
            return Err(Error::InvalidParam(format!(
                "The {what} must belong to {user_id}"
            )));
        }
        let usages = match object.get("usage") {
            Some(CanonicalJsonValue::Array(usages)) => usages,
            _ => return Err(Error::BadJson(format!("The {what} has no usage"))),
        };
        if !usages
            .iter()
            .any(|u| matches!(u, CanonicalJsonValue::String(u) if u == usage))
        {
            return Err(Error::InvalidParam(format!(
                "The {what} must have the usage {usage}"
            )));
        }
        let public_key = public_key(&object)
            .ok_or_else(|| {
                Error::InvalidParam(format!(
                    "The {what} must hold exactly one key, ed25519:<public key>"
                ))
            })?
            .to_owned();
        Ok(Self { object, public_key })
    }

    /// Whether the user already has this very key as `key_type` (signatures aside).
    fn is_stored(&self, stored: &HashMap<String, String>, key_type: &str) -> Result<bool> {
        let Some(json) = stored.get(key_type) else {
            return Ok(false);
        };
        let stored = signed_json::parse(json, "stored cross-signing key")?;
        Ok(
            signed_json::signed_part(&stored, "stored cross-signing key")?
                == signed_json::signed_part(&self.object, "cross-signing key")?,
        )
    }

    /// Checks that `master` signed this key.
    fn check_signed_by(&self, user_id: &UserId, master_public_key: &str, what: &str) -> Result<()> {
        signed_json::verify(
            &self.object,
            user_id.as_str(),
            &format!("ed25519:{master_public_key}"),
            master_public_key,
        )
        .map(drop)
        .map_err(|e| {
            Error::InvalidParam(format!("The {what} must be signed by the master key: {e}"))
        })
    }
}

/// The three keys of an upload, checked, by type.
fn parse_upload(
    user_id: &UserId,
    upload: &SigningKeysUpload,
) -> Result<Vec<(&'static str, SigningKey)>> {
    let mut keys = Vec::new();
    for (key_type, key) in [
        ("master", &upload.master),
        ("self_signing", &upload.self_signing),
        ("user_signing", &upload.user_signing),
    ] {
        if let Some(key) = key {
            keys.push((key_type, SigningKey::parse(key, user_id, key_type)?));
        }
    }
    Ok(keys)
}

impl E2ee {
    /// Whether an upload must go through User-Interactive Authentication: only when it would
    /// replace keys the user has (spec: `POST /keys/device_signing/upload`). Uploading the same
    /// keys again is idempotent.
    pub async fn signing_keys_upload_needs_auth(
        &self,
        user_id: &UserId,
        upload: &SigningKeysUpload,
    ) -> Result<bool> {
        let stored = self.store.cross_signing_keys(user_id).await?;
        if !stored.contains_key("master") {
            return Ok(false);
        }
        for (key_type, key) in parse_upload(user_id, upload)? {
            if !key.is_stored(&stored, key_type)? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// `POST /keys/device_signing/upload`, once authenticated where it must be.
    pub async fn upload_signing_keys(
        &self,
        user_id: &UserId,
        upload: &SigningKeysUpload,
    ) -> Result<()> {
        let keys = parse_upload(user_id, upload)?;
        if keys.is_empty() {
            return Ok(());
        }
        let stored = self.store.cross_signing_keys(user_id).await?;
        let stored_master = stored
            .get("master")
            .map(|json| signed_json::parse(json, "stored master key"))
            .transpose()?;
        let stored_master_key = stored_master
            .as_ref()
            .and_then(public_key)
            .map(str::to_owned);
        let master_key = keys
            .iter()
            .find(|(key_type, _)| *key_type == "master")
            .map(|(_, key)| key.public_key.clone())
            .or_else(|| stored_master_key.clone())
            .ok_or_else(|| {
                Error::InvalidParam(
                    "Upload a master key first: the other keys must be signed by it".to_owned(),
                )
            })?;
        let mut unchanged = true;
        for (key_type, key) in &keys {
            if *key_type != "master" {
                key.check_signed_by(user_id, &master_key, &format!("{key_type} key"))?;
            }
            unchanged &= key.is_stored(&stored, key_type)?;
        }
        if unchanged {
            return Ok(());
        }
        let replaced_master = stored_master_key.filter(|old| *old != master_key);
        let rows = keys
            .into_iter()
            .map(|(key_type, key)| (key_type, signed_json::canonical(&key.object)))
            .collect();
        self.store
            .set_cross_signing_keys(user_id, rows, replaced_master)
            .await?;
        self.device_list_changed(user_id).await
    }

    /// `POST /keys/signatures/upload`: stores each signature that verifies; returns the
    /// others' failures.
    pub async fn upload_signatures(
        &self,
        caller: &Caller,
        signed_keys: &BTreeMap<OwnedUserId, SignedKeys>,
        federation: &FederationClient,
    ) -> Result<Vec<SignatureFailure>> {
        let own_keys = self.store.cross_signing_keys(&caller.user_id).await?;
        let own_key = |key_type: &str| -> Result<Option<String>> {
            own_keys
                .get(key_type)
                .map(|json| {
                    signed_json::parse(json, "stored cross-signing key")
                        .map(|object| public_key(&object).map(str::to_owned))
                })
                .transpose()
                .map(Option::flatten)
        };
        let signers = Signers {
            master: own_key("master")?,
            self_signing: own_key("self_signing")?,
            user_signing: own_key("user_signing")?,
        };
        let mut accepted = Vec::new();
        let mut failures = Vec::new();
        for (user_id, keys) in signed_keys {
            for (key_id, json) in keys {
                match self
                    .check_signature(caller, &signers, user_id, key_id, json.get(), federation)
                    .await
                {
                    Ok(signatures) => accepted.extend(signatures),
                    Err(message) => failures.push(SignatureFailure {
                        user_id: user_id.clone(),
                        key_id: key_id.to_owned(),
                        message,
                    }),
                }
            }
        }
        let targets: Vec<OwnedUserId> = {
            let mut targets: Vec<OwnedUserId> = accepted
                .iter()
                .map(|s: &StoredSignature| s.target_user_id.clone())
                .collect();
            targets.sort();
            targets.dedup();
            targets
        };
        self.store.add_signatures(accepted).await?;
        for target in targets {
            self.device_list_changed(&target).await?;
        }
        Ok(failures)
    }

    /// Checks one signed object of a signatures upload; returns the caller's new signatures on
    /// it. The error is the failure message for the client.
    async fn check_signature(
        &self,
        caller: &Caller,
        signers: &Signers,
        user_id: &UserId,
        key_id: &str,
        json: &str,
        federation: &FederationClient,
    ) -> Result<Vec<StoredSignature>, String> {
        let object: CanonicalJsonObject =
            serde_json::from_str(json).map_err(|e| format!("not a signed JSON object: {e}"))?;
        let signer = caller.user_id.as_str();
        let target_master = if self.is_local(user_id) {
            self.store
                .cross_signing_keys(user_id)
                .await
                .map_err(|e| format!("cannot read the keys: {e}"))?
                .get("master")
                .and_then(|json| signed_json::parse(json, "master key").ok())
        } else {
            self.remote_master_key(user_id, federation).await?
        };
        let signature = |signer_key_id: String, signature: String| StoredSignature {
            target_user_id: user_id.to_owned(),
            target_key_id: key_id.to_owned(),
            signer_user_id: caller.user_id.clone(),
            signer_key_id,
            signature,
        };
        let same_as = |stored: &CanonicalJsonObject| -> Result<(), String> {
            let stored = signed_json::signed_part(stored, "key").map_err(|e| e.to_string())?;
            let uploaded = signed_json::signed_part(&object, "key").map_err(|e| e.to_string())?;
            if stored == uploaded {
                Ok(())
            } else {
                Err("the signed object is not the key stored for this ID".to_owned())
            }
        };
        let master_is_target = target_master
            .as_ref()
            .and_then(public_key)
            .is_some_and(|key| key == key_id);
        if user_id == caller.user_id && !master_is_target {
            // The caller's self-signing key signs one of their devices.
            let device_id: ruma::OwnedDeviceId = key_id.into();
            let stored = self
                .store
                .device_keys_json(user_id, &device_id)
                .await
                .map_err(|e| format!("cannot read the device keys: {e}"))?
                .ok_or_else(|| format!("unknown device {key_id}"))?;
            same_as(&signed_json::parse(&stored, "device keys").map_err(|e| e.to_string())?)?;
            let self_signing = signers
                .self_signing
                .as_deref()
                .ok_or("upload a self-signing key first")?;
            let signer_key_id = format!("ed25519:{self_signing}");
            let checked = signed_json::verify(&object, signer, &signer_key_id, self_signing)?;
            return Ok(vec![signature(signer_key_id, checked)]);
        }
        let master = target_master
            .as_ref()
            .filter(|_| master_is_target)
            .ok_or_else(|| format!("{key_id} is not a key of {user_id} that can be signed"))?;
        same_as(master)?;
        if user_id == caller.user_id {
            // The caller's devices sign their own master key.
            let mut signatures = Vec::new();
            let own_master = signers.master.as_deref().unwrap_or_default();
            for (signer_key_id, _) in signed_json::signatures_by(&object, signer) {
                let Some(device) = signer_key_id.strip_prefix("ed25519:") else {
                    continue;
                };
                if device == own_master {
                    continue;
                }
                let device_keys = self
                    .store
                    .device_keys_json(user_id, &ruma::OwnedDeviceId::from(device))
                    .await
                    .map_err(|e| format!("cannot read the device keys: {e}"))?
                    .ok_or_else(|| format!("unknown signing device {device}"))?;
                let device_keys =
                    signed_json::parse(&device_keys, "device keys").map_err(|e| e.to_string())?;
                let device_key = signed_json::keys(&device_keys)
                    .into_iter()
                    .find(|(id, _)| *id == signer_key_id)
                    .map(|(_, key)| key.to_owned())
                    .ok_or_else(|| format!("device {device} has no key {signer_key_id}"))?;
                let checked = signed_json::verify(&object, signer, signer_key_id, &device_key)?;
                signatures.push(signature(signer_key_id.to_owned(), checked));
            }
            if signatures.is_empty() {
                return Err("no signature by one of your devices".to_owned());
            }
            return Ok(signatures);
        }
        // The caller's user-signing key signs another user's master key.
        let user_signing = signers
            .user_signing
            .as_deref()
            .ok_or("upload a user-signing key first")?;
        let signer_key_id = format!("ed25519:{user_signing}");
        let checked = signed_json::verify(&object, signer, &signer_key_id, user_signing)?;
        Ok(vec![signature(signer_key_id, checked)])
    }
}

impl E2ee {
    /// The master key of a remote user, asked of their server: a local user's user-signing
    /// key may sign it (Synapse does the same).
    async fn remote_master_key(
        &self,
        user_id: &UserId,
        federation: &FederationClient,
    ) -> Result<Option<CanonicalJsonObject>, String> {
        let request = ruma::api::federation::keys::get_keys::v1::Request::new(
            [(user_id.to_owned(), Vec::new())].into(),
        );
        let answer = federation
            .send(user_id.server_name(), request)
            .await
            .map_err(|e| format!("cannot fetch the master key of {user_id}: {e}"))?;
        answer
            .master_keys
            .get(user_id)
            .map(|key| {
                serde_json::from_str(key.json().get())
                    .map_err(|e| format!("the master key of {user_id} does not parse: {e}"))
            })
            .transpose()
    }
}

/// The public keys of the caller's cross-signing keys.
struct Signers {
    master: Option<String>,
    self_signing: Option<String>,
    user_signing: Option<String>,
}
