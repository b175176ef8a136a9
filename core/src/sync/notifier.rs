//! Who to wake: every local user with a live `/sync` long-poll or WebSocket holds a
//! [`Subscription`]; whatever changes something a user would see (an event in one of their
//! rooms, a receipt, typing, presence, account data) wakes exactly the users concerned.
//!
//! A subscription counts wake-ups, so one that arrives between "computed an empty response"
//! and "started waiting" is not lost: the wait returns at once.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
};

use ruma::{OwnedUserId, UserId};
use tokio::sync::watch;

use crate::store::{Result, Store};

#[derive(Default)]
pub struct Notifier {
    users: Mutex<HashMap<OwnedUserId, watch::Sender<u64>>>,
    /// Syncs parked in [`Subscription::changed`] right now (metrics, tests).
    waiting: Arc<AtomicUsize>,
}

/// A user's interest in wake-ups; dropping it ends the interest.
pub struct Subscription {
    receiver: watch::Receiver<u64>,
    waiting: Arc<AtomicUsize>,
}

/// Counts a parked sync for as long as it waits, however the wait ends.
struct Parked(Arc<AtomicUsize>);

impl Drop for Parked {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Subscription {
    /// Returns once the user has been woken since the subscription was made or since the last
    /// `changed` returned.
    pub async fn changed(&mut self) {
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let _parked = Parked(self.waiting.clone());
        // The sender lives in the notifier's map while any receiver exists; should it be gone
        // anyway, waking at once is the safe answer (the caller re-checks and waits again).
        let _ = self.receiver.changed().await;
    }
}

impl Notifier {
    fn users(&self) -> std::sync::MutexGuard<'_, HashMap<OwnedUserId, watch::Sender<u64>>> {
        // A poisoned map only means a panic elsewhere mid-update; the map is still valid.
        self.users.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn subscribe(&self, user_id: &UserId) -> Subscription {
        let mut users = self.users();
        let sender = users
            .entry(user_id.to_owned())
            .or_insert_with(|| watch::channel(0).0);
        Subscription {
            receiver: sender.subscribe(),
            waiting: self.waiting.clone(),
        }
    }

    /// Wakes every subscription of the given users. Entries nobody listens to are dropped here,
    /// so the map only holds users with a live sync.
    pub fn wake<'a>(&self, user_ids: impl IntoIterator<Item = &'a UserId>) {
        let mut users = self.users();
        for user_id in user_ids {
            let Some(sender) = users.get(user_id) else {
                continue;
            };
            if sender.receiver_count() == 0 {
                users.remove(user_id);
                continue;
            }
            sender.send_modify(|count| *count = count.wrapping_add(1));
        }
    }

    /// Wakes the user and everyone sharing a joined room with them: for news about the user
    /// that all of them see (presence, device lists).
    pub async fn wake_room_mates(&self, store: &Store, user_id: &UserId) -> Result<()> {
        let watchers = store.users_sharing_a_room(user_id).await?;
        self.wake(watchers.iter().map(|id| &**id).chain([user_id]));
        Ok(())
    }

    /// How many syncs are parked waiting to be woken.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// How many users have a live subscription (metrics, tests).
    pub fn subscribed_users(&self) -> usize {
        self.users()
            .values()
            .filter(|sender| sender.receiver_count() > 0)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use ruma::user_id;

    use super::Notifier;

    #[tokio::test]
    async fn a_wake_before_waiting_is_not_lost() {
        let notifier = Notifier::default();
        let mut subscription = notifier.subscribe(user_id!("@a:x"));
        notifier.wake([user_id!("@a:x")]);
        tokio::time::timeout(Duration::from_secs(5), subscription.changed())
            .await
            .expect("woken");
    }

    #[tokio::test]
    async fn only_the_named_users_are_woken() {
        let notifier = Notifier::default();
        let mut a = notifier.subscribe(user_id!("@a:x"));
        let mut b = notifier.subscribe(user_id!("@b:x"));
        notifier.wake([user_id!("@b:x")]);
        tokio::time::timeout(Duration::from_secs(5), b.changed())
            .await
            .expect("b woken");
        assert!(
            tokio::time::timeout(Duration::ZERO, a.changed())
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn dropped_subscriptions_are_forgotten() {
        let notifier = Notifier::default();
        drop(notifier.subscribe(user_id!("@a:x")));
        notifier.wake([user_id!("@a:x")]);
        assert_eq!(notifier.subscribed_users(), 0);
        assert!(notifier.users().is_empty());
    }
}
