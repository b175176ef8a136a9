//! Real end-to-end encryption for the tests, with vodozemac: a device's genuine identity and
//! one-time keys, signed as the spec says; Olm to-device messages; Megolm room messages;
//! cross-signing keys. The server only ever sees what a real client would send it.

use serde_json::{Value, json};
use vodozemac::{
    Curve25519PublicKey, Ed25519SecretKey,
    megolm::{GroupSession, InboundGroupSession, MegolmMessage, SessionConfig as MegolmConfig},
    olm::{Account, OlmMessage, PreKeyMessage, SessionConfig},
};

use crate::{Response, User, V3};

pub const OLM: &str = "m.olm.v1.curve25519-aes-sha2";
pub const MEGOLM: &str = "m.megolm.v1.aes-sha2";

/// Canonical JSON of a value without `signatures` and `unsigned` (spec: "Signing JSON");
/// serde_json's maps are sorted, so its compact form is canonical for these objects.
pub fn signed_bytes(value: &Value) -> String {
    let mut value = value.clone();
    let object = value.as_object_mut().expect("a JSON object");
    object.remove("signatures");
    object.remove("unsigned");
    serde_json::to_string(&value).expect("serialize")
}

/// Adds `signer`'s signature with `key_id` (`ed25519:<device or public key>`) to `value`.
pub fn add_signature(value: &mut Value, signer: &str, key_id: &str, signature: String) {
    let signatures = value
        .as_object_mut()
        .expect("a JSON object")
        .entry("signatures")
        .or_insert_with(|| json!({}));
    signatures
        .as_object_mut()
        .expect("signatures is an object")
        .entry(signer)
        .or_insert_with(|| json!({}))[key_id] = json!(signature);
}

/// A device's Olm account and the IDs it belongs to.
pub struct Device {
    pub user_id: String,
    pub device_id: String,
    pub account: Account,
}

impl Device {
    pub fn new(user_id: &str, device_id: &str) -> Self {
        Self {
            user_id: user_id.to_owned(),
            device_id: device_id.to_owned(),
            account: Account::new(),
        }
    }

    /// The device of a logged-in user.
    pub fn of(user: &User) -> Self {
        Self::new(&user.user_id, &user.device_id)
    }

    pub fn curve25519(&self) -> String {
        self.account.identity_keys().curve25519.to_base64()
    }

    pub fn ed25519(&self) -> String {
        self.account.identity_keys().ed25519.to_base64()
    }

    /// Signs `value` with the device's ed25519 key.
    pub fn sign(&self, value: &mut Value) {
        let signature = self.account.sign(signed_bytes(value)).to_base64();
        add_signature(
            value,
            &self.user_id,
            &format!("ed25519:{}", self.device_id),
            signature,
        );
    }

    /// The device keys, self-signed.
    pub fn device_keys(&self) -> Value {
        let mut keys = json!({
            "user_id": self.user_id,
            "device_id": self.device_id,
            "algorithms": [OLM, MEGOLM],
            "keys": {
                format!("curve25519:{}", self.device_id): self.curve25519(),
                format!("ed25519:{}", self.device_id): self.ed25519(),
            },
        });
        self.sign(&mut keys);
        keys
    }

    /// `count` new signed one-time keys, by key ID.
    pub fn one_time_keys(&mut self, count: usize) -> Value {
        self.account.generate_one_time_keys(count);
        let mut keys = serde_json::Map::new();
        let generated: Vec<_> = self.account.one_time_keys().into_iter().collect();
        for (id, key) in generated {
            let mut signed = json!({ "key": key.to_base64() });
            self.sign(&mut signed);
            keys.insert(format!("signed_curve25519:{}", id.to_base64()), signed);
        }
        self.account.mark_keys_as_published();
        Value::Object(keys)
    }

    /// Uploads the device keys and `count` one-time keys as `user` (this device's session);
    /// the response.
    pub async fn upload(&mut self, user: &User, count: usize) -> Value {
        let body = json!({
            "device_keys": self.device_keys(),
            "one_time_keys": self.one_time_keys(count),
        });
        upload_keys(user, body).await.ok()
    }

    /// Olm-encrypts `payload` for `recipient` (its curve25519 key) with a new session from the
    /// claimed one-time key: the `m.room.encrypted` to-device content.
    pub fn olm_encrypt(
        &self,
        recipient_curve25519: &str,
        one_time_key: &str,
        payload: &Value,
    ) -> Value {
        let recipient = Curve25519PublicKey::from_base64(recipient_curve25519).expect("curve25519");
        let otk = Curve25519PublicKey::from_base64(one_time_key).expect("one-time key");
        let mut session =
            self.account
                .create_outbound_session(SessionConfig::version_1(), recipient, otk);
        let OlmMessage::PreKey(message) = session.encrypt(payload.to_string()) else {
            panic!("the first message of a session is a pre-key message");
        };
        json!({
            "algorithm": OLM,
            "sender_key": self.curve25519(),
            "ciphertext": { recipient_curve25519: { "type": 0, "body": message.to_base64() } },
        })
    }

