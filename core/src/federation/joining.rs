//! Rooms this server is joining through another server right now. The resident server sends
//! the room's new events as soon as it has stored the join, which may be before this server
//! has stored the room from the `send_join` answer; such events wait for the join (as Synapse
//! queues them) instead of being refused for a room this server is not in, and lost.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex as SyncMutex},
    time::Duration,
};

use ruma::{OwnedRoomId, RoomId};
use tokio::sync::{Mutex, OwnedMutexGuard};

/// How long a received event waits for a join in progress: longer than any join takes.
const JOIN_WAIT: Duration = Duration::from_secs(60);

#[derive(Default)]
pub struct JoinsInProgress {
    rooms: Arc<SyncMutex<HashMap<OwnedRoomId, Arc<Mutex<()>>>>>,
}

/// Held while a join is in progress; dropping it lets the events waiting for it through.
pub struct Joining {
    rooms: Arc<SyncMutex<HashMap<OwnedRoomId, Arc<Mutex<()>>>>>,
    room_id: OwnedRoomId,
    lock: Arc<Mutex<()>>,
    _guard: OwnedMutexGuard<()>,
}

impl JoinsInProgress {
    /// Marks a join of the room as in progress until the returned guard is dropped. Two joins
    /// of one room at once (two users) take turns.
    pub async fn start(&self, room_id: &RoomId) -> Joining {
        let lock = self.map().entry(room_id.to_owned()).or_default().clone();
        let guard = lock.clone().lock_owned().await;
        // The join before this one took the entry away when it ended.
        self.map()
            .entry(room_id.to_owned())
            .or_insert_with(|| lock.clone());
        Joining {
            rooms: self.rooms.clone(),
            room_id: room_id.to_owned(),
            lock,
            _guard: guard,
        }
    }

    /// Waits until no join of the room is in progress (at most [`JOIN_WAIT`]).
    pub async fn wait_for(&self, room_id: &RoomId) {
        let lock = self.map().get(room_id).cloned();
        if let Some(lock) = lock {
            // A join that takes longer than this has failed in all but name; the event is then
            // handled as for any room this server is not in.
            let _ = tokio::time::timeout(JOIN_WAIT, lock.lock()).await;
        }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<OwnedRoomId, Arc<Mutex<()>>>> {
        // A poisoned map is still a valid map.
        self.rooms.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Joining {
    fn drop(&mut self) {
        let mut rooms = self.rooms.lock().unwrap_or_else(|e| e.into_inner());
        if rooms
            .get(&self.room_id)
            .is_some_and(|lock| Arc::ptr_eq(lock, &self.lock))
        {
            rooms.remove(&self.room_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use ruma::room_id;

    use super::*;

    #[tokio::test]
    async fn received_events_wait_for_a_join_in_progress_and_only_for_it() {
        let joins = Arc::new(JoinsInProgress::default());
        let room = room_id!("!room:a.test");
        // No join: nothing to wait for.
        joins.wait_for(room).await;

        let joining = joins.start(room).await;
        let done = Arc::new(AtomicBool::new(false));
        let waiter = tokio::spawn({
            let (joins, done) = (joins.clone(), done.clone());
            async move {
                joins.wait_for(room).await;
                done.store(true, Ordering::SeqCst);
            }
        });
        // Another room's events do not wait for this join.
        joins.wait_for(room_id!("!other:a.test")).await;
        tokio::task::yield_now().await;
        assert!(
            !done.load(Ordering::SeqCst),
            "the event went ahead of the join"
        );
        drop(joining);
        waiter.await.unwrap();
        assert!(done.load(Ordering::SeqCst));
        assert!(joins.map().is_empty(), "a finished join leaves no entry");
    }
}
