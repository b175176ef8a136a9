//! The WebSocket sync transport, `GET /_matrix/client/unstable/im.tessera/ws`
//! (docs/websocket.md): the server pushes what a `/sync` with the same query would return as
//! soon as there is news, and the client sends events, receipts and typing notices as frames,
//! each answered by an ack or an error frame.
//!
//! One task per connection: it reads client frames, waits for sync news and keeps the heartbeat,
//! while a writer beside it in the same task drains a bounded queue of outgoing frames into the
//! socket. Nothing waits on the writer: a client that falls a whole queue behind is closed as a
//! slow consumer, so memory never grows with a client's backlog.

use std::{pin::pin, sync::Arc, time::Duration};

use axum::{
    Router,
    extract::{
        FromRequestParts, State, WebSocketUpgrade,
        ws::{CloseFrame, Message, WebSocket, close_code, rejection::WebSocketUpgradeRejection},
    },
    response::Response,
    routing::get,
};
use bytes::Bytes;
use futures::{
    SinkExt, StreamExt,
    stream::{SplitSink, SplitStream},
};
use http::StatusCode;
use ruma::{
    EventId, OwnedEventId, OwnedRoomId,
    api::{
        OutgoingResponseExt,
        client::{filter::FilterDefinition, sync::sync_events::v3},
    },
    events::TimelineEventType,
    presence::PresenceState,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as JsonValue, value::RawValue};
use tessera_core::{
    Error, Services,
    ratelimit::Action,
    rooms::{ReceiptThread, Transaction},
    sync::SyncRequest,
    users::Caller,
};
use tessera_federation::edge::ApiError;
use tokio::{
    sync::{
        mpsc::{self, error::TrySendError},
        oneshot,
    },
    time::{Instant, MissedTickBehavior},
};
use tracing::Instrument;

use crate::ruma_wrapper::{Ruma, access_token};

const PATH: &str = "/_matrix/client/unstable/im.tessera/ws";

/// How long one wait for news lasts before the loop starts the next; core caps a sync's wait
/// at five minutes anyway, and each turn costs one empty sync.
const SYNC_WAIT: Duration = Duration::from_secs(300);
/// How long a closing connection may take to deliver its backlog and close frame and get the
/// client's answer. A client that is not reading is dropped then; until then it holds no more
/// than its full queue.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(30);
/// Typing notices without a `timeout` last as long as the ones Element sends.
const DEFAULT_TYPING_TIMEOUT: Duration = Duration::from_secs(30);
/// tungstenite allocates its read buffer up front, 128 KiB by default: with thousands of idle
/// connections that would be most of the server's memory. Client frames are mostly a few hundred
/// bytes (typing, receipts, a message); larger ones are read in several steps.
const READ_BUFFER_BYTES: usize = 1024;

/// Close codes besides the standard ones (docs/websocket.md has the table).
const HEARTBEAT_TIMEOUT: u16 = 4000;
const TOKEN_REVOKED: u16 = 4001;
const TOKEN_EXPIRED: u16 = 4002;
const SLOW_CONSUMER: u16 = 4008;

pub(crate) fn routes(router: Router<Arc<Services>>) -> Router<Arc<Services>> {
    router.route(PATH, get(connect))
}

/// The access token the connection was opened with: checked again at every heartbeat, so that a
/// logout ends the connection as it ends HTTP access.
struct AccessToken(String);

impl FromRequestParts<Arc<Services>> for AccessToken {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        _: &Arc<Services>,
    ) -> Result<Self, ApiError> {
        access_token(parts)
            .map(Self)
            .ok_or_else(ApiError::missing_token)
    }
}

