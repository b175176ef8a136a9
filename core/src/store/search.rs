//! The full-text index behind `POST /search`: the searchable text of events (message bodies,
//! room names and topics), filled as events are persisted and cleared when they are redacted.
//!
//! Matching is by substring, case-insensitively, so that text without spaces between words
//! (Chinese, Japanese) is found as well as text in alphabetic scripts. Both sides are lowercased
//! here, in Rust, so the two backends agree. SQLite serves terms of 3 or more characters from an
//! FTS5 trigram index and checks every term with `instr`; PostgreSQL matches `LIKE` patterns,
//! served by a pg_trgm GIN index. Shorter terms cannot use a trigram index and cost a scan of the
//! candidate rooms' indexed text.

use ruma::{EventId, OwnedRoomId};
use serde::Deserialize;
use serde_json::{Map, Value as JsonValue};
use sqlx::{AnyConnection, Row};

use super::{
    Backend, Result, Store,
    rooms::{EVENT_COLUMNS, EventRow, NewEventRow, event_row},
};

/// The searchable keys (spec: `POST /search`, `keys`), each the content field of one event type.
pub const SEARCH_KEYS: [&str; 3] = ["content.body", "content.name", "content.topic"];

/// What to search: every term must occur in the text under one of the keys, in one of the rooms.
pub struct SearchQuery<'a> {
    pub terms: &'a [String],
    pub keys: &'a [&'a str],
    pub rooms: &'a [OwnedRoomId],
}

/// The order of results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchOrder {
    /// Best match first; among equal matches, newest first.
    Rank,
    /// Newest first.
    Recent,
}

/// The last result of a page, after which the next page starts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SearchPosition {
    pub rank: f64,
    pub stream_ordering: i64,
}

/// One match: the event and how closely it matched (higher is closer).
#[derive(Debug, Clone)]
pub struct SearchHit {
    pub row: EventRow,
    pub rank: f64,
}

/// The form text is indexed and searched in. PostgreSQL text cannot hold NUL.
fn normalize(text: &str) -> String {
    text.to_lowercase().replace('\0', "")
}

fn backend_of(conn: &AnyConnection) -> Backend {
    if conn.backend_name().eq_ignore_ascii_case("sqlite") {
        Backend::Sqlite
    } else {
        Backend::Postgres
    }
}

/// The key an event's text is indexed under and the content field it is read from.
fn searchable_field(event: &NewEventRow) -> Option<(&'static str, &'static str)> {
    match (event.event_type.as_str(), event.state_key.as_deref()) {
        ("m.room.message", None) => Some(("content.body", "body")),
        ("m.room.name", Some("")) => Some(("content.name", "name")),
        ("m.room.topic", Some("")) => Some(("content.topic", "topic")),
        _ => None,
    }
}

#[derive(Deserialize)]
struct PduContent {
    content: Map<String, JsonValue>,
}

/// The event's searchable text, if it has any: `(stream_ordering, key, text)`.
pub(super) fn search_entry(event: &NewEventRow) -> Option<(i64, &'static str, String)> {
    let (key, field) = searchable_field(event)?;
    // Content that is not an object with a string under the field has nothing to index; it is
    // still a valid event (content is only checked against the schema by clients).
    let text = serde_json::from_str::<PduContent>(&event.json)
        .ok()
        .and_then(|pdu| pdu.content.get(field)?.as_str().map(normalize))
        .filter(|text| !text.is_empty())?;
    Some((event.stream_ordering, key, text))
}

/// Indexes the searchable text of events being persisted, in one statement per chunk, among
/// the other statements of the events' write.
pub(super) fn index_entries(
    conn: &AnyConnection,
    statements: &mut super::statements::Statements,
    entries: Vec<(i64, &'static str, String)>,
) {
    let head = match backend_of(conn) {
        Backend::Sqlite => "INSERT INTO event_search (rowid, key, value)",
        Backend::Postgres => "INSERT INTO event_search (stream_ordering, key, value)",
    };
    let rows = entries
        .into_iter()
        .map(|(stream_ordering, key, text)| vec![stream_ordering.into(), key.into(), text.into()])
        .collect();
    statements.insert_rows(head, "", rows);
}

/// Removes a redacted event's text from the index: redacted content must not be found.
pub(super) async fn unindex_event(conn: &mut AnyConnection, event_id: &EventId) -> Result<()> {
    let sql = match backend_of(conn) {
        Backend::Sqlite => {
            "DELETE FROM event_search WHERE rowid = \
             (SELECT stream_ordering FROM events WHERE event_id = $1)"
        }
        Backend::Postgres => {
            "DELETE FROM event_search WHERE stream_ordering = \
             (SELECT stream_ordering FROM events WHERE event_id = $1)"
        }
    };
    sqlx::query(sql)
        .bind(event_id.as_str())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

enum Arg {
    Text(String),
    Int(i64),
    Float(f64),
}

/// A statement under construction with its arguments, numbered as they are added.
#[derive(Default)]
struct Statement {
    args: Vec<Arg>,
}

impl Statement {
    fn arg(&mut self, arg: Arg) -> String {
        self.args.push(arg);
        format!("${}", self.args.len())
    }

    fn list<'a>(&mut self, values: impl IntoIterator<Item = &'a str>) -> String {
        values
            .into_iter()
            .map(|v| self.arg(Arg::Text(v.to_owned())))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn query<'q>(
        self,
        sql: &'q str,
    ) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
        self.args
            .into_iter()
            .fold(sqlx::query(sql), |query, arg| match arg {
                Arg::Text(text) => query.bind(text),
                Arg::Int(int) => query.bind(int),
                Arg::Float(float) => query.bind(float),
            })
    }
}

