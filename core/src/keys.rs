//! The server's ed25519 signing key, kept in Synapse's key-file format
//! (`ed25519 <version> <unpadded base64 seed>`) so keys move between the two, and the public
//! halves of the keys it replaced (spec: Server-Server API, "Publishing Keys",
//! `old_verify_keys`), one per line of `<key file>.old` as `ed25519 <version> <unpadded base64
//! public key> <expired_ts>`, so that other servers can still check what they signed.

use std::{
    io::Write,
    path::{Path, PathBuf},
};

use base64::{
    Engine, alphabet,
    engine::{
        DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig, general_purpose::STANDARD_NO_PAD,
    },
};
use rand::{Rng, RngCore, distributions::Alphanumeric};
use ruma::signatures::Ed25519KeyPair;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read signing key {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write signing key {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("signing key {path} is malformed: {reason}")]
    Malformed { path: PathBuf, reason: String },
}

pub struct SigningKey {
    pair: Ed25519KeyPair,
    old: Vec<OldVerifyKey>,
}

/// A key this server signed with until `expired_ts` (ms since the epoch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OldVerifyKey {
    /// `ed25519:<version>`.
    pub key_id: String,
    /// Unpadded base64.
    pub public_key: String,
    pub expired_ts: u64,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({})", self.key_id())
    }
}

/// Reads key seeds as Synapse does: padding optional, non-zero trailing bits accepted (the
/// spec's own test seed has them).
const LENIENT_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// PKCS#8 v1 header of an Ed25519 private key (RFC 8410): the 32-byte seed follows it.
const PKCS8_ED25519_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

fn pair_from_seed(seed: &[u8; 32], version: String) -> Result<Ed25519KeyPair, String> {
    let mut der = PKCS8_ED25519_PREFIX.to_vec();
    der.extend_from_slice(seed);
    Ed25519KeyPair::from_der(&der, version).map_err(|e| e.to_string())
}

