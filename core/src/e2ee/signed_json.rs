//! Signed JSON (spec: "Signing JSON"): the ed25519 signatures on device and cross-signing keys,
//! checked against the signer's public key.

use ruma::{
    CanonicalJsonObject, CanonicalJsonValue, SigningKeyAlgorithm,
    serde::{Base64, base64::Standard},
    signatures::{to_canonical_json_string_for_signing, verify_canonical_json_bytes},
};

use crate::{Error, Result};

/// Parses a client's signed key object.
pub(super) fn parse(json: &str, what: &str) -> Result<CanonicalJsonObject> {
    serde_json::from_str(json)
        .map_err(|e| Error::BadJson(format!("The {what} is not a valid signed JSON object: {e}")))
}

/// The object as canonical JSON, as stored.
pub(super) fn canonical(object: &CanonicalJsonObject) -> String {
    CanonicalJsonValue::Object(object.clone()).to_string()
}

/// The signed part of the object (without `signatures` and `unsigned`): two uploads of the same
/// key compare equal on it whatever signatures they carry.
pub(super) fn signed_part(object: &CanonicalJsonObject, what: &str) -> Result<String> {
    to_canonical_json_string_for_signing(object)
        .map_err(|e| Error::BadJson(format!("The {what} cannot be made canonical: {e}")))
}

/// The string field `name` of the object.
pub(super) fn string_field<'a>(object: &'a CanonicalJsonObject, name: &str) -> Option<&'a str> {
    match object.get(name) {
        Some(CanonicalJsonValue::String(value)) => Some(value),
        _ => None,
    }
}

/// The object's `keys` map: key ID (`<algorithm>:<name>`) → public key.
pub(super) fn keys(object: &CanonicalJsonObject) -> Vec<(&str, &str)> {
    match object.get("keys") {
        Some(CanonicalJsonValue::Object(keys)) => keys
            .iter()
            .filter_map(|(id, key)| match key {
                CanonicalJsonValue::String(key) => Some((id.as_str(), key.as_str())),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// The signatures the object carries from `signer`: key ID → signature.
pub(super) fn signatures_by<'a>(
    object: &'a CanonicalJsonObject,
    signer: &str,
) -> Vec<(&'a str, &'a str)> {
    let Some(CanonicalJsonValue::Object(signatures)) = object.get("signatures") else {
        return Vec::new();
    };
    let Some(CanonicalJsonValue::Object(by_signer)) = signatures.get(signer) else {
        return Vec::new();
    };
    by_signer
        .iter()
        .filter_map(|(id, signature)| match signature {
            CanonicalJsonValue::String(signature) => Some((id.as_str(), signature.as_str())),
            _ => None,
        })
        .collect()
}

/// Checks the object's signature by `signer`'s key `key_id` (`ed25519:<name>`), whose public
/// key is `public_key` (unpadded base64). Returns the signature checked.
pub(super) fn verify(
    object: &CanonicalJsonObject,
    signer: &str,
    key_id: &str,
    public_key: &str,
) -> Result<String, String> {
    let signature = signatures_by(object, signer)
        .into_iter()
        .find(|(id, _)| *id == key_id)
        .map(|(_, signature)| signature.to_owned())
        .ok_or_else(|| format!("no signature by {signer} with {key_id}"))?;
    let decode = |value: &str, what: &str| {
        Base64::<Standard>::parse(value)
            .map(Base64::into_inner)
            .map_err(|e| format!("the {what} is not valid base64: {e}"))
    };
    let public_key = decode(public_key, "public key")?;
    let signature_bytes = decode(&signature, "signature")?;
    let signed = to_canonical_json_string_for_signing(object)
        .map_err(|e| format!("the object cannot be made canonical: {e}"))?;
    verify_canonical_json_bytes(
        &SigningKeyAlgorithm::Ed25519,
        &public_key,
        &signature_bytes,
        signed.as_bytes(),
    )
    .map_err(|e| format!("the signature by {key_id} does not verify: {e}"))?;
    Ok(signature)
}

#[cfg(test)]
mod tests {
    use ruma::{
        serde::Base64,
        signatures::{Ed25519KeyPair, sign_json},
    };

    use super::*;

    fn key_pair() -> Ed25519KeyPair {
        let document = Ed25519KeyPair::generate();
        Ed25519KeyPair::from_der(&document, "DEV".to_owned()).unwrap()
    }

    #[test]
    fn a_signature_verifies_until_the_object_changes() {
        let pair = key_pair();
        let public = Base64::<Standard>::new(pair.public_key().to_vec()).encode();
        let mut object: CanonicalJsonObject =
            serde_json::from_str(r#"{"user_id":"@a:x","device_id":"DEV"}"#).unwrap();
        sign_json("@a:x", &pair, &mut object).unwrap();
        assert!(verify(&object, "@a:x", "ed25519:DEV", &public).is_ok());
        assert!(verify(&object, "@b:x", "ed25519:DEV", &public).is_err());
        object.insert(
            "device_id".to_owned(),
            CanonicalJsonValue::String("X".to_owned()),
        );
        assert!(verify(&object, "@a:x", "ed25519:DEV", &public).is_err());
    }
}
