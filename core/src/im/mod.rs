//! The IM layer (DESIGN.md, "The IM layer"): WeChat/QQ-style features expressed as rooms,
//! events and account data, built on the [`Rooms`] service and account data so that a plain
//! Matrix client still sees sensible rooms and messages.

mod account_data;
mod categories;
mod dm;
mod friends;
pub mod group_admin;
pub mod group_avatar;
mod locks;
pub mod moments;
pub mod recall;

use std::sync::Arc;

use ruma::{OwnedEventId, OwnedUserId};

pub use categories::{MAX_CATEGORIES, MAX_CATEGORY_NAME_CHARS};
pub use dm::DirectRoom;
pub use friends::{
    Category, FRIENDS_DATA, Friend, FriendView, FriendsData, MAX_REQUEST_MESSAGE_CHARS, Privacy,
    RequestView,
};

use crate::{Config, rooms::Rooms, store::Store, sync::Notifier};

pub struct Im {
    store: Store,
    config: Arc<Config>,
    rooms: Arc<Rooms>,
    notifier: Arc<Notifier>,
    dm_locks: locks::KeyedLocks<(OwnedUserId, OwnedUserId)>,
    account_data_locks: locks::KeyedLocks<OwnedUserId>,
    profile_locks: locks::KeyedLocks<OwnedUserId>,
    like_locks: locks::KeyedLocks<(OwnedUserId, OwnedEventId)>,
    mutes: group_admin::Mutes,
}

impl Im {
    pub fn new(
        store: Store,
        config: Arc<Config>,
        rooms: Arc<Rooms>,
        notifier: Arc<Notifier>,
    ) -> Self {
        Self {
            mutes: group_admin::Mutes::start(store.clone(), rooms.clone()),
            store,
            config,
            rooms,
            notifier,
            dm_locks: locks::KeyedLocks::default(),
            account_data_locks: locks::KeyedLocks::default(),
            profile_locks: locks::KeyedLocks::default(),
            like_locks: locks::KeyedLocks::default(),
        }
    }
}
