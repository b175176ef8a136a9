//! Filters: `POST /user/{userId}/filter`, `GET /user/{userId}/filter/{filterId}`.

use complement_tests::{TestServer, User, V3, Value, enc, json};

fn filters_path(user_id: &str) -> String {
    format!("{V3}/user/{}/filter", enc(user_id))
}

fn filter_path(user_id: &str, filter_id: &str) -> String {
    format!("{}/{}", filters_path(user_id), enc(filter_id))
}

/// Asserts every key of `expected` is in `actual` with an equal value (recursively for
/// objects), so that a server may add defaults but not lose or change what was uploaded.
#[track_caller]
fn assert_contains(actual: &Value, expected: &Value, at: &str) {
    match (actual, expected) {
        (Value::Object(actual), Value::Object(expected)) => {
            for (key, value) in expected {
                let got = actual
                    .get(key)
                    .unwrap_or_else(|| panic!("{at}.{key} missing from the stored filter"));
                assert_contains(got, value, &format!("{at}.{key}"));
            }
        }
        _ => assert_eq!(actual, expected, "at {at}"),
    }
}

async fn upload(user: &User, filter: Value) -> String {
    let body = user
        .client
        .post(&filters_path(&user.user_id), filter)
        .await
        .ok();
    body["filter_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no filter_id string: {body}"))
        .to_owned()
}

#[tokio::test]
async fn filter_round_trip() {
    let server = TestServer::start().await;
    let alice = server.client().register("alice", "filter-password").await;
    // Only non-default values: a server may drop fields equal to their defaults.
    let filter = json!({
        "event_fields": ["type", "content", "sender"],
        "event_format": "federation",
        "presence": { "types": ["m.presence"], "not_senders": ["@spam:example.org"] },
        "account_data": { "limit": 5 },
        "room": {
            "timeline": { "limit": 10, "types": ["m.room.message"], "not_rooms": ["!x:example.org"] },
            "state": { "types": ["m.room.*"], "lazy_load_members": true },
            "ephemeral": { "types": ["m.receipt", "m.typing"] },
            "include_leave": true,
        },
    });
    let filter_id = upload(&alice, filter.clone()).await;
    let stored = alice
        .client
        .get(&filter_path(&alice.user_id, &filter_id))
        .await
        .ok();
    assert_contains(&stored, &filter, "filter");

    // An empty filter is valid, and gets its own ID.
    let empty_id = upload(&alice, json!({})).await;
    assert_ne!(empty_id, filter_id);
    alice
        .client
        .get(&filter_path(&alice.user_id, &empty_id))
        .await
        .assert_status(200);
}

#[tokio::test]
async fn invalid_filters_are_rejected() {
    let server = TestServer::start().await;
    let alice = server.client().register("alice", "filter-password").await;
    let invalid = [
        json!({ "room": { "timeline": { "limit": "ten" } } }),
        json!({ "event_fields": "type" }),
        json!({ "event_format": "bogus" }),
        json!({ "presence": { "types": [1, 2] } }),
        json!({ "room": { "rooms": "!notalist:example.org" } }),
    ];
    let mut accepted = Vec::new();
    for filter in invalid {
        let resp = alice
            .client
            .post(&filters_path(&alice.user_id), filter)
            .await;
        let refused = resp.status == 400
            && matches!(resp.errcode(), Some("M_BAD_JSON" | "M_INVALID_PARAM"))
            && resp.json["error"].is_string();
        if !refused {
            accepted.push(resp.to_string());
        }
    }
    assert!(
        accepted.is_empty(),
        "invalid filters must get 400 M_BAD_JSON or M_INVALID_PARAM:\n{}",
        accepted.join("\n")
    );
}

#[tokio::test]
async fn unknown_filter_is_not_found() {
    let server = TestServer::start().await;
    let alice = server.client().register("alice", "filter-password").await;
    for id in ["12345", "nosuchfilter"] {
        alice
            .client
            .get(&filter_path(&alice.user_id, id))
            .await
            .assert_error(404, "M_NOT_FOUND");
    }
}

#[tokio::test]
async fn other_users_filters_are_forbidden() {
    let server = TestServer::start().await;
    let alice = server.client().register("alice", "filter-password").await;
    let mallory = server.client().register("mallory", "filter-password").await;
    let filter_id = upload(&alice, json!({ "room": { "timeline": { "limit": 3 } } })).await;

    mallory
        .client
        .get(&filter_path(&alice.user_id, &filter_id))
        .await
        .assert_error(403, "M_FORBIDDEN");
    mallory
        .client
        .post(&filters_path(&alice.user_id), json!({}))
        .await
        .assert_error(403, "M_FORBIDDEN");
    // Under Mallory's own user ID the filter does not exist either.
    let resp = mallory
        .client
        .get(&filter_path(&mallory.user_id, &filter_id))
        .await;
    assert_ne!(resp.status, 200, "filters are per user: {resp}");
}