/// Takes the query of `/sync` (`since`, `filter`, `set_presence`, `full_state`,
/// `use_state_after`; `timeout` is ignored) and runs the first sync before upgrading, so that a
/// bad token, filter or `since` gets its HTTP error instead of a connection that closes at once.
async fn connect(
    State(s): State<Arc<Services>>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    AccessToken(token): AccessToken,
    req: Ruma<v3::Request>,
) -> Result<Response, ApiError> {
    let caller = req.caller()?.clone();
    let upgrade = upgrade.map_err(|rejection| {
        ApiError::new(
            StatusCode::UPGRADE_REQUIRED,
            "M_UNRECOGNIZED",
            format!("This endpoint speaks WebSocket only: {rejection}"),
        )
    })?;
    let query = req.body;
    let filter = s.sync_filter(&caller.user_id, query.filter).await?;
    let first = s
        .sync(SyncRequest {
            user_id: caller.user_id.clone(),
            device_id: caller.device_id.clone(),
            since: query.since,
            filter: filter.clone(),
            full_state: query.full_state,
            use_state_after: query.use_state_after,
            timeout: Some(Duration::ZERO),
            set_presence: query.set_presence.clone(),
        })
        .await?;
    let first_frame = sync_frame(&first)?;
    let span = tracing::info_span!(
        "websocket",
        user = %caller.user_id,
        device = %caller.device_id
    );
    let limit = s.config.limits.max_request_body_bytes;
    let connection = Connection {
        services: s,
        token,
        caller,
        filter,
        use_state_after: query.use_state_after,
        set_presence: query.set_presence,
    };
    Ok(upgrade
        .read_buffer_size(READ_BUFFER_BYTES)
        // Every frame is flushed as it is sent: nothing waits in a write buffer.
        .write_buffer_size(0)
        .max_message_size(limit)
        .max_frame_size(limit)
        .on_upgrade(move |socket| {
            let (sink, stream) = socket.split();
            connection
                .serve(sink, stream, first_frame, first.next_batch)
                .instrument(span)
        }))
}

/// One connection. Kept small: idle connections are what a server holds most of.
struct Connection {
    services: Arc<Services>,
    token: String,
    caller: Caller,
    /// Resolved once: a stored filter never changes.
    filter: Arc<FilterDefinition>,
    use_state_after: bool,
    /// Each sync marks the user connected, for presence, while it runs.
    set_presence: PresenceState,
}

