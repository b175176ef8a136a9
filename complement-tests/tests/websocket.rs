//! The WebSocket sync transport `/_matrix/client/unstable/im.tessera/ws` (docs/websocket.md):
//! authentication before the upgrade, sync frames (initial, pushed, resumed from a token),
//! send / receipt / typing frames with their acks and errors, heartbeats, and the closes for
//! slow consumers, silent clients and revoked tokens.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use complement_tests::rooms::{alice_and_bob_room, chunk, event_id_of, room_path, text};
use complement_tests::sync::{
    SyncQuery, bodies, ephemeral, next_batch, timeline, timeline_filter, wait_for_parked_syncs,
};
use complement_tests::{Method, Response, TestServer, User, V3, Value, enc, json, wait_until};
use futures::{SinkExt, StreamExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{WebSocketStream, client_async};

const PASSWORD: &str = "websocket-tests-pw";
const PATH: &str = "/_matrix/client/unstable/im.tessera/ws";
/// Longest wait for one frame from the server.
const FRAME_TIMEOUT: Duration = Duration::from_secs(30);

async fn register(server: &TestServer, name: &str) -> User {
    server.client().register(name, PASSWORD).await
}

/// Alice's public room with Bob joined.
async fn shared_room(server: &TestServer) -> (User, User, String) {
    alice_and_bob_room(server, PASSWORD).await
}

/// A WebSocket client. tungstenite answers the server's pings only while it reads, so a test
/// that does not read plays a client that has gone silent.
struct Ws {
    socket: WebSocketStream<TcpStream>,
}

/// Opens a connection with `token` as a Bearer header (if any) and `query`; with
/// `recv_buffer`, the client's socket buffers only that many bytes.
async fn try_connect(
    server: &TestServer,
    token: Option<&str>,
    query: &str,
    recv_buffer: Option<u32>,
) -> Result<Ws, WsError> {
    let address: SocketAddr = server
        .base_url()
        .trim_start_matches("http://")
        .parse()
        .expect("the base URL is http://address:port");
    let mut request = format!("ws://{address}{PATH}?{query}").into_client_request()?;
    if let Some(token) = token {
        let value = HeaderValue::from_str(&format!("Bearer {token}")).expect("a token is ASCII");
        request.headers_mut().insert("authorization", value);
    }
    let socket = TcpSocket::new_v4()?;
    if let Some(bytes) = recv_buffer {
        socket.set_recv_buffer_size(bytes)?;
    }
    let connecting = async {
        let stream = socket.connect(address).await?;
        client_async(request, stream).await
    };
    let (socket, _) = tokio::time::timeout(FRAME_TIMEOUT, connecting)
        .await
        .expect("the handshake finished in time")?;
    Ok(Ws { socket })
}

async fn connect(server: &TestServer, user: &User, query: &str) -> Ws {
    try_connect(server, Some(&user.access_token), query, None)
        .await
        .unwrap_or_else(|e| panic!("connecting {} failed: {e}", user.user_id))
}

impl Ws {
    async fn send_text(&mut self, frame: String) {
        self.socket
            .send(Message::text(frame))
            .await
            .expect("sending a frame");
    }

    async fn read(&mut self) -> Option<Result<Message, WsError>> {
        tokio::time::timeout(FRAME_TIMEOUT, self.socket.next())
            .await
            .unwrap_or_else(|_| panic!("nothing from the server within {FRAME_TIMEOUT:?}"))
    }

    /// The next text frame, as JSON; pings are answered on the way.
    async fn next_frame(&mut self) -> Value {
        loop {
            match self.read().await {
                Some(Ok(Message::Text(text))) => {
                    return serde_json::from_str(&text)
                        .unwrap_or_else(|e| panic!("a frame that is not JSON ({e}): {text}"));
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                other => panic!("expected a text frame, got {other:?}"),
            }
        }
    }

    /// The next sync frame, skipping acks and errors.
    async fn next_sync(&mut self) -> Value {
        loop {
            let frame = self.next_frame().await;
            if frame["type"] == "sync" {
                assert!(frame["next_batch"].is_string(), "{frame}");
                assert_eq!(frame["next_batch"], frame["sync"]["next_batch"], "{frame}");
                return frame;
            }
        }
    }

    /// Sync frames until `done` holds for all of them together.
    async fn syncs_until(&mut self, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let mut frames = Vec::new();
        while !done(&frames) {
            frames.push(self.next_sync().await);
        }
        frames
    }

    /// Sends `frame` and returns the first frame that is not a sync frame: the answer.
    async fn request_text(&mut self, frame: String) -> Value {
        self.send_text(frame).await;
        loop {
            let frame = self.next_frame().await;
            if frame["type"] != "sync" {
                return frame;
            }
        }
    }

    async fn request(&mut self, frame: Value) -> Value {
        let answer = self.request_text(frame.to_string()).await;
        assert_eq!(answer["id"], frame["id"], "{answer}");
        answer
    }

    /// Reads until `count` pings have arrived (answering each).
    async fn pings(&mut self, count: usize) {
        let mut seen = 0;
        while seen < count {
            match self.read().await {
                Some(Ok(Message::Ping(_))) => seen += 1,
                Some(Ok(_)) => {}
                other => panic!("the connection ended: {other:?}"),
            }
        }
    }

    /// The code of the server's close frame, after whatever comes before it.
    async fn close_code(&mut self) -> u16 {
        loop {
            match self.read().await {
                Some(Ok(Message::Close(Some(frame)))) => return u16::from(frame.code),
                Some(Ok(Message::Close(None))) => panic!("a close frame without a code"),
                Some(Ok(_)) => {}
                other => panic!("the connection ended without a close frame: {other:?}"),
            }
        }
    }
}

/// The upgrade request as plain HTTP, to read the error of one refused before upgrading.
async fn handshake(server: &TestServer, token: &str, query: &str) -> Response {
    let bearer = format!("Bearer {token}");
    let headers = [
        ("Authorization", bearer.as_str()),
        ("Connection", "Upgrade"),
        ("Upgrade", "websocket"),
        ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];
    server
        .client()
        .request_with_headers(Method::GET, &format!("{PATH}?{query}"), &headers)
        .await
}

/// A `send` frame for an `m.text` message.
fn send_frame(id: &str, room_id: &str, body: &str, txn_id: &str) -> Value {
    json!({
        "type": "send",
        "id": id,
        "room_id": room_id,
        "event_type": "m.room.message",
        "content": text(body),
        "txn_id": txn_id,
    })
}

/// The message bodies of the room's timeline across sync frames, in order.
fn room_bodies(frames: &[Value], room_id: &str) -> Vec<String> {
    frames
        .iter()
        .flat_map(|frame| bodies(&timeline(&frame["sync"], room_id)))
        .collect()
}

/// `tessera_sync_waiting` from `/metrics`: syncs parked waiting for news.
async fn sync_waiting(server: &TestServer) -> u64 {
    let resp = server.client().get("/metrics").await;
    resp.text
        .lines()
        .find_map(|line| line.strip_prefix("tessera_sync_waiting "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no tessera_sync_waiting gauge: {resp}"))
}

#[tokio::test]
async fn the_access_token_is_checked_before_upgrading() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;

    match try_connect(&server, Some("bogus"), "", None).await {
        Err(WsError::Http(response)) => assert_eq!(response.status(), 401),
        Err(other) => panic!("expected a 401 answer to the handshake, got {other}"),
        Ok(_) => panic!("a bogus token was upgraded"),
    }
    // The errcodes, over plain HTTP with and without the upgrade headers.
    handshake(&server, "bogus", "")
        .await
        .assert_error(401, "M_UNKNOWN_TOKEN");
    handshake(&server, &alice.access_token, "since=nonsense")
        .await
        .assert_error(400, "M_INVALID_PARAM");
    server
        .client()
        .get(PATH)
        .await
        .assert_error(401, "M_MISSING_TOKEN");
    alice
        .client
        .get(PATH)
        .await
        .assert_error(426, "M_UNRECOGNIZED");

    // The token may come as a query parameter.
    let query = format!("access_token={}", enc(&alice.access_token));
    let mut ws = try_connect(&server, None, &query, None)
        .await
        .expect("the query token is accepted");
    ws.next_sync().await;
}

#[tokio::test]
async fn the_first_frame_is_the_initial_sync() {
    let server = TestServer::start().await;
    let (alice, bob, room_id) = shared_room(&server).await;
    alice.send_text(&room_id, "hello").await;

    let mut ws = connect(&server, &bob, "").await;
    let frame = ws.next_frame().await;
    assert_eq!(frame["type"], "sync", "{frame}");
    assert_eq!(frame["next_batch"], frame["sync"]["next_batch"], "{frame}");
    assert_eq!(room_bodies(&[frame], &room_id), ["hello"]);
}

#[tokio::test]
async fn a_message_sent_over_http_is_pushed_once() {
    let server = TestServer::start().await;
    let (alice, bob, room_id) = shared_room(&server).await;
    let mut ws = connect(&server, &bob, "").await;
    let first = ws.next_sync().await;

    alice.send_text(&room_id, "pushed").await;
    let frames = ws
        .syncs_until(|frames| room_bodies(frames, &room_id).contains(&"pushed".to_owned()))
        .await;
    assert_eq!(room_bodies(&frames, &room_id), ["pushed"]);
    assert_ne!(frames[0]["next_batch"], first["next_batch"]);
}

#[tokio::test]
async fn a_send_frame_is_acked_with_its_event_and_deduplicated_by_txn_id() {
    let server = TestServer::start().await;
    let (alice, _bob, room_id) = shared_room(&server).await;
    let mut ws = connect(&server, &alice, "").await;
    ws.next_sync().await;

    let ack = ws
        .request(send_frame("m1", &room_id, "over the socket", "ws-txn"))
        .await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let event_id = ack["event_id"].as_str().expect("an event_id").to_owned();
    assert!(event_id.starts_with('$'), "{ack}");

    let page = alice.messages(&room_id, "dir=b&limit=5").await;
    let newest = &chunk(&page)[0];
    assert_eq!(newest["event_id"], event_id.as_str(), "{page}");
    assert_eq!(newest["content"]["body"], "over the socket", "{page}");

    // Sent once, pushed once, after its ack.
    let frames = ws
        .syncs_until(|frames| room_bodies(frames, &room_id).contains(&"over the socket".to_owned()))
        .await;
    assert_eq!(room_bodies(&frames, &room_id), ["over the socket"]);

    // The same txn_id again, over the socket or over HTTP, is the same event.
    let again = ws
        .request(send_frame("m2", &room_id, "over the socket", "ws-txn"))
        .await;
    assert_eq!(again["event_id"], event_id.as_str(), "{again}");
    let path = room_path(&room_id, "send/m.room.message/ws-txn");
    let over_http = event_id_of(alice.client.put(&path, text("over the socket")).await);
    assert_eq!(over_http, event_id);
    let page = alice.messages(&room_id, "dir=b&limit=5").await;
    let copies = chunk(&page)
        .iter()
        .filter(|e| e["content"]["body"] == "over the socket")
        .count();
    assert_eq!(copies, 1, "{page}");
}

#[tokio::test]
async fn bad_frames_get_error_frames_and_the_connection_stays_open() {
    let server = TestServer::start().await;
    let (alice, bob, room_id) = shared_room(&server).await;
    let private = alice.create_room(json!({ "preset": "private_chat" })).await;
    let mut ws = connect(&server, &bob, "").await;
    ws.next_sync().await;

    let error = ws
        .request(send_frame("not-member", &private, "let me in", "t1"))
        .await;
    assert_eq!(error["type"], "error", "{error}");
    assert_eq!(error["errcode"], "M_FORBIDDEN", "{error}");
    assert!(error["error"].is_string(), "{error}");

    let error = ws.request(json!({ "type": "dance", "id": "d1" })).await;
    assert_eq!(
        (&error["type"], &error["errcode"]),
        (&json!("error"), &json!("M_UNRECOGNIZED"))
    );
    let error = ws
        .request(json!({ "type": "send", "id": "s1", "room_id": room_id }))
        .await;
    assert_eq!(error["errcode"], "M_BAD_JSON", "{error}");
    let error = ws.request_text("{not json".to_owned()).await;
    assert_eq!(
        (&error["type"], &error["errcode"], &error["id"]),
        (&json!("error"), &json!("M_NOT_JSON"), &Value::Null)
    );
    ws.socket
        .send(Message::binary(b"{}".to_vec()))
        .await
        .expect("sending a binary frame");
    let error = ws.next_frame().await;
    assert_eq!(error["errcode"], "M_NOT_JSON", "{error}");

    // Still connected, still working.
    let ack = ws
        .request(send_frame("ok", &room_id, "still here", "t2"))
        .await;
    assert_eq!(ack["type"], "ack", "{ack}");
}

#[tokio::test]
async fn receipt_and_typing_frames_reach_the_other_users_sync() {
    let server = TestServer::start().await;
    let (alice, bob, room_id) = shared_room(&server).await;
    let event_id = alice.send_text(&room_id, "read me").await;
    let mut since = next_batch(&alice.initial_sync().await);
    let mut ws = connect(&server, &bob, "").await;
    ws.next_sync().await;

    let ack = ws
        .request(json!({
            "type": "receipt",
            "id": "r1",
            "room_id": room_id,
            "receipt_type": "m.read",
            "event_id": event_id,
        }))
        .await;
    assert_eq!(ack, json!({ "type": "ack", "id": "r1" }));
    let ack = ws
        .request(json!({
            "type": "typing",
            "id": "t1",
            "room_id": room_id,
            "typing": true,
            "timeout": 30_000,
        }))
        .await;
    assert_eq!(ack, json!({ "type": "ack", "id": "t1" }));

    let (mut read, mut typing) = (false, false);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !(read && typing) {
        assert!(
            Instant::now() < deadline,
            "alice's sync showed receipt {read}, typing {typing}"
        );
        let sync = alice
            .sync(&SyncQuery {
                since: Some(&since),
                timeout_ms: Some(5_000),
                ..SyncQuery::default()
            })
            .await;
        if let Some(receipt) = ephemeral(&sync, &room_id, "m.receipt") {
            read |= receipt["content"][&event_id]["m.read"][&bob.user_id].is_object();
        }
        if let Some(notice) = ephemeral(&sync, &room_id, "m.typing") {
            typing |= notice["content"]["user_ids"] == json!([bob.user_id]);
        }
        since = next_batch(&sync);
    }
}

#[tokio::test]
async fn reconnecting_with_the_last_token_loses_and_repeats_nothing() {
    let server = TestServer::start().await;
    let (alice, bob, room_id) = shared_room(&server).await;
    let query = format!("filter={}", enc(&timeline_filter(50, false)));
    let mut ws = connect(&server, &bob, &query).await;
    ws.next_sync().await;
    alice.send_text(&room_id, "before").await;
    let frames = ws
        .syncs_until(|frames| room_bodies(frames, &room_id).contains(&"before".to_owned()))
        .await;
    let since = frames
        .last()
        .and_then(|frame| frame["next_batch"].as_str())
        .expect("a next_batch")
        .to_owned();

    // Dropped without a close handshake, as a lost network drops it.
    drop(ws);
    let sent: Vec<String> = (1..=8).map(|i| format!("while away {i}")).collect();
    for body in &sent {
        alice.send_text(&room_id, body).await;
    }

    let mut ws = connect(&server, &bob, &format!("{query}&since={}", enc(&since))).await;
    let last = sent.last().expect("messages were sent").clone();
    let frames = ws
        .syncs_until(|frames| room_bodies(frames, &room_id).contains(&last))
        .await;
    assert_eq!(room_bodies(&frames, &room_id), sent);

    // Live again: the next message comes alone.
    alice.send_text(&room_id, "back").await;
    let frames = ws
        .syncs_until(|frames| room_bodies(frames, &room_id).contains(&"back".to_owned()))
        .await;
    assert_eq!(room_bodies(&frames, &room_id), ["back"]);
}

#[tokio::test]
async fn a_client_that_does_not_read_is_closed_as_a_slow_consumer() {
    // Sync frames of large messages fill the client's 4 KiB receive buffer and the server's
    // send buffer (at most 4 MiB on Linux), then the server's two-frame queue. This many
    // 60 kB messages are twice what all of that holds.
    const MESSAGES: usize = 150;
    let server = TestServer::builder()
        .set("sync.websocket_send_buffer", 2)
        .start()
        .await;
    let alice = register(&server, "alice").await;
    let room_id = alice.create_room(json!({})).await;
    let mut ws = try_connect(&server, Some(&alice.access_token), "", Some(4096))
        .await
        .expect("connected");

    let padding = "x".repeat(60_000);
    for i in 0..MESSAGES {
        alice.send_text(&room_id, &format!("{i} {padding}")).await;
    }
    assert_eq!(ws.close_code().await, 4008);
}

#[tokio::test]
async fn a_silent_client_is_closed_after_two_ping_intervals() {
    let server = TestServer::builder()
        .set("sync.websocket_ping_secs", 1)
        .start()
        .await;
    let alice = register(&server, "alice").await;
    let mut ws = connect(&server, &alice, "").await;

    // Not reading, so not answering pings. The connection's sync waits for news until the
    // server gives up on the connection.
    wait_for_parked_syncs(&server, 1).await;
    wait_until(
        "the server to end the silent connection",
        Duration::from_secs(20),
        || async { (sync_waiting(&server).await == 0).then_some(()) },
    )
    .await;
    assert_eq!(ws.close_code().await, 4000);
}

#[tokio::test]
async fn a_client_that_answers_pings_stays_until_its_token_is_revoked() {
    let server = TestServer::builder()
        .set("sync.websocket_ping_secs", 1)
        .start()
        .await;
    let alice = register(&server, "alice").await;
    let mut ws = connect(&server, &alice, "").await;
    ws.next_sync().await;

    // Three pings answered: longer than two silent intervals would be allowed.
    ws.pings(3).await;
    alice
        .client
        .post(&format!("{V3}/logout"), json!({}))
        .await
        .assert_status(200);
    assert_eq!(ws.close_code().await, 4001);
}
