//! Server-side search (spec: `POST /search`, category `room_events`): the full-text index of
//! message bodies, room names and topics, searched in the rooms the user is joined to, through
//! the history visibility rules, with optional context, state and groupings.
//!
//! Unlike Synapse, rooms the user has left are not searched (Synapse searches them up to the
//! leave); every result is an event of a room the user is in now.

use std::collections::BTreeMap;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use ruma::{
    OwnedEventId, OwnedRoomId, OwnedUserId, RoomId, UserId, api::client::filter::RoomEventFilter,
};
use serde_json::{Value as JsonValue, value::RawValue};

use crate::{
    Error, Result,
    store::{EventRow, SEARCH_KEYS, SearchHit, SearchOrder, SearchPosition, SearchQuery},
};

use super::{
    Rooms,
    read::{matches_filter, parse},
    token::StreamToken,
    visibility::{RoomVisibilityFilters, VisibilityFilter},
};

/// Results per page when the filter sets no `limit` (Synapse's default).
const DEFAULT_PAGE: usize = 10;
/// Most results per page, whatever the filter asks (each may carry context and state).
const MAX_PAGE: usize = 100;
/// Most events of context on either side of a result.
const MAX_CONTEXT: usize = 100;
/// Most terms in one search term; each is one condition of the query.
const MAX_TERMS: usize = 16;
/// Longest search term, in bytes.
const MAX_SEARCH_TERM_BYTES: usize = 2048;
/// Most matches read from the database for one page: a page of matches the user may not see
/// ends early, with a `next_batch` to go on from.
const MAX_SCANNED: usize = 2_000;

/// Context to return around each result (spec: `event_context`).
#[derive(Debug, Clone, Copy)]
pub struct ContextRequest {
    pub before_limit: usize,
    pub after_limit: usize,
    pub include_profile: bool,
}

/// A `room_events` search.
pub struct SearchRequest {
    pub search_term: String,
    /// The content keys to search; all of them if `None`.
    pub keys: Option<Vec<String>>,
    pub filter: RoomEventFilter,
    pub order: SearchOrder,
    pub event_context: Option<ContextRequest>,
    pub include_state: bool,
    pub group_by_room: bool,
    pub group_by_sender: bool,
    /// A `next_batch` of an earlier page of the same search.
    pub next_batch: Option<String>,
}

/// The events around one result.
pub struct SearchContext {
    /// Newest first.
    pub events_before: Vec<Box<RawValue>>,
    /// Oldest first.
    pub events_after: Vec<Box<RawValue>>,
    /// Pages (`/messages`) backwards from before `events_before`.
    pub start: StreamToken,
    /// Pages forwards from after `events_after`.
    pub end: StreamToken,
    /// Display name and avatar of each sender, as of the last event of the context.
    pub profiles: BTreeMap<OwnedUserId, (Option<String>, Option<String>)>,
}

pub struct SearchResult {
    pub rank: f64,
    pub event: Box<RawValue>,
    pub context: Option<SearchContext>,
}

/// The results of a page in one room, or from one sender.
pub struct SearchGroup {
    /// The position of the group's first result in the page's results.
    pub order: u64,
    pub results: Vec<OwnedEventId>,
    /// The next page of this group alone.
    pub next_batch: Option<String>,
}

pub struct SearchResults {
    /// How many events match, before history visibility is applied.
    pub count: u64,
    /// The terms searched for, for clients to highlight.
    pub highlights: Vec<String>,
    pub results: Vec<SearchResult>,
    pub next_batch: Option<String>,
    /// The current state of each room with results, if asked for.
    pub state: BTreeMap<OwnedRoomId, Vec<Box<RawValue>>>,
    pub room_groups: Option<BTreeMap<OwnedRoomId, SearchGroup>>,
    pub sender_groups: Option<BTreeMap<OwnedUserId, SearchGroup>>,
}

/// Where the next page of a search starts: opaque to clients, base64 of the order, the last
/// result's rank and stream ordering, and the room a group's page is restricted to.
#[derive(Debug, Clone, PartialEq)]
struct SearchToken {
    order: SearchOrder,
    after: SearchPosition,
    room: Option<OwnedRoomId>,
}

impl SearchToken {
    fn encode(&self) -> String {
        let order = match self.order {
            SearchOrder::Rank => "rank",
            SearchOrder::Recent => "recent",
        };
        let room = self.room.as_ref().map_or("", |r| r.as_str());
        URL_SAFE_NO_PAD.encode(format!(
            "{order}\n{}\n{}\n{room}",
            self.after.rank, self.after.stream_ordering
        ))
    }