/// `LIKE` pattern for a substring, with PostgreSQL's default escape character.
fn like_substring(term: &str) -> String {
    let escaped = term
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

/// Most trigrams of one term looked up in the index: enough to narrow the candidates, which
/// `instr` then checks against the whole term.
const MAX_TRIGRAMS_PER_TERM: usize = 8;

/// The FTS5 query for a term of 3 or more characters: some of its trigrams, all required. The
/// index keeps no positions (`detail = none`), so it answers single trigrams, not phrases.
fn fts5_trigrams(term: &str) -> String {
    let chars: Vec<char> = term.chars().collect();
    let mut trigrams: Vec<String> = chars
        .windows(3)
        .map(|w| format!("\"{}\"", w.iter().collect::<String>().replace('"', "\"\"")))
        .collect();
    trigrams.sort();
    trigrams.dedup();
    // A sample of them when there are many: `instr` does the exact check.
    let step = trigrams.len().div_ceil(MAX_TRIGRAMS_PER_TERM).max(1);
    trigrams
        .into_iter()
        .step_by(step)
        .collect::<Vec<_>>()
        .join(" AND ")
}

impl Store {
    /// `FROM` and `WHERE` of a search; `None` if nothing can match.
    fn search_source(&self, query: &SearchQuery<'_>, statement: &mut Statement) -> Option<String> {
        let terms: Vec<String> = query
            .terms
            .iter()
            .map(|t| normalize(t))
            .filter(|t| !t.is_empty())
            .collect();
        if terms.is_empty() || query.keys.is_empty() || query.rooms.is_empty() {
            return None;
        }
        let mut conditions = Vec::new();
        let join = match self.backend {
            Backend::Sqlite => {
                // The trigram index finds candidates for the long terms; `instr` checks them all,
                // short terms included (trigram MATCH finds nothing for under 3 characters).
                let indexable: Vec<String> = terms
                    .iter()
                    .filter(|t| t.chars().count() >= 3)
                    .map(|t| fts5_trigrams(t))
                    .collect();
                if !indexable.is_empty() {
                    let phrases = statement.arg(Arg::Text(indexable.join(" AND ")));
                    conditions.push(format!("s.event_search MATCH {phrases}"));
                }
                for term in &terms {
                    let term = statement.arg(Arg::Text(term.clone()));
                    conditions.push(format!("instr(s.value, {term}) > 0"));
                }
                "e.stream_ordering = s.rowid"
            }
            Backend::Postgres => {
                for term in &terms {
                    let pattern = statement.arg(Arg::Text(like_substring(term)));
                    conditions.push(format!("s.value LIKE {pattern}"));
                }
                "e.stream_ordering = s.stream_ordering"
            }
        };
        conditions.push(format!(
            "s.key IN ({})",
            statement.list(query.keys.iter().copied())
        ));
        conditions.push(format!(
            "e.room_id IN ({})",
            statement.list(query.rooms.iter().map(|r| r.as_str()))
        ));
        conditions.push("e.redacted_by IS NULL".to_owned());
        Some(format!(
            "FROM event_search s JOIN events e ON {join} WHERE {}",
            conditions.join(" AND ")
        ))
    }

    /// A page of matches in `order`, after `after`.
    pub async fn search_events(
        &self,
        query: &SearchQuery<'_>,
        order: SearchOrder,
        after: Option<SearchPosition>,
        limit: i64,
    ) -> Result<Vec<SearchHit>> {
        let mut statement = Statement::default();
        let Some(source) = self.search_source(query, &mut statement) else {
            return Ok(Vec::new());
        };
        // The share of the text the terms cover: an exact match scores 1, a term lost in a long
        // message little.
        let rank = query
            .terms
            .iter()
            .map(|t| normalize(t))
            .filter(|t| !t.is_empty())
            .map(|term| {
                let term = statement.arg(Arg::Text(term));
                format!(
                    "CAST(LENGTH(s.value) - LENGTH(REPLACE(s.value, {term}, '')) AS DOUBLE PRECISION) \
                     / LENGTH(s.value)"
                )
            })
            .collect::<Vec<_>>()
            .join(" + ");
        let columns = EVENT_COLUMNS
            .split(", ")
            .map(|c| format!("e.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        // Keyset pagination on what the page is ordered by: results that arrive meanwhile shift
        // nothing that was already returned.
        let (after, order_by) = match (order, after) {
            (SearchOrder::Rank, Some(after)) => {
                let rank = statement.arg(Arg::Float(after.rank));
                let rank_again = statement.arg(Arg::Float(after.rank));
                let ordering = statement.arg(Arg::Int(after.stream_ordering));
                (
                    format!(
                        "WHERE score < {rank} OR (score = {rank_again} AND stream_ordering < {ordering})"
                    ),
                    "score DESC, stream_ordering DESC",
                )
            }
            (SearchOrder::Rank, None) => (String::new(), "score DESC, stream_ordering DESC"),
            (SearchOrder::Recent, Some(after)) => {
                let ordering = statement.arg(Arg::Int(after.stream_ordering));
                (
                    format!("WHERE stream_ordering < {ordering}"),
                    "stream_ordering DESC",
                )
            }
            (SearchOrder::Recent, None) => (String::new(), "stream_ordering DESC"),
        };
        let limit = statement.arg(Arg::Int(limit));
        let sql = format!(
            "SELECT * FROM (SELECT {columns}, {rank} AS score {source}) AS hits {after} \
             ORDER BY {order_by} LIMIT {limit}"
        );
        statement
            .query(&sql)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|row| {
                Ok(SearchHit {
                    row: event_row(row)?,
                    rank: row.try_get("score")?,
                })
            })
            .collect()
    }

    /// How many events match, before visibility rules (the spec's approximate `count`).
    pub async fn count_search_results(&self, query: &SearchQuery<'_>) -> Result<i64> {
        let mut statement = Statement::default();
        let Some(source) = self.search_source(query, &mut statement) else {
            return Ok(0);
        };
        let sql = format!("SELECT COUNT(*) {source}");
        Ok(statement
            .query(&sql)
            .fetch_one(&self.pool)
            .await?
            .try_get(0)?)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use ruma::{OwnedEventId, OwnedRoomId, RoomVersionId};
    use serde_json::json;

    use super::{SEARCH_KEYS, SearchOrder, SearchPosition, SearchQuery};
    use crate::store::{EventBatch, NewEventRow, NewRoom, Store, testing::test_store};

    fn event(
        ordering: i64,
        kind: &str,
        state_key: Option<&str>,
        content: serde_json::Value,
    ) -> NewEventRow {
        let event_id = OwnedEventId::try_from(format!("$e{ordering}")).unwrap();
        NewEventRow {
            stream_ordering: ordering,
            event_id,
            event_type: kind.to_owned(),
            state_key: state_key.map(str::to_owned),
            sender: "@a:x.org".to_owned(),
            origin_server_ts: ordering,
            depth: ordering,
            prev_events: Vec::new(),
            state_before: 0,
            state_after: 0,
            state_group: None,
            membership: None,
            replaces_state: None,
            relates_to: None,
            transaction: None,
            redacts: None,
            json: Arc::from(
                json!({ "type": kind, "content": content, "prev_events": [] }).to_string(),
            ),
            push_actions: Vec::new(),
        }
    }

    async fn write(store: &Store, room_id: &OwnedRoomId, new: bool, events: Vec<NewEventRow>) {
        store
            .enqueue_events(EventBatch {
                room_id: room_id.clone(),
                new_room: new.then(|| NewRoom {
                    version: RoomVersionId::V11,
                    creator: "@a:x.org".to_owned(),
                    created_ts: 0,
                    published: false,
                }),
                events,
                extremities: Vec::new(),
                redaction_rules: RoomVersionId::V11.rules().unwrap().redaction,
                remote_servers: Vec::new(),
                prev_events_local: true,
                after_commit: None,
                resolved: None,
            })
            .await
            .unwrap()
            .committed()
            .await
            .unwrap();
    }

    async fn found(
        store: &Store,
        rooms: &[OwnedRoomId],
        terms: &[&str],
        order: SearchOrder,
        after: Option<SearchPosition>,
    ) -> Vec<(i64, f64)> {
        let terms: Vec<String> = terms.iter().map(|t| (*t).to_owned()).collect();
        let query = SearchQuery {
            terms: &terms,
            keys: &SEARCH_KEYS,
            rooms,
        };
        store
            .search_events(&query, order, after, 50)
            .await
            .unwrap()
            .into_iter()
            .map(|hit| (hit.row.stream_ordering, hit.rank))
            .collect()
    }

    /// The stream orderings of the newest-first matches.
    async fn recent(store: &Store, rooms: &[OwnedRoomId], terms: &[&str]) -> Vec<i64> {
        found(store, rooms, terms, SearchOrder::Recent, None)
            .await
            .into_iter()
            .map(|(ordering, _)| ordering)
            .collect()
    }

    #[tokio::test]
    async fn finds_substrings_in_any_script_and_case() {
        let (store, _db) = test_store().await;
        let room = OwnedRoomId::try_from("!r:x.org").unwrap();
        let other = OwnedRoomId::try_from("!o:x.org").unwrap();
        write(
            &store,
            &room,
            true,
            vec![
                event(1, "m.room.message", None, json!({ "body": "你好世界" })),
                event(
                    2,
                    "m.room.message",
                    None,
                    json!({ "body": "Hello World 100%" }),
                ),
                event(3, "m.room.name", Some(""), json!({ "name": "世界 news" })),
                event(4, "m.room.message", None, json!({ "body": 42 })),
                event(
                    5,
                    "m.room.member",
                    Some("@a:x.org"),
                    json!({ "membership": "join", "displayname": "世界" }),
                ),
                event(6, "m.room.message", None, json!({ "body": "a\u{0}b 世界" })),
            ],
        )
        .await;
        write(
            &store,
            &other,
            true,
            vec![event(7, "m.room.message", None, json!({ "body": "世界" }))],
        )
        .await;
        let rooms = [room.clone()];
        assert_eq!(recent(&store, &rooms, &["世界"]).await, vec![6, 3, 1]);
        assert_eq!(recent(&store, &rooms, &["好世界"]).await, vec![1]);
        assert_eq!(recent(&store, &rooms, &["WORLD", "hel"]).await, vec![2]);
        assert_eq!(recent(&store, &rooms, &["0%"]).await, vec![2]);
        assert_eq!(recent(&store, &rooms, &["1_0"]).await, Vec::<i64>::new());
        assert_eq!(
            recent(&store, &rooms, &["world", "世界"]).await,
            Vec::<i64>::new()
        );
        let both = [room.clone(), other.clone()];
        assert_eq!(recent(&store, &both, &["世界"]).await, vec![7, 6, 3, 1]);
        // The exact match ranks first, then by the share of the text matched.
        let ranked = found(&store, &both, &["世界"], SearchOrder::Rank, None).await;
        let order: Vec<i64> = ranked.iter().map(|(ordering, _)| *ordering).collect();
        assert_eq!(order, vec![7, 1, 6, 3]);
        assert_eq!(ranked[0].1, 1.0);
        let (stream_ordering, rank) = ranked[1];
        let after = SearchPosition {
            rank,
            stream_ordering,
        };
        let rest = found(&store, &both, &["世界"], SearchOrder::Rank, Some(after)).await;
        assert_eq!(rest, ranked[2..].to_vec());
        let after = SearchPosition {
            rank: 0.0,
            stream_ordering: 6,
        };
        let older = found(&store, &both, &["世界"], SearchOrder::Recent, Some(after)).await;
        assert_eq!(
            older.iter().map(|(o, _)| *o).collect::<Vec<_>>(),
            vec![3, 1]
        );
        let terms = vec!["世界".to_owned()];
        let count = store
            .count_search_results(&SearchQuery {
                terms: &terms,
                keys: &["content.body"],
                rooms: &both,
            })
            .await
            .unwrap();
        assert_eq!(count, 3);
    }

    #[tokio::test]
    async fn redacted_events_are_no_longer_found() {
        let (store, _db) = test_store().await;
        let room = OwnedRoomId::try_from("!r:x.org").unwrap();
        write(
            &store,
            &room,
            true,
            vec![event(
                1,
                "m.room.message",
                None,
                json!({ "body": "secret plans" }),
            )],
        )
        .await;
        let rooms = [room.clone()];
        assert_eq!(recent(&store, &rooms, &["plans"]).await, vec![1]);
        let mut redaction = event(2, "m.room.redaction", None, json!({}));
        redaction.redacts = Some(OwnedEventId::try_from("$e1").unwrap());
        write(&store, &room, false, vec![redaction]).await;
        assert_eq!(recent(&store, &rooms, &["plans"]).await, Vec::<i64>::new());
    }
}