    /// Decrypts the pre-key message of an `m.room.encrypted` to-device event for this device.
    pub fn olm_decrypt(&mut self, event: &Value) -> Value {
        let content = &event["content"];
        assert_eq!(content["algorithm"], OLM, "{event}");
        let sender_key = content["sender_key"].as_str().expect("sender_key");
        let ciphertext = &content["ciphertext"][self.curve25519()];
        assert_eq!(ciphertext["type"], 0, "a pre-key message: {event}");
        let message = PreKeyMessage::from_base64(ciphertext["body"].as_str().expect("body"))
            .expect("a pre-key message");
        let inbound = self
            .account
            .create_inbound_session(
                Curve25519PublicKey::from_base64(sender_key).expect("sender_key"),
                &message,
            )
            .expect("the message decrypts");
        serde_json::from_slice(&inbound.plaintext).expect("the plaintext is JSON")
    }

    /// The `m.room_key` payload that shares `session` of `room_id` with `recipient`, as Olm's
    /// plaintext (spec: "Molecular Olm payloads").
    pub fn room_key_payload(
        &self,
        recipient: &Device,
        room_id: &str,
        session: &GroupSession,
    ) -> Value {
        json!({
            "type": "m.room_key",
            "content": {
                "algorithm": MEGOLM,
                "room_id": room_id,
                "session_id": session.session_id(),
                "session_key": session.session_key().to_base64(),
            },
            "sender": self.user_id,
            "recipient": recipient.user_id,
            "recipient_keys": { "ed25519": recipient.ed25519() },
            "keys": { "ed25519": self.ed25519() },
        })
    }

    /// The `m.room.encrypted` content of a Megolm-encrypted `m.room.message`.
    pub fn megolm_encrypt(&self, session: &mut GroupSession, room_id: &str, body: &str) -> Value {
        let plaintext = json!({
            "type": "m.room.message",
            "content": { "msgtype": "m.text", "body": body },
            "room_id": room_id,
        });
        json!({
            "algorithm": MEGOLM,
            "sender_key": self.curve25519(),
            "device_id": self.device_id,
            "session_id": session.session_id(),
            "ciphertext": session.encrypt(plaintext.to_string()).to_base64(),
        })
    }
}

/// What a client does to send its first encrypted message to a room with one other device:
/// `sender` (using `device`) claims one of the recipient device's one-time keys, shares a new
/// Megolm session with it over Olm (`m.room_key` as a to-device message), then sends `body`
/// encrypted with that session. Returns the event ID.
pub async fn send_megolm_message(
    sender: &User,
    device: &Device,
    recipient: &Device,
    room_id: &str,
    body: &str,
) -> String {
    let otk = claim_one_time_key(sender, &recipient.user_id, &recipient.device_id).await;
    let mut outbound = megolm_session();
    let room_key = device.room_key_payload(recipient, room_id, &outbound);
    let shared = device.olm_encrypt(&recipient.curve25519(), &otk, &room_key);
    let txn_id = crate::rooms::txn_id();
    send_to_device(
        sender,
        &recipient.user_id,
        &recipient.device_id,
        shared,
        &txn_id,
    )
    .await;
    let encrypted = device.megolm_encrypt(&mut outbound, room_id, body);
    let sent = sender
        .client
        .put(
            &format!(
                "{V3}/rooms/{}/send/m.room.encrypted/{}",
                crate::enc(room_id),
                crate::rooms::txn_id()
            ),
            encrypted,
        )
        .await
        .ok();
    sent["event_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no event_id: {sent}"))
        .to_owned()
}

/// Turns on Megolm encryption in the room (`m.room.encryption`).
pub async fn enable_encryption(user: &User, room_id: &str) {
    user.client
        .put(
            &crate::rooms::state_path(room_id, "m.room.encryption", ""),
            json!({ "algorithm": MEGOLM }),
        )
        .await
        .ok();
}

/// A new outbound Megolm session.
pub fn megolm_session() -> GroupSession {
    GroupSession::new(MegolmConfig::version_1())
}

