//! Which user IDs may be registered here (spec: "User Identifiers"; Synapse's extra rules).

use ruma::{OwnedUserId, ServerName, UserId};

use crate::{Error, Result};

/// The spec's limit on a whole user ID, in bytes.
const MAX_USER_ID_BYTES: usize = 255;

/// Checks a requested localpart and builds the user ID.
pub fn new_user_id(
    localpart: &str,
    server_name: &ServerName,
    reserved: &[String],
) -> Result<OwnedUserId> {
    let invalid = |msg: &str| Err(Error::InvalidUsername(msg.to_owned()));
    if localpart.is_empty() {
        return invalid("User ID cannot be empty");
    }
    if !localpart
        .bytes()
        .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'=' | b'-' | b'/' | b'+'))
    {
        return invalid("User ID can only contain characters a-z, 0-9, or '._=-/+'");
    }
    if localpart.starts_with('_') {
        return invalid("User ID may not begin with '_': that prefix is reserved for bridges");
    }
    if localpart.bytes().all(|b| b.is_ascii_digit()) {
        return invalid("Numeric user IDs are reserved for generated accounts");
    }
    if reserved.iter().any(|r| r == localpart) {
        return invalid("This user ID is reserved");
    }
    let user_id = format!("@{localpart}:{server_name}");
    if user_id.len() > MAX_USER_ID_BYTES {
        return invalid("User ID is too long (the whole ID may have at most 255 bytes)");
    }
    UserId::parse(user_id).map_err(|e| Error::InvalidUsername(format!("Invalid user ID: {e}")))
}

/// Resolves what a client typed at login (`alice` or `@alice:server`) to a local user ID.
/// Case-insensitive on the localpart, since only lower case can be registered.
pub fn login_user_id(input: &str, server_name: &ServerName) -> Result<OwnedUserId> {
    let forbidden = || Error::Forbidden("Invalid username or password".to_owned());
    let user_id = if input.starts_with('@') {
        let parsed = UserId::parse(input).map_err(|_| forbidden())?;
        if parsed.server_name() != server_name {
            return Err(forbidden());
        }
        format!("@{}:{server_name}", parsed.localpart().to_lowercase())
    } else {
        format!("@{}:{server_name}", input.to_lowercase())
    };
    UserId::parse(user_id).map_err(|_| forbidden())
}

#[cfg(test)]
mod tests {
    use ruma::server_name;

    use super::*;

    #[test]
    fn grammar() {
        let server = server_name!("example.org");
        let reserved = vec!["admin".to_owned()];
        assert_eq!(
            new_user_id("alice.b-c_d=e/f+g", server, &reserved)
                .unwrap()
                .as_str(),
            "@alice.b-c_d=e/f+g:example.org"
        );
        for bad in [
            "", "Alice", "al ice", "al@ice", "_bridge", "12345", "admin", "ä",
        ] {
            assert!(
                matches!(
                    new_user_id(bad, server, &reserved),
                    Err(Error::InvalidUsername(_))
                ),
                "{bad:?}"
            );
        }
        assert!(new_user_id(&"a".repeat(255), server, &reserved).is_err());
    }

    #[test]
    fn login_identifiers() {
        let server = server_name!("example.org");
        assert_eq!(
            login_user_id("Alice", server).unwrap().as_str(),
            "@alice:example.org"
        );
        assert_eq!(
            login_user_id("@alice:example.org", server)
                .unwrap()
                .as_str(),
            "@alice:example.org"
        );
        assert!(login_user_id("@alice:other.org", server).is_err());
    }
}