    fn decode(token: &str) -> Result<Self> {
        let invalid = || Error::InvalidParam(format!("Invalid next_batch token {token:?}"));
        let text = URL_SAFE_NO_PAD
            .decode(token)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or_else(invalid)?;
        let mut parts = text.splitn(4, '\n');
        let mut next = || parts.next().ok_or_else(invalid);
        let order = match next()? {
            "rank" => SearchOrder::Rank,
            "recent" => SearchOrder::Recent,
            _ => return Err(invalid()),
        };
        let rank: f64 = next()?.parse().map_err(|_| invalid())?;
        let stream_ordering: i64 = next()?.parse().map_err(|_| invalid())?;
        let room = match next()? {
            "" => None,
            room => Some(OwnedRoomId::try_from(room).map_err(|_| invalid())?),
        };
        if !rank.is_finite() {
            return Err(invalid());
        }
        Ok(Self {
            order,
            after: SearchPosition {
                rank,
                stream_ordering,
            },
            room,
        })
    }
}

/// The terms every result must contain: the search term split at whitespace, with a
/// "double-quoted phrase" kept as one term. Repeated terms count once.
fn parse_terms(search_term: &str) -> Result<Vec<String>> {
    if search_term.len() > MAX_SEARCH_TERM_BYTES {
        return Err(Error::InvalidParam(format!(
            "search_term is longer than {MAX_SEARCH_TERM_BYTES} bytes"
        )));
    }
    let mut terms: Vec<String> = Vec::new();
    for (i, part) in search_term.split('"').enumerate() {
        // Odd parts lie between quotes (an unclosed quote runs to the end).
        let pieces: Vec<&str> = if i % 2 == 1 {
            vec![part.trim()]
        } else {
            part.split_whitespace().collect()
        };
        for piece in pieces {
            if !piece.is_empty() && !terms.iter().any(|t| t == piece) {
                terms.push(piece.to_owned());
            }
        }
    }
    if terms.len() > MAX_TERMS {
        return Err(Error::InvalidParam(format!(
            "search_term has more than {MAX_TERMS} terms"
        )));
    }
    Ok(terms)
}

/// The requested keys that can be searched; an error if none can.
fn searchable_keys(keys: Option<&[String]>) -> Result<Vec<&'static str>> {
    let Some(keys) = keys else {
        return Ok(SEARCH_KEYS.to_vec());
    };
    let known: Vec<&'static str> = SEARCH_KEYS
        .into_iter()
        .filter(|known| keys.iter().any(|k| k == known))
        .collect();
    if known.is_empty() {
        return Err(Error::InvalidParam(format!(
            "keys must name at least one of {}",
            SEARCH_KEYS.join(", ")
        )));
    }
    Ok(known)
}

impl Rooms {
    /// `POST /search`, category `room_events`.
    pub async fn search(&self, user_id: &UserId, request: SearchRequest) -> Result<SearchResults> {
        let token = request
            .next_batch
            .as_deref()
            .map(SearchToken::decode)
            .transpose()?;
        if let Some(token) = &token
            && token.order != request.order
        {
            return Err(Error::InvalidParam(
                "next_batch belongs to a search in another order".to_owned(),
            ));
        }
        let terms = parse_terms(&request.search_term)?;
        let keys = searchable_keys(request.keys.as_deref())?;
        let filter = &request.filter;
        // A group's `next_batch` pages through that room alone, and so do the pages after it.
        let only_room = token.as_ref().and_then(|t| t.room.clone());
        let rooms: Vec<OwnedRoomId> = self
            .joined_rooms(user_id)
            .await?
            .into_iter()
            .filter(|room| filter.rooms.as_ref().is_none_or(|only| only.contains(room)))
            .filter(|room| !filter.not_rooms.contains(room))
            .filter(|room| only_room.as_ref().is_none_or(|only| only == room))
            .collect();
        let query = SearchQuery {
            terms: &terms,
            keys: &keys,
            rooms: &rooms,
        };
        let count = self.store.count_search_results(&query).await?;
        let limit = filter
            .limit
            .map_or(DEFAULT_PAGE, |l| {
                usize::try_from(u64::from(l)).unwrap_or(usize::MAX)
            })
            .clamp(1, MAX_PAGE.min(self.config.limits.max_page_size as usize));
        let page = self
            .search_page(
                user_id,
                &query,
                request.order,
                token.map(|t| t.after),
                limit,
                filter,
            )
            .await?;
        let (hits, mut visibility) = (page.hits, page.visibility);
        let next_batch = page.last.map(|after| SearchToken {
            order: request.order,
            after,
            room: only_room,
        });

        let rows: Vec<EventRow> = hits.iter().map(|hit| hit.row.clone()).collect();
        let events = self.serve(&rows, user_id).await?;
        let mut results = Vec::with_capacity(hits.len());
        for (hit, event) in hits.iter().zip(events) {
            let context = match request.event_context {
                Some(wanted) => {
                    let room_visibility = visibility.of(&hit.row.room_id).await?;
                    Some(
                        self.context_of(user_id, &hit.row, wanted, room_visibility)
                            .await?,
                    )
                }
                None => None,
            };
            results.push(SearchResult {
                rank: hit.rank,
                event,
                context,
            });
        }

        let mut state = BTreeMap::new();
        if request.include_state {
            for hit in &hits {
                if !state.contains_key(&hit.row.room_id) {
                    let room_state = self.state_for(user_id, &hit.row.room_id).await?;
                    state.insert(hit.row.room_id.clone(), room_state);
                }
            }
        }
        let room_groups = request.group_by_room.then(|| {
            group(
                &hits,
                |hit| Ok(hit.row.room_id.clone()),
                |room| {
                    next_batch.as_ref().map(|token| {
                        SearchToken {
                            room: Some(room.clone()),
                            ..token.clone()
                        }
                        .encode()
                    })
                },
            )
        });
        let sender_groups = request
            .group_by_sender
            .then(|| group(&hits, |hit| Ok(parse(&hit.row)?.sender), |_| None));
        Ok(SearchResults {
            count: u64::try_from(count).unwrap_or_default(),
            highlights: terms,
            results,
            next_batch: next_batch.map(|t| t.encode()),
            state,
            room_groups: room_groups.transpose()?,
            sender_groups: sender_groups.transpose()?,
        })
    }