/// The inbound session of an `m.room_key` payload (as decrypted from Olm).
pub fn inbound_session(room_key: &Value) -> InboundGroupSession {
    assert_eq!(room_key["type"], "m.room_key", "{room_key}");
    let key = vodozemac::megolm::SessionKey::from_base64(
        room_key["content"]["session_key"]
            .as_str()
            .expect("session_key"),
    )
    .expect("a session key");
    InboundGroupSession::new(&key, MegolmConfig::version_1())
}

/// Decrypts a Megolm `m.room.encrypted` room event; the plaintext event.
pub fn megolm_decrypt(session: &mut InboundGroupSession, event: &Value) -> Value {
    assert_eq!(event["type"], "m.room.encrypted", "{event}");
    assert_eq!(
        event["content"]["session_id"],
        session.session_id(),
        "{event}"
    );
    let message =
        MegolmMessage::from_base64(event["content"]["ciphertext"].as_str().expect("ciphertext"))
            .expect("a Megolm message");
    let decrypted = session.decrypt(&message).expect("the event decrypts");
    serde_json::from_slice(&decrypted.plaintext).expect("the plaintext is JSON")
}

/// A cross-signing key pair.
pub struct SigningKey {
    pub secret: Ed25519SecretKey,
}

impl Default for SigningKey {
    fn default() -> Self {
        Self::new()
    }
}

impl SigningKey {
    pub fn new() -> Self {
        Self {
            secret: Ed25519SecretKey::new(),
        }
    }

    pub fn public(&self) -> String {
        self.secret.public_key().to_base64()
    }

    pub fn key_id(&self) -> String {
        format!("ed25519:{}", self.public())
    }

    /// Signs `value` as `user_id` with this key.
    pub fn sign(&self, user_id: &str, value: &mut Value) {
        let signature = self.secret.sign(signed_bytes(value).as_bytes()).to_base64();
        add_signature(value, user_id, &self.key_id(), signature);
    }

    /// The cross-signing key object of `user_id` for `usage`, signed by `signer` if given
    /// (the master key signs the other two).
    pub fn key_object(&self, user_id: &str, usage: &str, signer: Option<&SigningKey>) -> Value {
        let mut key = json!({
            "user_id": user_id,
            "usage": [usage],
            "keys": { self.key_id(): self.public() },
        });
        if let Some(signer) = signer {
            signer.sign(user_id, &mut key);
        }
        key
    }
}

/// A user's three cross-signing keys.
#[derive(Default)]
pub struct CrossSigning {
    pub master: SigningKey,
    pub self_signing: SigningKey,
    pub user_signing: SigningKey,
}

impl CrossSigning {
    /// The body of `/keys/device_signing/upload` with all three keys.
    pub fn upload_body(&self, user_id: &str) -> Value {
        json!({
            "master_key": self.master.key_object(user_id, "master", None),
            "self_signing_key": self.self_signing.key_object(user_id, "self_signing", Some(&self.master)),
            "user_signing_key": self.user_signing.key_object(user_id, "user_signing", Some(&self.master)),
        })
    }
}

/// `POST /keys/upload`.
pub async fn upload_keys(user: &User, body: Value) -> Response {
    user.client.post(&format!("{V3}/keys/upload"), body).await
}

/// `POST /keys/query` for every device of `user_ids`.
pub async fn query_keys(user: &User, user_ids: &[&str]) -> Value {
    let device_keys: serde_json::Map<String, Value> = user_ids
        .iter()
        .map(|u| ((*u).to_owned(), json!([])))
        .collect();
    user.client
        .post(
            &format!("{V3}/keys/query"),
            json!({ "device_keys": device_keys }),
        )
        .await
        .ok()
}

/// Claims one `signed_curve25519` one-time key of the device; the key (base64).
pub async fn claim_one_time_key(user: &User, user_id: &str, device_id: &str) -> String {
    let claim = user
        .client
        .post(
            &format!("{V3}/keys/claim"),
            json!({ "one_time_keys": { user_id: { device_id: "signed_curve25519" } } }),
        )
        .await
        .ok();
    let keys = claim["one_time_keys"][user_id][device_id]
        .as_object()
        .unwrap_or_else(|| panic!("no key claimed: {claim}"));
    keys.values()
        .next()
        .and_then(|key| key["key"].as_str())
        .unwrap_or_else(|| panic!("no key claimed: {claim}"))
        .to_owned()
}

/// Sends one to-device `m.room.encrypted` message to a device.
pub async fn send_to_device(
    sender: &User,
    user_id: &str,
    device_id: &str,
    content: Value,
    txn_id: &str,
) {
    sender
        .client
        .put(
            &format!("{V3}/sendToDevice/m.room.encrypted/{txn_id}"),
            json!({ "messages": { user_id: { device_id: content } } }),
        )
        .await
        .ok();
}
