//! Friend categories: created, renamed, deleted and ordered in `im.tessera.friends`; a friend
//! is in at most one. Each category is mirrored as the user-defined tag `u.<name>` (`m.tag`) on
//! the friend's DM room, so plain clients group those rooms too.

use rand::{Rng, distributions::Alphanumeric};
use ruma::{RoomId, UserId};
use serde_json::{Map, Value as JsonValue};

use super::{
    Im,
    friends::{Category, FRIENDS_DATA, FriendsData, category_name},
};
use crate::{Error, Result};

/// Most categories a user may have.
pub const MAX_CATEGORIES: usize = 100;
/// Longest category name, in characters.
pub const MAX_CATEGORY_NAME_CHARS: usize = 64;

fn tag(name: &str) -> String {
    format!("u.{name}")
}

fn check_name(data: &FriendsData, name: &str, except: Option<&str>) -> Result<String> {
    let name = name.trim();
    if name.is_empty() {
        return Err(Error::InvalidParam(
            "A category name may not be empty".to_owned(),
        ));
    }
    if name.chars().count() > MAX_CATEGORY_NAME_CHARS {
        return Err(Error::InvalidParam(format!(
            "A category name is at most {MAX_CATEGORY_NAME_CHARS} characters"
        )));
    }
    if data
        .categories
        .iter()
        .any(|c| c.name == name && Some(c.id.as_str()) != except)
    {
        return Err(Error::InvalidParam(format!(
            "You already have a category named {name:?}"
        )));
    }
    Ok(name.to_owned())
}

fn unknown(id: &str) -> Error {
    Error::NotFound(format!("You have no category {id:?}"))
}

impl Im {
    /// Creates a category at the end of the order; returns its ID.
    pub async fn create_category(&self, user_id: &UserId, name: &str) -> Result<String> {
        let id: String = rand::thread_rng()
            .sample_iter(&Alphanumeric)
            .take(12)
            .map(char::from)
            .collect();
        self.update_account_data(user_id, None, FRIENDS_DATA, |data: &mut FriendsData| {
            if data.categories.len() >= MAX_CATEGORIES {
                return Err(Error::InvalidParam(format!(
                    "You cannot have more than {MAX_CATEGORIES} categories"
                )));
            }
            let name = check_name(data, name, None)?;
            data.categories.push(Category {
                id: id.clone(),
                name,
            });
            Ok(())
        })
        .await?;
        Ok(id)
    }

    pub async fn rename_category(&self, user_id: &UserId, id: &str, name: &str) -> Result<()> {
        let (old, new, data) = self
            .update_account_data(user_id, None, FRIENDS_DATA, |data: &mut FriendsData| {
                let name = check_name(data, name, Some(id))?;
                let category = data
                    .categories
                    .iter_mut()
                    .find(|c| c.id == id)
                    .ok_or_else(|| unknown(id))?;
                let old = std::mem::replace(&mut category.name, name.clone());
                Ok((old, name, data.clone()))
            })
            .await?;
        for friend in data.friends.values() {
            if friend.category.as_deref() == Some(id) {
                self.retag(user_id, &friend.room_id, Some(&old), Some(&new))
                    .await?;
            }
        }
        Ok(())
    }

    /// Deletes a category; its friends are left without one.
    pub async fn delete_category(&self, user_id: &UserId, id: &str) -> Result<()> {
        let (name, rooms) = self
            .update_account_data(user_id, None, FRIENDS_DATA, |data: &mut FriendsData| {
                let name = category_name(data, id).ok_or_else(|| unknown(id))?;
                data.categories.retain(|c| c.id != id);
                let mut rooms = Vec::new();
                for friend in data.friends.values_mut() {
                    if friend.category.as_deref() == Some(id) {
                        friend.category = None;
                        rooms.push(friend.room_id.clone());
                    }
                }
                Ok((name, rooms))
            })
            .await?;
        for room_id in rooms {
            self.retag(user_id, &room_id, Some(&name), None).await?;
        }
        Ok(())
    }

    /// Reorders the categories: `order` names every category exactly once.
    pub async fn order_categories(&self, user_id: &UserId, order: &[String]) -> Result<()> {
        self.update_account_data(user_id, None, FRIENDS_DATA, |data: &mut FriendsData| {
            let mut current: Vec<&str> = data.categories.iter().map(|c| c.id.as_str()).collect();
            let mut given: Vec<&str> = order.iter().map(String::as_str).collect();
            current.sort_unstable();
            given.sort_unstable();
            if current != given {
                return Err(Error::InvalidParam(
                    "The order must list each of your categories exactly once".to_owned(),
                ));
            }
            let mut ordered = Vec::with_capacity(order.len());
            for id in order {
                if let Some(category) = data.categories.iter().find(|c| &c.id == id) {
                    ordered.push(category.clone());
                }
            }
            data.categories = ordered;
            Ok(())
        })
        .await
    }

    /// Puts a friend in a category (or in none, with `None`).
    pub async fn set_friend_category(
        &self,
        user_id: &UserId,
        friend: &UserId,
        category: Option<&str>,
    ) -> Result<()> {
        let (room_id, old, new) = self
            .update_account_data(user_id, None, FRIENDS_DATA, |data: &mut FriendsData| {
                let new = category
                    .map(|id| category_name(data, id).ok_or_else(|| unknown(id)))
                    .transpose()?;
                let previous = data
                    .friends
                    .get(friend)
                    .ok_or_else(|| Error::NotFound(format!("{friend} is not your friend")))?
                    .category
                    .clone();
                let old = previous.and_then(|id| category_name(data, &id));
                let entry = data
                    .friends
                    .get_mut(friend)
                    .ok_or_else(|| Error::NotFound(format!("{friend} is not your friend")))?;
                entry.category = category.map(str::to_owned);
                Ok((entry.room_id.clone(), old, new))
            })
            .await?;
        self.retag(user_id, &room_id, old.as_deref(), new.as_deref())
            .await
    }

    /// Replaces the category tag `remove` by `add` on the user's DM room, keeping other tags.
    pub(super) async fn retag(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        remove: Option<&str>,
        add: Option<&str>,
    ) -> Result<()> {
        self.update_account_data(
            user_id,
            Some(room_id),
            "m.tag",
            |content: &mut Map<String, JsonValue>| {
                let tags = content
                    .entry("tags")
                    .or_insert_with(|| JsonValue::Object(Map::new()));
                if !tags.is_object() {
                    *tags = JsonValue::Object(Map::new());
                }
                if let Some(tags) = tags.as_object_mut() {
                    if let Some(name) = remove {
                        tags.remove(&tag(name));
                    }
                    if let Some(name) = add {
                        tags.insert(tag(name), JsonValue::Object(Map::new()));
                    }
                }
                Ok(())
            },
        )
        .await
    }
}