    /// Up to `limit` matches the user may see, and the position to continue from if there may be
    /// more.
    async fn search_page<'a>(
        &'a self,
        user_id: &'a UserId,
        query: &SearchQuery<'_>,
        order: SearchOrder,
        mut after: Option<SearchPosition>,
        limit: usize,
        filter: &RoomEventFilter,
    ) -> Result<SearchPage<'a>> {
        let mut visibility = RoomVisibilityFilters::new(self, user_id);
        let batch = (limit * 2).clamp(20, 500);
        let mut hits = Vec::with_capacity(limit);
        let mut scanned = 0;
        while scanned < MAX_SCANNED {
            let rows = self
                .store
                .search_events(query, order, after, batch as i64)
                .await?;
            let last_batch = rows.len() < batch;
            let total = rows.len();
            for (i, hit) in rows.into_iter().enumerate() {
                scanned += 1;
                after = Some(SearchPosition {
                    rank: hit.rank,
                    stream_ordering: hit.row.stream_ordering,
                });
                if !self.may_see(&hit.row, filter, &mut visibility).await? {
                    continue;
                }
                hits.push(hit);
                if hits.len() == limit {
                    let exhausted = last_batch && i + 1 == total;
                    return Ok(SearchPage {
                        hits,
                        last: after.filter(|_| !exhausted),
                        visibility,
                    });
                }
            }
            if last_batch {
                return Ok(SearchPage {
                    hits,
                    last: None,
                    visibility,
                });
            }
        }
        Ok(SearchPage {
            hits,
            last: after,
            visibility,
        })
    }

    /// Whether a match passes the request's filter and the room's history visibility.
    async fn may_see(
        &self,
        row: &EventRow,
        filter: &RoomEventFilter,
        visibility: &mut RoomVisibilityFilters<'_>,
    ) -> Result<bool> {
        let pdu = parse(row)?;
        if !matches_filter(&pdu, filter) {
            return Ok(false);
        }
        visibility.allows(row, &pdu).await
    }

    /// The visible events around a result, with pagination tokens and, if asked, the senders'
    /// profiles.
    async fn context_of(
        &self,
        user_id: &UserId,
        result: &EventRow,
        wanted: ContextRequest,
        visibility: &mut VisibilityFilter<'_>,
    ) -> Result<SearchContext> {
        let room_id: &RoomId = &result.room_id;
        let position = result.stream_ordering;
        let before_limit = wanted.before_limit.min(MAX_CONTEXT);
        let after_limit = wanted.after_limit.min(MAX_CONTEXT);
        let before = if before_limit == 0 {
            Vec::new()
        } else {
            self.store
                .room_events(room_id, position - 1, false, before_limit as i64)
                .await?
        };
        let after = if after_limit == 0 {
            Vec::new()
        } else {
            self.store
                .room_events(room_id, position, true, after_limit as i64)
                .await?
        };
        let start = StreamToken(before.last().map_or(position, |row| row.stream_ordering) - 1);
        let end = StreamToken(after.last().map_or(position, |row| row.stream_ordering));
        let events_before = self.visible(before, visibility).await?;
        let events_after = self.visible(after, visibility).await?;
        let mut profiles = BTreeMap::new();
        if wanted.include_profile {
            let last = events_after.last().unwrap_or(result);
            for row in events_before
                .iter()
                .chain(std::iter::once(result))
                .chain(events_after.iter())
            {
                let sender = parse(row)?.sender;
                if profiles.contains_key(&sender) {
                    continue;
                }
                let member = self
                    .state_content_at(last.state_after, "m.room.member", sender.as_str())
                    .await?;
                let text = |field: &str| {
                    member
                        .as_ref()
                        .and_then(|c| c.get(field))
                        .and_then(JsonValue::as_str)
                        .map(str::to_owned)
                };
                profiles.insert(sender, (text("displayname"), text("avatar_url")));
            }
        }
        Ok(SearchContext {
            events_before: self.serve(&events_before, user_id).await?,
            events_after: self.serve(&events_after, user_id).await?,
            start,
            end,
            profiles,
        })
    }

    async fn visible(
        &self,
        rows: Vec<EventRow>,
        visibility: &mut VisibilityFilter<'_>,
    ) -> Result<Vec<EventRow>> {
        let mut visible = Vec::with_capacity(rows.len());
        for row in rows {
            let pdu = parse(&row)?;
            if visibility.allows(&row, &pdu).await? {
                visible.push(row);
            }
        }
        Ok(visible)
    }
}

