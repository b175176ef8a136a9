//! The IM layer (DESIGN.md, "The IM layer"): WeChat/QQ-style features expressed as rooms,
//! events and account data, built on the [`Rooms`] service and account data so that a plain
//! Matrix client still sees sensible rooms and messages.

mod account_data;
mod categories;
mod dm;
mod federated;
mod friends;
pub mod group_admin;
pub mod group_avatar;
mod locks;
pub mod moments;
mod ownership;
pub mod recall;

use std::sync::{Arc, Weak};

use ruma::{OwnedEventId, OwnedUserId};

pub use categories::{MAX_CATEGORIES, MAX_CATEGORY_NAME_CHARS};
pub use dm::DirectRoom;
pub use federated::IncomingInvite;
pub use friends::{
    Category, FRIENDS_DATA, Friend, FriendView, FriendsData, MAX_REQUEST_MESSAGE_CHARS, Privacy,
    RequestView,
};

use crate::{Config, Error, Result, Services, rooms::Rooms, store::Store, sync::Notifier};

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
    /// The services this layer is part of, for membership changes that may cross servers.
    services: Weak<Services>,
}

impl Im {
    pub fn new(
        store: Store,
        config: Arc<Config>,
        rooms: Arc<Rooms>,
        notifier: Arc<Notifier>,
        services: Weak<Services>,
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
            services,
        }
    }

    /// The services this layer is part of; gone only while the server shuts down.
    fn services(&self) -> Result<Arc<Services>> {
        self.services
            .upgrade()
            .ok_or_else(|| Error::Internal("the server is shutting down".to_owned()))
    }
}