/// Why a connection ends.
#[derive(Debug)]
enum Ending {
    /// The socket failed: there is nobody left to tell.
    Failed,
    /// The client sent a close frame; tungstenite answers it.
    ClientClosed,
    /// The server closes with this code and reason.
    Close(u16, &'static str),
}

impl Ending {
    fn internal(error: &Error) -> Self {
        tracing::error!(%error, "websocket sync failed");
        Self::Close(
            close_code::ERROR,
            "internal error: reconnect with the last next_batch",
        )
    }
}

/// A queued frame. Boxed: a queue allocates its first block of slots when it is made, and a
/// slot of a pointer instead of a whole `Message` keeps that block small in every connection.
type QueuedFrame = Box<Message>;

/// The sending end of the connection's frame queue.
struct Outbox(mpsc::Sender<QueuedFrame>);

impl Outbox {
    fn push(&self, frame: Message) -> Result<(), Ending> {
        self.0
            .try_send(Box::new(frame))
            .map_err(|error| match error {
                TrySendError::Full(_) => Ending::Close(SLOW_CONSUMER, "slow consumer"),
                TrySendError::Closed(_) => Ending::Failed,
            })
    }
}

impl Connection {
    async fn serve(
        self,
        sink: SplitSink<WebSocket, Message>,
        mut stream: SplitStream<WebSocket>,
        first: Message,
        since: String,
    ) {
        tracing::debug!("websocket open");
        let (frames, queue) = mpsc::channel(self.services.config.sync.websocket_send_buffer);
        let outbox = Outbox(frames);
        let (close, closing) = oneshot::channel();
        let mut writer = pin!(write_frames(sink, queue, closing));
        let ending = tokio::select! {
            ending = self.run(&mut stream, &outbox, first, since) => ending,
            () = &mut writer => Ending::Failed,
        };
        tracing::debug!(?ending, "websocket closing");
        match ending {
            Ending::Failed => {}
            Ending::ClientClosed => {
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, drain(&mut stream)).await;
            }
            Ending::Close(code, reason) => {
                let frame = CloseFrame {
                    code,
                    reason: reason.into(),
                };
                // The writer is still running, so it is still listening.
                let _ = close.send(frame);
                let handshake = futures::future::join(writer, drain(&mut stream));
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, handshake).await;
            }
        }
    }

    /// Reads client frames, pushes sync news and keeps the heartbeat until the connection
    /// must end. Handling a frame pauses the wait for news, which loses nothing: the notifier
    /// remembers wake-ups, and an event the frame sent is in the next sync frame, after its ack.
    async fn run(
        &self,
        stream: &mut SplitStream<WebSocket>,
        outbox: &Outbox,
        first: Message,
        since: String,
    ) -> Ending {
        if let Err(ending) = outbox.push(first) {
            return ending;
        }
        let ping = Duration::from_secs(self.services.config.sync.websocket_ping_secs);
        let mut heartbeat = tokio::time::interval_at(Instant::now() + ping, ping);
        heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut last_heard = Instant::now();
        let mut news = pin!(self.news(since));
        // Handling a frame and the heartbeat are boxed: their futures exist only while they run
        // instead of taking room in every idle connection's task.
        loop {
            let step = tokio::select! {
                frame = stream.next() => {
                    last_heard = Instant::now();
                    Box::pin(self.receive(frame, outbox)).await
                }
                sync = &mut news => match sync {
                    Ok(response) => {
                        news.set(self.news(response.next_batch.clone()));
                        push_sync(&response, outbox)
                    }
                    Err(error) => Err(Ending::internal(&error)),
                },
                _ = heartbeat.tick() => {
                    Box::pin(self.heartbeat(last_heard.elapsed() >= 2 * ping, outbox)).await
                }
            };
            if let Err(ending) = step {
                return ending;
            }
        }
    }

    /// The next sync after `since`: at once if there is news, else after a wait.
    async fn news(&self, since: String) -> tessera_core::Result<v3::Response> {
        self.services
            .sync(SyncRequest {
                user_id: self.caller.user_id.clone(),
                device_id: self.caller.device_id.clone(),
                since: Some(since),
                filter: self.filter.clone(),
                full_state: false,
                use_state_after: self.use_state_after,
                timeout: Some(SYNC_WAIT),
                set_presence: self.set_presence.clone(),
            })
            .await
    }

    async fn receive(
        &self,
        frame: Option<Result<Message, axum::Error>>,
        outbox: &Outbox,
    ) -> Result<(), Ending> {
        match frame {
            Some(Ok(Message::Text(text))) => outbox.push(self.answer(text.as_str()).await),
            Some(Ok(Message::Binary(_))) => {
                let failure = ApiError::not_json("Frames are JSON text, not binary").into();
                outbox.push(Reply::Error(None, failure).message())
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => Ok(()),
            Some(Ok(Message::Close(_))) => Err(Ending::ClientClosed),
            Some(Err(error)) => {
                tracing::debug!(%error, "unreadable websocket frame");
                Err(Ending::Close(close_code::PROTOCOL, "unreadable frame"))
            }
            None => Err(Ending::Failed),
        }
    }

    /// The ack or error frame answering one client frame.
    async fn answer(&self, text: &str) -> Message {
        let reply = match parse_frame(text) {
            Ok((id, frame)) => match self.act(frame).await {
                Ok(event_id) => Reply::Ack(id, event_id),
                Err(failure) => Reply::Error(Some(id), failure),
            },
            Err((id, failure)) => Reply::Error(id, failure),
        };
        reply.message()
    }

    async fn act(&self, frame: ClientFrame) -> Result<Option<OwnedEventId>, Failure> {
        Ok(match frame {
            ClientFrame::Send(send) => Some(self.send(send).await?),
            ClientFrame::Receipt(receipt) => {
                self.receipt(receipt).await?;
                None
            }
            ClientFrame::Typing(typing) => {
                self.typing(typing).await?;
                None
            }
            ClientFrame::Unknown => {
                return Err(ApiError::unrecognized(
                    "Unknown frame type: expected send, receipt or typing",
                )
                .into());
            }
        })
    }

    /// As `PUT /rooms/{roomId}/send/{eventType}/{txnId}`, in the same transaction scope: a
    /// retry over either transport returns the event the first attempt sent.
    async fn send(&self, frame: SendFrame) -> Result<OwnedEventId, Error> {
        let s = &self.services;
        if frame.event_type.is_empty() || frame.txn_id.is_empty() {
            return Err(Error::BadJson(
                "event_type and txn_id must not be empty".to_owned(),
            ));
        }
        s.rate_limiter
            .check(Action::Message, self.caller.user_id.as_str())?;
        let transaction = Transaction {
            device_id: self.caller.device_id.clone(),
            scope: format!("send/{}/{}", frame.room_id, frame.event_type),
            txn_id: frame.txn_id,
        };
        s.rooms
            .send_message(
                &self.caller.user_id,
                &frame.room_id,
                TimelineEventType::from(frame.event_type),
                JsonValue::Object(frame.content),
                &transaction,
            )
            .await
    }

    /// As `POST /rooms/{roomId}/receipt/{receiptType}/{eventId}`.
    async fn receipt(&self, frame: ReceiptFrame) -> Result<(), Error> {
        let thread = receipt_thread(frame.thread_id.as_deref())?;
        self.services
            .rooms
            .post_receipt(
                &self.caller.user_id,
                &frame.room_id,
                &frame.receipt_type,
                &frame.event_id,
                thread,
            )
            .await
    }

    /// As `PUT /rooms/{roomId}/typing/{userId}` for oneself.
    async fn typing(&self, frame: TypingFrame) -> Result<(), Error> {
        let timeout = frame.typing.then(|| {
            frame
                .timeout
                .map_or(DEFAULT_TYPING_TIMEOUT, Duration::from_millis)
        });
        let user_id = &self.caller.user_id;
        self.services
            .rooms
            .set_typing(user_id, &frame.room_id, user_id, timeout)
            .await
    }

    /// Ends a connection that has been silent for two intervals or whose token is no longer
    /// valid, else pings it.
    async fn heartbeat(&self, silent: bool, outbox: &Outbox) -> Result<(), Ending> {
        if silent {
            return Err(Ending::Close(HEARTBEAT_TIMEOUT, "heartbeat timeout"));
        }
        match self.services.users.authenticate(&self.token).await {
            Ok(_) => {}
            Err(Error::UnknownToken { soft_logout: true }) => {
                return Err(Ending::Close(
                    TOKEN_EXPIRED,
                    "M_UNKNOWN_TOKEN: the access token expired",
                ));
            }
            Err(Error::UnknownToken { soft_logout: false }) => {
                return Err(Ending::Close(
                    TOKEN_REVOKED,
                    "M_UNKNOWN_TOKEN: the access token was revoked",
                ));
            }
            // A store hiccup is no reason to drop every connection: the next heartbeat checks
            // again.
            Err(error) => tracing::warn!(%error, "cannot check a websocket's access token"),
        }
        outbox.push(Message::Ping(Bytes::new()))
    }
}

