//! Rate limits: 429 M_LIMIT_EXCEEDED with an integer `retry_after_ms`, per client IP and per
//! account (failed logins), and switched off entirely by `rate_limits.enabled = false` (the
//! harness default).

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use complement_tests::{Method, Response, TestServer, V3, json, wait_until};

const PASSWORD: &str = "rate-limit-password";

/// Asserts a rate-limit answer and returns its `retry_after_ms`.
#[track_caller]
fn assert_limited(resp: &Response) -> u64 {
    resp.assert_error(429, "M_LIMIT_EXCEEDED");
    let retry_after_ms = resp.json["retry_after_ms"]
        .as_u64()
        .unwrap_or_else(|| panic!("retry_after_ms must be a non-negative integer: {resp}"));
    if let Some(header) = resp.header("retry-after") {
        assert!(
            header.parse::<u64>().is_ok(),
            "Retry-After must be a number of seconds: {header:?} in {resp:?}"
        );
    }
    retry_after_ms
}

#[tokio::test]
async fn login_attempts_are_limited_per_ip() {
    let server = TestServer::builder()
        .rate_limit("login", 0.01, 3)
        // Only the per-IP limit is under test here.
        .rate_limit("login_failures", 1000.0, 1000)
        .start()
        .await;
    let client = server.client();
    client.register("alice", PASSWORD).await;

    // Failed attempts count: that is the point of limiting logins.
    for _ in 0..3 {
        client
            .login_password("alice", "wrong password")
            .await
            .assert_error(403, "M_FORBIDDEN");
    }
    let resp = client.login_password("alice", PASSWORD).await;
    let retry_after_ms = assert_limited(&resp);
    assert!(
        retry_after_ms > 0,
        "the bucket refills at 0.01/s, so the wait is not zero: {resp}"
    );

    // Another client address has its own bucket.
    let elsewhere = client.from_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));
    elsewhere.login("alice", PASSWORD).await;
    // And the limited address is still limited.
    assert_limited(&client.login_password("alice", PASSWORD).await);
}

#[tokio::test]
async fn failed_logins_are_limited_per_account_across_addresses() {
    let server = TestServer::builder()
        .rate_limit("login", 1000.0, 1000)
        .rate_limit("login_failures", 0.01, 2)
        .start()
        .await;
    let client = server.client();
    client.register("alice", PASSWORD).await;
    client.register("bob", PASSWORD).await;

    // Guesses from two addresses draw on the same per-account budget.
    let elsewhere = client.from_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3)));
    client
        .login_password("alice", "guess one")
        .await
        .assert_error(403, "M_FORBIDDEN");
    elsewhere
        .login_password("alice", "guess two")
        .await
        .assert_error(403, "M_FORBIDDEN");
    // Spent: even the right password is refused, from any address, until the budget refills.
    assert_limited(&elsewhere.login_password("alice", PASSWORD).await);
    // The same account by its full user ID, in other case, is the same budget.
    assert_limited(
        &client
            .login_password(&server.user_id("ALICE"), PASSWORD)
            .await,
    );
    // Successful logins do not count, and other accounts are not affected.
    client.login("bob", PASSWORD).await;
    client.login("bob", PASSWORD).await;
    client.login("bob", PASSWORD).await;
}

#[tokio::test]
async fn waiting_retry_after_ms_lets_the_client_through() {
    const PER_SECOND: f64 = 0.5;
    let server = TestServer::builder()
        .rate_limit("login", PER_SECOND, 1)
        .start()
        .await;
    let client = server.client();
    client.register("alice", PASSWORD).await;
    client.login("alice", PASSWORD).await;
    let retry_after_ms = assert_limited(&client.login_password("alice", PASSWORD).await);
    let refill_ms = (1000.0 / PER_SECOND) as u64;
    assert!(
        retry_after_ms <= refill_ms + 500,
        "retry_after_ms {retry_after_ms} is longer than one refill ({refill_ms} ms)"
    );

    // Honour retry_after_ms, as a client would; it must then succeed well within a deadline.
    let user = wait_until(
        "login to be allowed again",
        Duration::from_secs(15),
        || async {
            let resp = client.login_password("alice", PASSWORD).await;
            if resp.status == 429 {
                let wait = assert_limited(&resp).min(refill_ms);
                tokio::time::sleep(Duration::from_millis(wait)).await;
                return None;
            }
            Some(client.user_from(&resp, PASSWORD))
        },
    )
    .await;
    user.assert_token_valid().await;
}

