//! Profiles: `displayname`, `avatar_url` and custom fields (spec: "Profiles", MSC4133 fields).

use std::collections::BTreeMap;

use ruma::UserId;
use serde_json::Value as JsonValue;

use super::Users;
use crate::{Error, Result};

/// The spec's limit on a whole profile, in bytes of JSON.
const MAX_PROFILE_BYTES: usize = 65536;
/// Field names are at most this long (spec: `PUT /profile/{userId}/{keyName}`).
const MAX_FIELD_NAME_BYTES: usize = 255;

impl Users {
    /// The whole profile of a local user; `M_NOT_FOUND` if there is no such user.
    pub async fn profile(&self, user_id: &UserId) -> Result<BTreeMap<String, JsonValue>> {
        self.require_local_user(user_id).await?;
        Ok(self.store.profile(user_id).await?)
    }

    pub async fn profile_field(&self, user_id: &UserId, field: &str) -> Result<JsonValue> {
        self.require_local_user(user_id).await?;
        self.store
            .profile_field(user_id, field)
            .await?
            .ok_or_else(|| Error::NotFound(format!("The profile has no field {field:?}")))
    }

    pub async fn set_profile_field(
        &self,
        user_id: &UserId,
        field: &str,
        value: JsonValue,
    ) -> Result<()> {
        check_field(field, &value)?;
        let mut profile = self.store.profile(user_id).await?;
        profile.insert(field.to_owned(), value.clone());
        let size = serde_json::to_vec(&profile).map_or(usize::MAX, |bytes| bytes.len());
        if size > MAX_PROFILE_BYTES {
            return Err(Error::ProfileTooLarge(format!(
                "The profile would exceed {MAX_PROFILE_BYTES} bytes"
            )));
        }
        Ok(self.store.set_profile_field(user_id, field, &value).await?)
    }

    pub async fn delete_profile_field(&self, user_id: &UserId, field: &str) -> Result<()> {
        check_key(field)?;
        Ok(self.store.delete_profile_field(user_id, field).await?)
    }

    async fn require_local_user(&self, user_id: &UserId) -> Result<()> {
        if user_id.server_name() != self.server_name() {
            return Err(Error::NotFound("Profile not found".to_owned()));
        }
        match self.store.account(user_id).await? {
            Some(account) if !account.deactivated => Ok(()),
            _ => Err(Error::NotFound("Profile not found".to_owned())),
        }
    }
}

/// The key grammar of `PUT /profile/{userId}/{keyName}`: the three defined keys, or a custom
/// key in the Common Namespaced Identifier Grammar (`[a-z][a-z0-9_]*` segments, at least two).
fn check_key(field: &str) -> Result<()> {
    if field.len() > MAX_FIELD_NAME_BYTES {
        return Err(Error::KeyTooLarge(format!(
            "Profile keys are at most {MAX_FIELD_NAME_BYTES} bytes"
        )));
    }
    let segment_ok = |segment: &str| {
        let mut bytes = segment.bytes();
        bytes.next().is_some_and(|b| b.is_ascii_lowercase())
            && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    };
    let namespaced = field.split('.').count() >= 2 && field.split('.').all(segment_ok);
    if matches!(field, "avatar_url" | "displayname" | "m.tz") || namespaced {
        Ok(())
    } else {
        Err(Error::InvalidParam(format!(
            "Invalid profile key {field:?}: use displayname, avatar_url, m.tz or a namespaced key like com.example.field"
        )))
    }
}

fn check_field(field: &str, value: &JsonValue) -> Result<()> {
    check_key(field)?;
    match field {
        "displayname" => match value.as_str() {
            Some(name) if name.chars().count() <= 256 => Ok(()),
            Some(_) => Err(Error::BadJson(
                "displayname is too long (at most 256 characters)".to_owned(),
            )),
            None => Err(Error::BadJson("displayname must be a string".to_owned())),
        },
        "avatar_url" => match value.as_str() {
            Some(url) if url.is_empty() || url.starts_with("mxc://") => Ok(()),
            _ => Err(Error::BadJson(
                "avatar_url must be an mxc:// URI".to_owned(),
            )),
        },
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_grammar() {
        for ok in [
            "displayname",
            "avatar_url",
            "m.tz",
            "com.example.field",
            "im.tessera.status_2",
        ] {
            check_key(ok).unwrap();
        }
        for bad in [
            "Foo",
            "foo",
            "com.Example.x",
            "com..x",
            ".x",
            "1a.b",
            "a.b-c",
        ] {
            assert!(
                matches!(check_key(bad), Err(Error::InvalidParam(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            check_key(&format!("a.{}", "b".repeat(300))),
            Err(Error::KeyTooLarge(_))
        ));
    }
}