impl SigningKey {
    /// Loads the key at `path`, generating it (file mode 0600) if the file does not exist,
    /// with the old keys listed beside it.
    pub fn load_or_generate(path: &Path) -> Result<Self, KeyError> {
        let mut key = match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text).map_err(|reason| KeyError::Malformed {
                path: path.to_owned(),
                reason,
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Self::generate(path)?,
            Err(source) => {
                return Err(KeyError::Read {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        key.old = read_old_keys(&old_keys_path(path))?;
        Ok(key)
    }

    fn generate(path: &Path) -> Result<Self, KeyError> {
        let (key, line) = Self::new_key()?;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        write_private(path, &options, &line)?;
        Ok(key)
    }

    fn new_key() -> Result<(Self, String), KeyError> {
        let mut seed = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut seed);
        let suffix: String = rand::thread_rng()
            .sample_iter(&Alphanumeric)
            .take(4)
            .map(char::from)
            .collect();
        let version = format!("a_{suffix}");
        let line = format!("ed25519 {version} {}\n", STANDARD_NO_PAD.encode(seed));
        let pair = pair_from_seed(&seed, version).map_err(|reason| KeyError::Malformed {
            path: PathBuf::new(),
            reason,
        })?;
        Ok((
            Self {
                pair,
                old: Vec::new(),
            },
            line,
        ))
    }

    /// Replaces the key at `path` with a new one (`tessera key rotate`). The old key's public
    /// half is listed first in `<path>.old`, expired `now_ms`, then the new key replaces the
    /// file in one rename: a crash between the two leaves the old key in use and also listed,
    /// which is harmless. A running server signs with the old key until it restarts.
    pub fn rotate(path: &Path, now_ms: u64) -> Result<(Self, Self), KeyError> {
        let text = std::fs::read_to_string(path).map_err(|source| KeyError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut old = Self::parse(&text).map_err(|reason| KeyError::Malformed {
            path: path.to_owned(),
            reason,
        })?;
        let old_path = old_keys_path(path);
        old.old = read_old_keys(&old_path)?;
        let (mut new, line) = Self::new_key()?;
        let write_err = |path: &Path| {
            let path = path.to_owned();
            move |source| KeyError::Write { path, source }
        };
        let mut list = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&old_path)
            .map_err(write_err(&old_path))?;
        writeln!(
            list,
            "ed25519 {} {} {now_ms}",
            old.pair.version(),
            old.public_key_base64()
        )
        .and_then(|()| list.sync_all())
        .map_err(write_err(&old_path))?;
        let staged = path.with_extension("new");
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        write_private(&staged, &options, &line)?;
        std::fs::rename(&staged, path).map_err(write_err(path))?;
        new.old = old.old.clone();
        new.old.push(OldVerifyKey {
            key_id: old.key_id(),
            public_key: old.public_key_base64(),
            expired_ts: now_ms,
        });
        Ok((old, new))
    }

    fn parse(text: &str) -> Result<Self, String> {
        let mut parts = text.split_whitespace();
        let (Some("ed25519"), Some(version), Some(seed), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err("expected one line `ed25519 <version> <base64 seed>`".to_owned());
        };
        let seed = LENIENT_BASE64
            .decode(seed)
            .map_err(|e| format!("seed is not base64: {e}"))?;
        let seed: [u8; 32] = seed
            .try_into()
            .map_err(|_| "seed is not 32 bytes".to_owned())?;
        Ok(Self {
            pair: pair_from_seed(&seed, version.to_owned())?,
            old: Vec::new(),
        })
    }

    /// `ed25519:<version>`, as used in `verify_keys` and signatures.
    pub fn key_id(&self) -> String {
        format!("ed25519:{}", self.pair.version())
    }

    pub fn public_key_base64(&self) -> String {
        STANDARD_NO_PAD.encode(self.pair.public_key())
    }

    pub fn pair(&self) -> &Ed25519KeyPair {
        &self.pair
    }

    /// The keys this one replaced.
    pub fn old_keys(&self) -> &[OldVerifyKey] {
        &self.old
    }
}

/// Where the keys a key file's key replaced are listed.
pub fn old_keys_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".old");
    PathBuf::from(name)
}

fn read_old_keys(path: &Path) -> Result<Vec<OldVerifyKey>, KeyError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(KeyError::Read {
                path: path.to_owned(),
                source,
            });
        }
    };
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .enumerate()
        .map(|(i, line)| {
            let malformed = |reason: &str| KeyError::Malformed {
                path: path.to_owned(),
                reason: format!("line {}: {reason}", i + 1),
            };
            let mut parts = line.split_whitespace();
            let (Some("ed25519"), Some(version), Some(public_key), Some(expired), None) = (
                parts.next(),
                parts.next(),
                parts.next(),
                parts.next(),
                parts.next(),
            ) else {
                return Err(malformed(
                    "expected `ed25519 <version> <base64 public key> <expired_ts>`",
                ));
            };
            let decoded = LENIENT_BASE64
                .decode(public_key)
                .map_err(|_| malformed("the public key is not base64"))?;
            if decoded.len() != 32 {
                return Err(malformed("the public key is not 32 bytes"));
            }
            Ok(OldVerifyKey {
                key_id: format!("ed25519:{version}"),
                public_key: STANDARD_NO_PAD.encode(decoded),
                expired_ts: expired
                    .parse()
                    .map_err(|_| malformed("expired_ts is not a number"))?,
            })
        })
        .collect()
}