#[tokio::test]
async fn registration_is_limited() {
    let server = TestServer::builder()
        .rate_limit("register", 0.01, 3)
        .start()
        .await;
    let client = server.client();
    // However the server counts (per request or per completed registration), the first one
    // fits in the burst and a handful more cannot.
    client.register("first", PASSWORD).await;
    let limited = 'attempts: {
        for i in 0..6 {
            let resp = client
                .register_dummy(json!({ "username": format!("user{i}"), "password": PASSWORD }))
                .await;
            match resp.status {
                200 => continue,
                _ => break 'attempts Some((i, resp)),
            }
        }
        None
    };
    let (i, resp) = limited.expect("7 registrations with a burst of 3 were never rate limited");
    assert_limited(&resp);
    client
        .login_password(&format!("user{i}"), PASSWORD)
        .await
        .assert_error(403, "M_FORBIDDEN");
}

#[tokio::test]
async fn disabled_rate_limits_never_limit() {
    let server = TestServer::start().await;
    let client = server.client();
    client.register("alice", PASSWORD).await;
    for _ in 0..15 {
        client
            .login_password("alice", "wrong password")
            .await
            .assert_error(403, "M_FORBIDDEN");
    }
    for _ in 0..5 {
        client.login("alice", PASSWORD).await;
    }
    for i in 0..8 {
        client
            .register(&format!("bulk{i}"), PASSWORD)
            .await
            .assert_token_valid()
            .await;
    }
    client.get(&format!("{V3}/login")).await.assert_status(200);
}

/// Behind a reverse proxy every request comes from the proxy's address: with the proxy in
/// `trusted_proxies`, the client it names in X-Forwarded-For gets its own bucket; without, the
/// header is a client's claim and is ignored.
#[tokio::test]
async fn forwarded_for_counts_only_from_a_trusted_proxy() {
    for trusted in [true, false] {
        let mut builder = TestServer::builder().rate_limit("register", 0.001, 1);
        if trusted {
            builder = builder.set("trusted_proxies", vec!["127.0.0.1"]);
        }
        let server = builder.start().await;
        let client = server.client();
        let path = format!("{V3}/register/available?username=someone");
        let (client, path) = (&client, &path);
        let check = |forwarded_for: &'static str| async move {
            client
                .request_with_headers(Method::GET, path, &[("x-forwarded-for", forwarded_for)])
                .await
        };
        check("203.0.113.1").await.assert_status(200);
        assert_limited(&check("203.0.113.1").await);
        let other_client = check("203.0.113.2").await;
        if trusted {
            other_client.assert_status(200);
        } else {
            assert_limited(&other_client);
        }
    }
}

/// Sending is limited per user; a refused send stores nothing.
#[tokio::test]
async fn sending_events_is_limited_per_user() {
    let server = TestServer::builder()
        .rate_limit("message", 0.01, 4)
        .start()
        .await;
    let client = server.client();
    let alice = client.register("alice", PASSWORD).await;
    let bob = client.register("bob", PASSWORD).await;
    let room = alice
        .client
        .post(
            &format!("{V3}/createRoom"),
            json!({ "preset": "public_chat" }),
        )
        .await
        .ok()["room_id"]
        .as_str()
        .expect("createRoom returns a room_id")
        .to_owned();
    bob.client
        .post(&format!("{V3}/rooms/{room}/join"), json!({}))
        .await
        .assert_status(200);
    let send = |user: &complement_tests::User, txn: String| {
        let path = format!("{V3}/rooms/{room}/send/m.room.message/{txn}");
        let client = user.client.clone();
        async move {
            client
                .put(&path, json!({ "msgtype": "m.text", "body": txn }))
                .await
        }
    };
    for i in 0..4 {
        send(&alice, format!("a{i}")).await.assert_status(200);
    }
    let refused = send(&alice, "a-over".to_owned()).await;
    assert!(assert_limited(&refused) > 0, "{refused}");
    // Bob has a bucket of his own.
    send(&bob, "b0".to_owned()).await.assert_status(200);

    let page = alice
        .client
        .get(&format!("{V3}/rooms/{room}/messages?dir=b&limit=50"))
        .await
        .ok();
    let bodies: Vec<&str> = page["chunk"]
        .as_array()
        .expect("chunk is a list")
        .iter()
        .filter(|e| e["type"] == "m.room.message")
        .filter_map(|e| e["content"]["body"].as_str())
        .collect();
    assert_eq!(bodies, ["b0", "a3", "a2", "a1", "a0"], "{page}");
}