struct SearchPage<'a> {
    hits: Vec<SearchHit>,
    /// The last match read, when there may be more.
    last: Option<SearchPosition>,
    /// The history visibility of each room read, for the context of the results.
    visibility: RoomVisibilityFilters<'a>,
}

/// The page's results grouped by `key`, each group in result order.
fn group<K: Ord + Clone>(
    hits: &[SearchHit],
    key: impl Fn(&SearchHit) -> Result<K>,
    next_batch: impl Fn(&K) -> Option<String>,
) -> Result<BTreeMap<K, SearchGroup>> {
    let mut groups: BTreeMap<K, SearchGroup> = BTreeMap::new();
    for (position, hit) in hits.iter().enumerate() {
        let key = key(hit)?;
        let group = groups.entry(key.clone()).or_insert_with(|| SearchGroup {
            order: position as u64,
            results: Vec::new(),
            next_batch: next_batch(&key),
        });
        group.results.push(hit.row.event_id.clone());
    }
    Ok(groups)
}

#[cfg(test)]
mod tests {
    use ruma::OwnedRoomId;

    use super::{SearchOrder, SearchPosition, SearchToken, parse_terms, searchable_keys};

    #[test]
    fn terms_split_at_whitespace_and_keep_quoted_phrases() {
        assert_eq!(parse_terms("  hello   世界 ").unwrap(), ["hello", "世界"]);
        assert_eq!(
            parse_terms("say \"hello world\" twice twice").unwrap(),
            ["say", "hello world", "twice"]
        );
        assert_eq!(parse_terms("\"open ended").unwrap(), ["open ended"]);
        assert!(parse_terms("   ").unwrap().is_empty());
        let many = (0..17)
            .map(|i| format!("w{i}"))
            .collect::<Vec<_>>()
            .join(" ");
        assert!(parse_terms(&many).is_err());
    }

    #[test]
    fn keys_default_to_all_and_unknown_ones_are_ignored() {
        assert_eq!(searchable_keys(None).unwrap().len(), 3);
        let keys = vec!["content.topic".to_owned(), "content.nope".to_owned()];
        assert_eq!(searchable_keys(Some(&keys)).unwrap(), ["content.topic"]);
        assert!(searchable_keys(Some(&["content.nope".to_owned()])).is_err());
        assert!(searchable_keys(Some(&[])).is_err());
    }

    #[test]
    fn tokens_round_trip_and_reject_garbage() {
        let token = SearchToken {
            order: SearchOrder::Rank,
            after: SearchPosition {
                rank: 0.1 + 0.2,
                stream_ordering: 42,
            },
            room: Some(OwnedRoomId::try_from("!a.b:x.org").unwrap()),
        };
        assert_eq!(SearchToken::decode(&token.encode()).unwrap(), token);
        let recent = SearchToken {
            order: SearchOrder::Recent,
            room: None,
            ..token
        };
        assert_eq!(SearchToken::decode(&recent.encode()).unwrap(), recent);
        for bad in ["", "!!", "cmFuaw", "s42"] {
            assert!(SearchToken::decode(bad).is_err(), "{bad}");
        }
    }
}