/// Sends queued frames until the socket fails or the connection closes; then the close frame.
/// Closing interrupts a send stuck on a client that does not read: the close frame goes after
/// the part of the frame already written.
async fn write_frames(
    mut sink: SplitSink<WebSocket, Message>,
    mut queue: mpsc::Receiver<QueuedFrame>,
    close: oneshot::Receiver<CloseFrame>,
) {
    let close_frame = tokio::select! {
        biased;
        frame = close => frame.ok(),
        () = forward(&mut sink, &mut queue) => None,
    };
    if let Some(frame) = close_frame {
        let _ = sink.send(Message::Close(Some(frame))).await;
    }
}

async fn forward(
    sink: &mut SplitSink<WebSocket, Message>,
    queue: &mut mpsc::Receiver<QueuedFrame>,
) {
    while let Some(frame) = queue.recv().await {
        if sink.send(*frame).await.is_err() {
            return;
        }
    }
}

/// Reads until the client answers the close: what it still sends is dropped, and a send it
/// repeats after reconnecting is deduplicated by its txn_id.
async fn drain(stream: &mut SplitStream<WebSocket>) {
    while let Some(Ok(_)) = stream.next().await {}
}

/// Whether a sync response has anything for the client: the test `/sync` uses to decide
/// whether to keep waiting. A wait that timed out returns nothing, and sends no frame.
fn push_sync(response: &v3::Response, outbox: &Outbox) -> Result<(), Ending> {
    if tessera_core::sync::is_empty(response) {
        return Ok(());
    }
    let frame = sync_frame(response).map_err(|error| Ending::internal(&error))?;
    outbox.push(frame)
}

/// `{"type": "sync", "next_batch": ..., "sync": <the /sync response body>}`, the body
/// serialized by ruma exactly as `/sync` serves it.
fn sync_frame(response: &v3::Response) -> tessera_core::Result<Message> {
    let internal = |e: String| Error::Internal(format!("cannot serialize a sync frame: {e}"));
    let body = response
        .clone()
        .try_into_http_response::<Vec<u8>>()
        .map_err(|e| internal(e.to_string()))?
        .into_body();
    let body = String::from_utf8(body).map_err(|e| internal(e.to_string()))?;
    let sync = RawValue::from_string(body).map_err(|e| internal(e.to_string()))?;
    let frame = ServerFrame::Sync {
        next_batch: &response.next_batch,
        sync: &sync,
    };
    Ok(frame.message())
}