/// Writes a private key file (mode 0600) and syncs it.
fn write_private(path: &Path, options: &std::fs::OpenOptions, line: &str) -> Result<(), KeyError> {
    let write_err = |source| KeyError::Write {
        path: path.to_owned(),
        source,
    };
    let mut options = options.clone();
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(write_err)?;
    file.write_all(line.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(write_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_key_is_private_and_reloads_identically() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signing.key");
        let key = SigningKey::load_or_generate(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let again = SigningKey::load_or_generate(&path).unwrap();
        assert_eq!(key.key_id(), again.key_id());
        assert_eq!(key.public_key_base64(), again.public_key_base64());
    }

    #[test]
    fn rotation_replaces_the_key_and_lists_the_old_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signing.key");
        let first = SigningKey::load_or_generate(&path).unwrap();
        let (old, new) = SigningKey::rotate(&path, 1_000).unwrap();
        assert_eq!(old.key_id(), first.key_id());
        assert_ne!(new.key_id(), first.key_id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let (_, newest) = SigningKey::rotate(&path, 2_000).unwrap();
        let loaded = SigningKey::load_or_generate(&path).unwrap();
        assert_eq!(loaded.key_id(), newest.key_id());
        assert_eq!(
            loaded.old_keys(),
            [
                OldVerifyKey {
                    key_id: first.key_id(),
                    public_key: first.public_key_base64(),
                    expired_ts: 1_000,
                },
                OldVerifyKey {
                    key_id: new.key_id(),
                    public_key: new.public_key_base64(),
                    expired_ts: 2_000,
                },
            ]
        );
        assert_eq!(newest.old_keys(), loaded.old_keys());
    }

    #[test]
    fn a_malformed_old_key_list_names_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signing.key");
        SigningKey::load_or_generate(&path).unwrap();
        std::fs::write(old_keys_path(&path), "ed25519 a_x AAAA 5\n").unwrap();
        let err = SigningKey::load_or_generate(&path).unwrap_err().to_string();
        assert!(err.contains("line 1") && err.contains("32 bytes"), "{err}");
    }

    #[test]
    fn synapse_key_file_parses() {
        // Seed of all zeroes: its public key is a published ed25519 test vector.
        let key = SigningKey::parse("ed25519 a_test AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n")
            .unwrap();
        assert_eq!(key.key_id(), "ed25519:a_test");
        assert_eq!(
            key.public_key_base64(),
            "O2onvM62pC1io6jQKm8Nc2UyFXcd4kOmOsBIoYtZ2ik"
        );
    }

    /// The spec's test key (appendices, "Cryptographic Test Vectors"): seed
    /// `YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1`, server `domain`, key `ed25519:1`.
    fn spec_test_key() -> SigningKey {
        SigningKey::parse("ed25519 1 YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1").unwrap()
    }

    fn canonical(json: &str) -> ruma::CanonicalJsonObject {
        serde_json::from_str(json).unwrap()
    }

    fn signature(object: &ruma::CanonicalJsonObject) -> String {
        let value = serde_json::to_value(object).unwrap();
        value["signatures"]["domain"]["ed25519:1"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    #[test]
    fn json_signing_matches_the_spec_vectors() {
        let key = spec_test_key();
        let mut empty = canonical("{}");
        ruma::signatures::sign_json("domain", key.pair(), &mut empty).unwrap();
        assert_eq!(
            signature(&empty),
            "K8280/U9SSy9IVtjBuVeLr+HpOB4BQFWbg+UZaADMtTdGYI7Geitb76LTrr5QV/7Xg4ahLwYGYZzuHGZKM5ZAQ"
        );
        let mut with_data = canonical(r#"{"one": 1, "two": "Two"}"#);
        ruma::signatures::sign_json("domain", key.pair(), &mut with_data).unwrap();
        assert_eq!(
            signature(&with_data),
            "KqmLSbO39/Bzb0QIYE82zqLwsA+PDzYIpIRA2sRQ4sL53+sN6/fpNSoqE7BP7vBZhG6kYdD13EIMJpvhJI+6Bw"
        );
    }

    #[test]
    fn event_signing_matches_the_spec_vector() {
        let key = spec_test_key();
        let mut event = canonical(
            r#"{"room_id": "!x:domain", "sender": "@a:domain", "origin": "domain",
                "origin_server_ts": 1000000, "signatures": {}, "hashes": {}, "type": "X",
                "content": {}, "prev_events": [], "auth_events": [], "depth": 3,
                "unsigned": {"age_ts": 1000000}}"#,
        );
        ruma::signatures::hash_and_sign_event(
            "domain",
            key.pair(),
            &mut event,
            &ruma::room_version_rules::RedactionRules::V1,
        )
        .unwrap();
        let value = serde_json::to_value(&event).unwrap();
        assert_eq!(
            value["hashes"]["sha256"],
            "5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos"
        );
        assert_eq!(
            signature(&event),
            "KxwGjPSDEtvnFgU00fwFz+l6d2pJM6XBIaMEn81SXPTRl16AqLAYqfIReFGZlHi5KLjAWbOoMszkwsQma+lYAg"
        );
    }

    #[test]
    fn malformed_key_is_refused() {
        assert!(SigningKey::parse("rsa a_x AAAA").is_err());
        assert!(SigningKey::parse("ed25519 a_x AAAA").is_err());
    }
}
