//! Discovery: `/versions`, `/.well-known/matrix/{client,server}`, `/capabilities`, CORS.

use complement_tests::{Method, TestServer, V3};

#[tokio::test]
async fn versions_lists_spec_versions_without_auth() {
    let server = TestServer::start().await;
    let body = server.client().get("/_matrix/client/versions").await.ok();
    let versions = body["versions"]
        .as_array()
        .unwrap_or_else(|| panic!("no versions list: {body}"));
    assert!(
        versions
            .iter()
            .any(|v| v.as_str().is_some_and(|v| v.starts_with("v1."))),
        "no v1.x version advertised: {body}"
    );
    if let Some(unstable) = body.get("unstable_features") {
        let features = unstable
            .as_object()
            .unwrap_or_else(|| panic!("unstable_features is not an object: {body}"));
        assert!(
            features.values().all(|v| v.is_boolean()),
            "unstable_features values must be booleans: {body}"
        );
    }
}

#[tokio::test]
async fn well_known_client_defaults_to_the_listener_url() {
    let server = TestServer::start().await;
    let body = server.client().get("/.well-known/matrix/client").await.ok();
    let base_url = body["m.homeserver"]["base_url"]
        .as_str()
        .unwrap_or_else(|| panic!("no m.homeserver.base_url: {body}"));
    assert_eq!(base_url.trim_end_matches('/'), server.base_url(), "{body}");
}

#[tokio::test]
async fn well_known_client_advertises_public_baseurl() {
    let server = TestServer::builder()
        .set("public_baseurl", "https://matrix.example.org")
        .start()
        .await;
    let body = server.client().get("/.well-known/matrix/client").await.ok();
    assert_eq!(
        body["m.homeserver"]["base_url"]
            .as_str()
            .map(|u| u.trim_end_matches('/')),
        Some("https://matrix.example.org"),
        "{body}"
    );
}

#[tokio::test]
async fn well_known_server_is_404_unless_configured() {
    let server = TestServer::start().await;
    let resp = server.client().get("/.well-known/matrix/server").await;
    resp.assert_status(404);

    let server = TestServer::builder()
        .set("well_known_server", "matrix.example.org:443")
        .start()
        .await;
    let body = server.client().get("/.well-known/matrix/server").await.ok();
    assert_eq!(body["m.server"], "matrix.example.org:443", "{body}");
}

#[tokio::test]
async fn capabilities_require_auth_and_describe_the_server() {
    let server = TestServer::start().await;
    let client = server.client();
    client
        .get(&format!("{V3}/capabilities"))
        .await
        .assert_error(401, "M_MISSING_TOKEN");

    let alice = client.register("alice", "alice-password-1").await;
    let body = alice.client.get(&format!("{V3}/capabilities")).await.ok();
    let caps = body["capabilities"]
        .as_object()
        .unwrap_or_else(|| panic!("no capabilities object: {body}"));
    // Password change is implemented, so the capability is either absent (clients then assume
    // it is enabled) or says enabled.
    if let Some(change_password) = caps.get("m.change_password") {
        assert_eq!(change_password["enabled"], true, "{body}");
    }
    if let Some(room_versions) = caps.get("m.room_versions") {
        let default = room_versions["default"]
            .as_str()
            .unwrap_or_else(|| panic!("m.room_versions without default: {body}"));
        assert!(
            room_versions["available"].get(default).is_some(),
            "the default room version is not listed as available: {body}"
        );
    }
}

#[tokio::test]
async fn cors_headers_on_requests_and_preflight() {
    let server = TestServer::start().await;
    let client = server.client();
    let resp = client
        .request_with_headers(
            Method::GET,
            "/_matrix/client/versions",
            &[("Origin", "https://app.example.org")],
        )
        .await;
    resp.assert_status(200);
    assert_eq!(
        resp.header("access-control-allow-origin"),
        Some("*"),
        "no CORS header on GET /versions: {resp:?}"
    );

    // A preflight never runs the endpoint's logic: no 401 on an authenticated endpoint.
    let resp = client
        .request_with_headers(
            Method::OPTIONS,
            &format!("{V3}/account/whoami"),
            &[
                ("Origin", "https://app.example.org"),
                ("Access-Control-Request-Method", "GET"),
                ("Access-Control-Request-Headers", "authorization"),
            ],
        )
        .await;
    assert!(
        (200..300).contains(&resp.status),
        "preflight must succeed: {resp}"
    );
    assert_eq!(
        resp.header("access-control-allow-origin"),
        Some("*"),
        "{resp:?}"
    );
    let methods = resp
        .header("access-control-allow-methods")
        .unwrap_or_default()
        .to_ascii_uppercase();
    assert!(
        methods == "*"
            || ["GET", "POST", "PUT", "DELETE"]
                .iter()
                .all(|m| methods.contains(m)),
        "Access-Control-Allow-Methods lacks the spec's methods: {resp:?}"
    );
    let headers = resp
        .header("access-control-allow-headers")
        .unwrap_or_default()
        .to_ascii_lowercase();
    // Not "*": per the Fetch standard the wildcard never covers `Authorization`.
    assert!(
        headers.contains("authorization"),
        "Access-Control-Allow-Headers does not name Authorization: {resp:?}"
    );
}

#[tokio::test]
async fn metrics_are_served_in_prometheus_format() {
    let server = TestServer::start().await;
    server
        .client()
        .get("/_matrix/client/versions")
        .await
        .assert_status(200);
    let resp = server.client().get("/metrics").await;
    resp.assert_status(200);
    assert!(
        resp.text.lines().any(|line| line.starts_with("# TYPE ")),
        "no Prometheus text exposition at /metrics: {resp}"
    );
}
