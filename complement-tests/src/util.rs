//! Small helpers shared by the harness and the tests.

use std::future::Future;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use rand::Rng;
use rand::distributions::Alphanumeric;
use sha1::Sha1;

/// Percent-encodes one URL path segment (user IDs, room IDs, event types), the way clients do.
pub fn enc(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// A random lowercase alphanumeric string (valid in localparts and database names).
pub fn random_string(len: usize) -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(|b| char::from(b).to_ascii_lowercase())
        .collect()
}

/// The `mac` of Synapse's shared-secret registration: hex HMAC-SHA1 over
/// `nonce \0 username \0 password \0 ("admin" | "notadmin")`.
pub fn admin_register_mac(
    shared_secret: &str,
    nonce: &str,
    username: &str,
    password: &str,
    admin: bool,
) -> String {
    let mut mac = Hmac::<Sha1>::new_from_slice(shared_secret.as_bytes())
        .expect("HMAC accepts keys of any length");
    mac.update(nonce.as_bytes());
    mac.update(b"\0");
    mac.update(username.as_bytes());
    mac.update(b"\0");
    mac.update(password.as_bytes());
    mac.update(b"\0");
    mac.update(if admin {
        b"admin".as_slice()
    } else {
        b"notadmin".as_slice()
    });
    hex::encode(mac.finalize().into_bytes())
}

/// Polls `check` until it returns `Some`, at most until `timeout` has passed; panics naming `what`
/// otherwise. This is how tests wait: on a condition with a deadline, never a fixed sleep.
pub async fn wait_until<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enc_escapes_sigils_and_colons() {
        assert_eq!(enc("@alice:localhost:8008"), "%40alice%3Alocalhost%3A8008");
        assert_eq!(enc("m.push_rules"), "m.push_rules");
    }

    #[test]
    fn mac_matches_synapse_reference() {
        // Reference value computed with Python:
        // hmac.new(b"secret", b"abc\0bob\0pw\0notadmin", hashlib.sha1).hexdigest()
        assert_eq!(
            admin_register_mac("secret", "abc", "bob", "pw", false),
            "8ea9b87daa4e529ce4a0832f09be19bbe837a0af"
        );
    }
}
