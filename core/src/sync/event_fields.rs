//! The filter's `event_fields` (spec: "Filtering"): the room events of a sync carry only the
//! listed fields. Each entry is a dot-separated path into the event (`content.body`); a
//! backslash escapes a literal dot (`content.m\.relates_to`). As Synapse does, it applies to
//! the rooms' timeline and state events.

use ruma::{
    api::client::sync::sync_events::v3::{self, State},
    events::AnySyncStateEvent,
    serde::Raw,
};
use serde_json::{Map, Value as JsonValue};

/// The path's keys, its escaped dots kept inside keys.
fn path_keys(path: &str) -> Vec<String> {
    let mut keys = vec![String::new()];
    let mut chars = path.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(escaped) => keys.last_mut().expect("never empty").push(escaped),
                None => keys.last_mut().expect("never empty").push('\\'),
            },
            '.' => keys.push(String::new()),
            c => keys.last_mut().expect("never empty").push(c),
        }
    }
    keys
}

/// Copies the value at `keys` in `from`, if there is one, to the same place in `to`.
fn copy_path(from: &Map<String, JsonValue>, to: &mut Map<String, JsonValue>, keys: &[String]) {
    let Some((last, parents)) = keys.split_last() else {
        return;
    };
    let mut source = from;
    for key in parents {
        match source.get(key).and_then(JsonValue::as_object) {
            Some(inner) => source = inner,
            None => return,
        }
    }
    let Some(value) = source.get(last) else {
        return;
    };
    let mut target = to;
    for key in parents {
        let entry = target
            .entry(key.clone())
            .or_insert_with(|| JsonValue::Object(Map::new()));
        let Some(inner) = entry.as_object_mut() else {
            return;
        };
        target = inner;
    }
    target.insert(last.clone(), value.clone());
}

/// `event` with only the fields at `fields`.
pub fn project(event: &JsonValue, fields: &[String]) -> JsonValue {
    let Some(from) = event.as_object() else {
        return event.clone();
    };
    let mut to = Map::new();
    for field in fields {
        copy_path(from, &mut to, &path_keys(field));
    }
    JsonValue::Object(to)
}

fn project_all<T>(events: &mut [Raw<T>], fields: &[String]) {
    for event in events {
        if let Ok(value) = event.deserialize_as_unchecked::<JsonValue>()
            && let Ok(projected) = Raw::new(&project(&value, fields))
        {
            *event = projected.cast_unchecked();
        }
    }
}

fn state_events(state: &mut State) -> Option<&mut Vec<Raw<AnySyncStateEvent>>> {
    match state {
        State::Before(state) | State::After(state) => Some(&mut state.events),
        _ => None,
    }
}

/// Applies `fields` to the timeline and state events of every room of `response`.
pub fn apply(response: &mut v3::Response, fields: &[String]) {
    let rooms = response
        .rooms
        .join
        .values_mut()
        .map(|room| (&mut room.timeline, &mut room.state));
    let left = response
        .rooms
        .leave
        .values_mut()
        .map(|room| (&mut room.timeline, &mut room.state));
    for (timeline, state) in rooms.chain(left) {
        project_all(&mut timeline.events, fields);
        if let Some(events) = state_events(state) {
            project_all(events, fields);
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::project;

    #[test]
    fn only_the_listed_paths_are_kept() {
        let event = json!({
            "type": "m.room.message", "sender": "@a:x", "event_id": "$e",
            "content": { "body": "hi", "msgtype": "m.text", "m.relates_to": { "rel_type": "m.thread" } },
        });
        let fields = [
            "type",
            "content.body",
            "content.m\\.relates_to",
            "content.missing",
            "nope",
        ]
        .map(str::to_owned);
        assert_eq!(
            project(&event, &fields),
            json!({
                "type": "m.room.message",
                "content": { "body": "hi", "m.relates_to": { "rel_type": "m.thread" } },
            })
        );
    }
}
