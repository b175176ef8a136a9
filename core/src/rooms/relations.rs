//! `GET /relations/{eventId}[/{relType}[/{eventType}]]` and `GET /threads`: child events of
//! an event and the thread roots of a room, paginated in stream order through the same
//! visibility rules as `/messages`, served with their bundled aggregations.

use ruma::{EventId, OwnedEventId, RoomId, UserId};
use serde_json::value::RawValue;

use crate::{Result, store::RelationsQuery};

use super::{Direction, Rooms, read::parse, token::StreamToken, visibility::VisibilityFilter};

/// How deep `recurse=true` follows relations of relations (the spec asks for at least 3;
/// Synapse uses 3).
pub const RELATIONS_RECURSION_DEPTH: u32 = 3;

/// Most rows read for one page: a page whose rows are hidden ends early, with a token.
const MAX_SCANNED: usize = 2_000;

/// What `/relations` asks for.
pub struct RelationsRequest<'a> {
    pub rel_type: Option<&'a str>,
    pub event_type: Option<&'a str>,
    pub from: Option<StreamToken>,
    pub to: Option<StreamToken>,
    pub dir: Direction,
    pub limit: usize,
    pub recurse: bool,
}

pub struct RelationsPage {
    pub chunk: Vec<Box<RawValue>>,
    pub next_batch: Option<StreamToken>,
    pub prev_batch: Option<StreamToken>,
    /// Present when the request asked to recurse.
    pub recursion_depth: Option<u32>,
}

pub struct ThreadsPage {
    pub chunk: Vec<Box<RawValue>>,
    pub next_batch: Option<StreamToken>,
}

impl Rooms {
    /// The children of a visible event (404 for an unknown or hidden one), newest first by
    /// default.
    pub async fn relations_for(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        event_id: &EventId,
        request: RelationsRequest<'_>,
    ) -> Result<RelationsPage> {
        self.visible_event(user_id, room_id, event_id).await?;
        let forward = request.dir == Direction::Forward;
        let mut position = request.from.map_or_else(
            || {
                if forward { 0 } else { self.current_position() }
            },
            |token| token.0,
        );
        let depth = if request.recurse {
            RELATIONS_RECURSION_DEPTH
        } else {
            1
        };
        let mut visibility = VisibilityFilter::new(self, room_id, user_id).await?;
        let batch = (request.limit * 2).clamp(20, 500);
        let mut chunk = Vec::with_capacity(request.limit);
        let mut scanned = 0;
        let mut exhausted = false;
        'pages: while chunk.len() < request.limit && scanned < MAX_SCANNED {
            let rows = self
                .store
                .relations_page(RelationsQuery {
                    room_id,
                    parent: event_id,
                    rel_type: request.rel_type,
                    event_type: request.event_type,
                    max_depth: i64::from(depth),
                    from: position,
                    forward,
                    limit: batch as i64,
                })
                .await?;
            let last_batch = rows.len() < batch;
            for row in rows {
                scanned += 1;
                let beyond = match (request.dir, request.to) {
                    (Direction::Forward, Some(to)) => row.stream_ordering > to.0,
                    (Direction::Backward, Some(to)) => row.stream_ordering <= to.0,
                    _ => false,
                };
                if beyond {
                    exhausted = true;
                    break 'pages;
                }
                position = if forward {
                    row.stream_ordering
                } else {
                    row.stream_ordering - 1
                };
                let pdu = parse(&row)?;
                if !visibility.allows(&row, &pdu).await? {
                    continue;
                }
                chunk.push(row);
                if chunk.len() == request.limit {
                    break 'pages;
                }
            }
            if last_batch {
                exhausted = true;
                break;
            }
        }
        Ok(RelationsPage {
            chunk: self.serve(&chunk, user_id).await?,
            next_batch: (!exhausted).then_some(StreamToken(position)),
            prev_batch: request.from,
            recursion_depth: request.recurse.then_some(depth),
        })
    }

    /// The room's thread roots the user may see, the most recently active thread first; with
    /// `participated`, only threads the user started or replied in.
    pub async fn threads_for(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        participated: bool,
        from: Option<StreamToken>,
        limit: usize,
    ) -> Result<ThreadsPage> {
        self.history_access(user_id, room_id).await?;
        let mut position = from.map_or_else(|| self.current_position(), |token| token.0);
        let mut visibility = VisibilityFilter::new(self, room_id, user_id).await?;
        let batch = (limit * 2).clamp(20, 500);
        let mut chunk = Vec::with_capacity(limit);
        let mut scanned = 0;
        let mut exhausted = false;
        'pages: while chunk.len() < limit && scanned < MAX_SCANNED {
            let roots = self
                .store
                .thread_roots(
                    room_id,
                    position,
                    participated.then_some(user_id),
                    batch as i64,
                )
                .await?;
            let last_batch = roots.len() < batch;
            let ids: Vec<OwnedEventId> = roots.iter().map(|r| r.root.clone()).collect();
            let mut rows = self.store.events_by_id(&ids).await?;
            for root in roots {
                scanned += 1;
                position = root.latest - 1;
                let Some(row) = rows.remove(&root.root) else {
                    continue;
                };
                if !visibility.allows(&row, &parse(&row)?).await? {
                    continue;
                }
                chunk.push(row);
                if chunk.len() == limit {
                    break 'pages;
                }
            }
            if last_batch {
                exhausted = true;
                break;
            }
        }
        Ok(ThreadsPage {
            chunk: self.serve(&chunk, user_id).await?,
            next_batch: (!exhausted).then_some(StreamToken(position)),
        })
    }
}