/// A frame from the client, by its `type`; its `id` is read separately, so that an error can
/// echo it even when the rest does not parse.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ClientFrame {
    Send(SendFrame),
    Receipt(ReceiptFrame),
    Typing(TypingFrame),
    #[serde(other)]
    Unknown,
}

#[derive(Deserialize)]
struct SendFrame {
    room_id: OwnedRoomId,
    event_type: String,
    content: Map<String, JsonValue>,
    txn_id: String,
}

#[derive(Deserialize)]
struct ReceiptFrame {
    room_id: OwnedRoomId,
    receipt_type: String,
    event_id: OwnedEventId,
    #[serde(default)]
    thread_id: Option<String>,
}

#[derive(Deserialize)]
struct TypingFrame {
    room_id: OwnedRoomId,
    typing: bool,
    /// Milliseconds.
    #[serde(default)]
    timeout: Option<u64>,
}

/// The frame's `id` and what it asks for; on failure, the id if there was one.
fn parse_frame(text: &str) -> Result<(String, ClientFrame), (Option<String>, Failure)> {
    let value: JsonValue = serde_json::from_str(text).map_err(|e| {
        (
            None,
            ApiError::not_json(format!("The frame is not JSON: {e}")).into(),
        )
    })?;
    let id = value
        .get("id")
        .and_then(JsonValue::as_str)
        .map(str::to_owned);
    let frame = ClientFrame::deserialize(&value).map_err(|e| {
        (
            id.clone(),
            ApiError::bad_json(format!("Malformed frame: {e}")).into(),
        )
    })?;
    let id = id.ok_or_else(|| {
        (
            None,
            ApiError::bad_json("The frame has no string id").into(),
        )
    })?;
    Ok((id, frame))
}

fn receipt_thread(thread_id: Option<&str>) -> Result<ReceiptThread, Error> {
    Ok(match thread_id {
        None => ReceiptThread::Unthreaded,
        Some("main") => ReceiptThread::Main,
        Some(root) => ReceiptThread::Thread(EventId::parse(root).map_err(|_| {
            Error::InvalidParam(
                "thread_id must be \"main\" or the event ID of a thread root".to_owned(),
            )
        })?),
    })
}

/// What an error frame says: the errcode and message HTTP would answer with.
#[derive(Debug)]
struct Failure {
    errcode: &'static str,
    error: String,
    retry_after_ms: Option<u64>,
}

impl From<ApiError> for Failure {
    fn from(error: ApiError) -> Self {
        Self {
            errcode: error.errcode,
            error: error.message,
            retry_after_ms: None,
        }
    }
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        let retry_after_ms = match &error {
            Error::LimitExceeded { retry_after_ms } => Some(*retry_after_ms),
            _ => None,
        };
        Self {
            retry_after_ms,
            ..ApiError::from(error).into()
        }
    }
}

/// The server's answer to one client frame.
enum Reply {
    Ack(String, Option<OwnedEventId>),
    Error(Option<String>, Failure),
}

impl Reply {
    fn message(&self) -> Message {
        match self {
            Self::Ack(id, event_id) => ServerFrame::Ack {
                id,
                event_id: event_id.as_deref(),
            },
            Self::Error(id, failure) => ServerFrame::Error {
                id: id.as_deref(),
                errcode: failure.errcode,
                error: &failure.error,
                retry_after_ms: failure.retry_after_ms,
            },
        }
        .message()
    }
}

/// A frame from the server.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ServerFrame<'a> {
    Sync {
        next_batch: &'a str,
        sync: &'a RawValue,
    },
    Ack {
        id: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        event_id: Option<&'a EventId>,
    },
    Error {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a str>,
        errcode: &'a str,
        error: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        retry_after_ms: Option<u64>,
    },
}

impl ServerFrame<'_> {
    fn message(&self) -> Message {
        // Strings, numbers and already valid JSON: serializing them cannot fail.
        let json = serde_json::to_string(self).expect("server frames serialize");
        Message::text(json)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn failure_of(text: &str) -> (Option<String>, &'static str) {
        match parse_frame(text) {
            Ok(_) => panic!("{text} parsed"),
            Err((id, failure)) => (id, failure.errcode),
        }
    }

    #[test]
    fn frames_parse_by_type() {
        let (id, frame) = parse_frame(
            r#"{"type":"send","id":"1","room_id":"!r:x","event_type":"m.room.message",
                "content":{"body":"hi"},"txn_id":"t1"}"#,
        )
        .unwrap();
        assert_eq!(id, "1");
        assert!(matches!(frame, ClientFrame::Send(send) if send.txn_id == "t1"));
        let (_, frame) =
            parse_frame(r#"{"type":"typing","id":"2","room_id":"!r:x","typing":true}"#).unwrap();
        assert!(matches!(frame, ClientFrame::Typing(t) if t.typing && t.timeout.is_none()));
        let (_, frame) = parse_frame(r#"{"type":"dance","id":"3"}"#).unwrap();
        assert!(matches!(frame, ClientFrame::Unknown));
    }

    #[test]
    fn bad_frames_get_errcodes_and_keep_their_id() {
        assert_eq!(failure_of("{not json"), (None, "M_NOT_JSON"));
        assert_eq!(
            failure_of(r#"{"type":"send","id":"7","room_id":"!r:x"}"#),
            (Some("7".to_owned()), "M_BAD_JSON")
        );
        assert_eq!(
            failure_of(r#"{"type":"typing","id":"8","room_id":"no sigil","typing":false}"#),
            (Some("8".to_owned()), "M_BAD_JSON")
        );
        assert_eq!(
            failure_of(r#"{"type":"typing","room_id":"!r:x","typing":false}"#),
            (None, "M_BAD_JSON")
        );
        assert_eq!(failure_of("[1]"), (None, "M_BAD_JSON"));
    }

    #[test]
    fn receipt_threads() {
        assert_eq!(receipt_thread(None).unwrap(), ReceiptThread::Unthreaded);
        assert_eq!(receipt_thread(Some("main")).unwrap(), ReceiptThread::Main);
        assert!(matches!(
            receipt_thread(Some("$root")).unwrap(),
            ReceiptThread::Thread(root) if root.as_str() == "$root"
        ));
        assert!(receipt_thread(Some("elsewhere")).is_err());
    }

    #[test]
    fn core_errors_keep_their_errcode_and_retry_delay() {
        let failure = Failure::from(Error::Forbidden("not in room".to_owned()));
        assert_eq!(
            (failure.errcode, failure.error.as_str()),
            ("M_FORBIDDEN", "not in room")
        );
        let limited = Failure::from(Error::LimitExceeded {
            retry_after_ms: 1500,
        });
        assert_eq!(limited.errcode, "M_LIMIT_EXCEEDED");
        assert_eq!(limited.retry_after_ms, Some(1500));
    }

    fn frame_json(message: Message) -> JsonValue {
        match message {
            Message::Text(text) => serde_json::from_str(text.as_str()).unwrap(),
            other => panic!("not a text frame: {other:?}"),
        }
    }

    #[test]
    fn server_frames() {
        let event_id = EventId::parse("$e").unwrap();
        assert_eq!(
            frame_json(Reply::Ack("1".to_owned(), Some(event_id)).message()),
            json!({"type": "ack", "id": "1", "event_id": "$e"})
        );
        assert_eq!(
            frame_json(Reply::Ack("2".to_owned(), None).message()),
            json!({"type": "ack", "id": "2"})
        );
        let failure = Failure::from(ApiError::unrecognized("what"));
        assert_eq!(
            frame_json(Reply::Error(None, failure).message()),
            json!({"type": "error", "errcode": "M_UNRECOGNIZED", "error": "what"})
        );
    }

    #[test]
    fn a_full_queue_closes_as_slow_consumer() {
        let (frames, queue) = mpsc::channel(1);
        let outbox = Outbox(frames);
        assert!(outbox.push(Message::text("one")).is_ok());
        assert!(matches!(
            outbox.push(Message::text("two")),
            Err(Ending::Close(SLOW_CONSUMER, _))
        ));
        drop(queue);
        assert!(matches!(
            outbox.push(Message::text("three")),
            Err(Ending::Failed)
        ));
    }

    #[test]
    fn sync_frames_carry_the_sync_body_and_only_news_counts() {
        let response = v3::Response::new("s1_0_0_0_0".to_owned());
        assert!(tessera_core::sync::is_empty(&response));
        let frame = frame_json(sync_frame(&response).unwrap());
        assert_eq!(frame["type"], "sync");
        assert_eq!(frame["next_batch"], "s1_0_0_0_0");
        assert_eq!(frame["sync"]["next_batch"], "s1_0_0_0_0");
    }
}
