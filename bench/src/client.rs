//! A minimal Client-Server API client: just the endpoints the scenarios drive.

use std::fmt::{self, Write as _};
use std::time::Duration;

use futures::StreamExt;
use hmac::{Hmac, Mac};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::{Value, json};
use sha1::Sha1;
use tokio_tungstenite::tungstenite::{Error as WsError, Message, client::IntoClientRequest};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Why a request did not succeed: the transport failed, or the server answered with an error.
#[derive(Debug)]
pub enum RequestError {
    Transport(reqwest::Error),
    Status {
        status: StatusCode,
        body: String,
    },
    /// A 2xx answer without the fields the spec promises.
    Malformed(String),
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Transport(e) => write!(f, "transport error: {e}"),
            Self::Status { status, body } => write!(f, "HTTP {status}: {body}"),
            Self::Malformed(what) => write!(f, "malformed response: {what}"),
        }
    }
}

impl From<reqwest::Error> for RequestError {
    fn from(e: reqwest::Error) -> Self {
        Self::Transport(e)
    }
}

/// A logged-in device: what register and login hand back.
#[derive(Debug, Clone)]
pub struct Session {
    pub user_id: String,
    pub device_id: String,
    pub access_token: String,
}

/// Prefix of Tessera's IM extension endpoints (docs/im-api.md).
const IM: &str = "/_matrix/client/unstable/im.tessera";

/// A page of the moments feed: how many posts it held, and the token of the next.
pub struct FeedPage {
    pub posts: usize,
    pub next_batch: Option<String>,
}

#[derive(Clone)]
pub struct CsClient {
    http: reqwest::Client,
    base_url: String,
    /// The per-request timeout, which a long-poll gets on top of its own wait.
    timeout: Duration,
}

impl CsClient {
    /// `pool_size` keeps one idle connection per concurrent worker so the measured phase does
    /// not pay for reconnects.
    pub fn new(base_url: &str, pool_size: usize, timeout: Duration) -> reqwest::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .pool_max_idle_per_host(pool_size)
            .build()?;
        Ok(Self {
            http,
            base_url: base_url.trim_end_matches('/').to_owned(),
            timeout,
        })
    }

    /// Registers through User-Interactive Auth with `m.login.dummy` (open registration):
    /// the first request only obtains the UIA session, the second completes it.
    pub async fn register_open(
        &self,
        username: &str,
        password: &str,
    ) -> Result<Session, RequestError> {
        let path = "/_matrix/client/v3/register";
        let mut body = json!({ "username": username, "password": password });
        let (status, challenge) = self.send(Method::POST, path, None, Some(&body)).await?;
        if status != StatusCode::UNAUTHORIZED {
            return Err(status_error(status, &challenge));
        }
        let session = challenge["session"]
            .as_str()
            .ok_or_else(|| RequestError::Malformed("UIA challenge without session".into()))?;
        body["auth"] = json!({ "type": "m.login.dummy", "session": session });
        let response = self
            .expect_ok(Method::POST, path, None, Some(&body))
            .await?;
        session_from(&response)
    }

    /// Registers through Synapse's shared-secret admin API, which Tessera also serves.
    pub async fn register_shared_secret(
        &self,
        shared_secret: &str,
        username: &str,
        password: &str,
    ) -> Result<Session, RequestError> {
        let path = "/_synapse/admin/v1/register";
        let nonce_response = self.expect_ok(Method::GET, path, None, None).await?;
        let nonce = nonce_response["nonce"]
            .as_str()
            .ok_or_else(|| RequestError::Malformed("no nonce".into()))?;
        let body = json!({
            "nonce": nonce,
            "username": username,
            "password": password,
            "admin": false,
            "mac": registration_mac(shared_secret, nonce, username, password),
        });
        let response = self
            .expect_ok(Method::POST, path, None, Some(&body))
            .await?;
        session_from(&response)
    }

    pub async fn login(&self, username: &str, password: &str) -> Result<Session, RequestError> {
        let body = json!({
            "type": "m.login.password",
            "identifier": { "type": "m.id.user", "user": username },
            "password": password,
        });
        let response = self
            .expect_ok(Method::POST, "/_matrix/client/v3/login", None, Some(&body))
            .await?;
        session_from(&response)
    }

    /// Returns the user ID the access token belongs to.
    pub async fn whoami(&self, access_token: &str) -> Result<String, RequestError> {
        let response = self
            .expect_ok(
                Method::GET,
                "/_matrix/client/v3/account/whoami",
                Some(access_token),
                None,
            )
            .await?;
        string_field(&response, "user_id")
    }

    /// `POST /createRoom` with a preset (`public_chat`, `private_chat`); returns the room ID.
    pub async fn create_room(
        &self,
        access_token: &str,
        preset: &str,
    ) -> Result<String, RequestError> {
        let body = json!({ "preset": preset });
        let response = self
            .expect_ok(
                Method::POST,
                "/_matrix/client/v3/createRoom",
                Some(access_token),
                Some(&body),
            )
            .await?;
        string_field(&response, "room_id")
    }

    pub async fn join_room(&self, access_token: &str, room_id: &str) -> Result<(), RequestError> {
        let path = format!("/_matrix/client/v3/join/{}", percent_encode(room_id));
        self.join(access_token, &path).await
    }

    /// Joins a room this server may not be in yet, asking `server_name` (a server in the room)
    /// to let its user in over federation.
    pub async fn join_room_via(
        &self,
        access_token: &str,
        room_id: &str,
        server_name: &str,
    ) -> Result<(), RequestError> {
        let path = format!(
            "/_matrix/client/v3/join/{}?server_name={}",
            percent_encode(room_id),
            percent_encode(server_name)
        );
        self.join(access_token, &path).await
    }

    async fn join(&self, access_token: &str, path: &str) -> Result<(), RequestError> {
        let response = self
            .expect_ok(Method::POST, path, Some(access_token), Some(&json!({})))
            .await?;
        string_field(&response, "room_id").map(drop)
    }

    /// `GET /rooms/{roomId}/members`; returns how many member events came back. Synapse
    /// answers it only once it has the room's full state, so after a partial-state join it
    /// waits until the room's membership has been fetched.
    pub async fn member_count(
        &self,
        access_token: &str,
        room_id: &str,
    ) -> Result<usize, RequestError> {
        let path = format!(
            "/_matrix/client/v3/rooms/{}/members",
            percent_encode(room_id)
        );
        let response = self
            .expect_ok(Method::GET, &path, Some(access_token), None)
            .await?;
        response["chunk"]
            .as_array()
            .map(Vec::len)
            .ok_or_else(|| RequestError::Malformed(format!("no `chunk` array in {response}")))
    }

    /// Sends an `m.text` message; `txn_id` must be unique per access token.
    pub async fn send_text(
        &self,
        access_token: &str,
        room_id: &str,
        txn_id: &str,
        text: &str,
    ) -> Result<(), RequestError> {
        let path = format!(
            "/_matrix/client/v3/rooms/{}/send/m.room.message/{}",
            percent_encode(room_id),
            percent_encode(txn_id)
        );
        let body = json!({ "msgtype": "m.text", "body": text });
        let response = self
            .expect_ok(Method::PUT, &path, Some(access_token), Some(&body))
            .await?;
        string_field(&response, "event_id").map(drop)
    }

    /// One page of `GET /rooms/{roomId}/messages?dir=b`, from the newest event when `from` is
    /// `None`.
    pub async fn messages_backwards(
        &self,
        access_token: &str,
        room_id: &str,
        from: Option<&str>,
        limit: u32,
    ) -> Result<MessagesPage, RequestError> {
        let mut path = format!(
            "/_matrix/client/v3/rooms/{}/messages?dir=b&limit={limit}",
            percent_encode(room_id)
        );
        if let Some(token) = from {
            path.push_str("&from=");
            path.push_str(&percent_encode(token));
        }
        let response = self
            .expect_ok(Method::GET, &path, Some(access_token), None)
            .await?;
        let events = response["chunk"]
            .as_array()
            .ok_or_else(|| RequestError::Malformed(format!("no `chunk` array in {response}")))?
            .len();
        Ok(MessagesPage {
            events,
            end: response["end"].as_str().map(str::to_owned),
        })
    }

    /// `GET /sync`. An incremental sync with a `timeout` is a long-poll: the server may hold it
    /// that long before answering, so the request may take that long on top of the usual
    /// timeout.
    pub async fn sync(
        &self,
        access_token: &str,
        query: &SyncQuery<'_>,
    ) -> Result<SyncBatch, RequestError> {
        let path = format!("/_matrix/client/v3/sync{}", query.query_string());
        let request = self
            .request(Method::GET, &path, Some(access_token), None)
            .timeout(self.timeout + query.timeout.unwrap_or_default());
        let response = checked(request).await?;
        sync_batch_from(&response)
    }

    /// Opens Tessera's WebSocket sync transport (docs/websocket.md) with the parameters of
    /// `query` (its `timeout` is ignored there). `Ok(None)`: the server has no such endpoint.
    pub async fn sync_socket(
        &self,
        access_token: &str,
        query: &SyncQuery<'_>,
    ) -> Result<Option<SyncSocket>, String> {
        let address = self
            .base_url
            .replacen("http://", "ws://", 1)
            .replacen("https://", "wss://", 1);
        let url = format!("{address}{IM}/ws{}", query.query_string());
        let mut request = url
            .into_client_request()
            .map_err(|e| format!("bad WebSocket address: {e}"))?;
        let bearer = format!("Bearer {access_token}")
            .parse()
            .map_err(|e| format!("bad access token: {e}"))?;
        request.headers_mut().insert("Authorization", bearer);
        let connect = tokio_tungstenite::connect_async(request);
        match tokio::time::timeout(self.timeout, connect).await {
            Err(_) => Err("the WebSocket upgrade timed out".to_owned()),
            Ok(Ok((socket, _))) => Ok(Some(SyncSocket { socket })),
            Ok(Err(WsError::Http(response))) if response.status() == StatusCode::NOT_FOUND => {
                Ok(None)
            }
            Ok(Err(e)) => Err(format!("WebSocket upgrade failed: {e}")),
        }
    }

    /// `POST /keys/upload` of `keys` (`device_keys`, `one_time_keys`); returns how many
    /// unclaimed `signed_curve25519` one-time keys the device has according to the server.
    pub async fn upload_keys(&self, access_token: &str, keys: &Value) -> Result<u64, RequestError> {
        let response = self
            .expect_ok(
                Method::POST,
                "/_matrix/client/v3/keys/upload",
                Some(access_token),
                Some(keys),
            )
            .await?;
        // The spec lets a server leave out algorithms the device has no keys of.
        Ok(response["one_time_key_counts"]["signed_curve25519"]
            .as_u64()
            .unwrap_or(0))
    }

    /// `POST /keys/query` for every device of `user_ids`; returns how many devices' keys came
    /// back.
    pub async fn query_keys(
        &self,
        access_token: &str,
        user_ids: &[&str],
    ) -> Result<usize, RequestError> {
        let all_devices: serde_json::Map<String, Value> = user_ids
            .iter()
            .map(|user_id| ((*user_id).to_owned(), json!([])))
            .collect();
        let body = json!({ "device_keys": all_devices });
        let response = self
            .expect_ok(
                Method::POST,
                "/_matrix/client/v3/keys/query",
                Some(access_token),
                Some(&body),
            )
            .await?;
        let users = response["device_keys"].as_object().ok_or_else(|| {
            RequestError::Malformed(format!("no `device_keys` object in {response}"))
        })?;
        Ok(users
            .values()
            .filter_map(Value::as_object)
            .map(|d| d.len())
            .sum())
    }

    /// `POST /keys/claim` of `one_time_keys` (user ID -> device ID -> algorithm); returns how
    /// many `signed_curve25519` one-time keys came back (a fallback key has another key ID).
    pub async fn claim_keys(
        &self,
        access_token: &str,
        one_time_keys: &Value,
    ) -> Result<usize, RequestError> {
        let body = json!({ "one_time_keys": one_time_keys });
        let response = self
            .expect_ok(
                Method::POST,
                "/_matrix/client/v3/keys/claim",
                Some(access_token),
                Some(&body),
            )
            .await?;
        let users = response["one_time_keys"].as_object().ok_or_else(|| {
            RequestError::Malformed(format!("no `one_time_keys` object in {response}"))
        })?;
        Ok(users
            .values()
            .filter_map(Value::as_object)
            .flat_map(|devices| devices.values().filter_map(Value::as_object))
            .flat_map(|keys| keys.keys())
            .filter(|key_id| key_id.starts_with("signed_curve25519:"))
            .count())
    }

    /// `PUT /sendToDevice/{eventType}/{txnId}` of `messages` (user ID -> device ID or `*` ->
    /// content); `txn_id` must be unique per access token.
    pub async fn send_to_device(
        &self,
        access_token: &str,
        event_type: &str,
        txn_id: &str,
        messages: &Value,
    ) -> Result<(), RequestError> {
        let path = format!(
            "/_matrix/client/v3/sendToDevice/{}/{}",
            percent_encode(event_type),
            percent_encode(txn_id)
        );
        let body = json!({ "messages": messages });
        self.expect_ok(Method::PUT, &path, Some(access_token), Some(&body))
            .await
            .map(drop)
    }

    /// `POST /_matrix/media/v3/upload` of `length` bytes (Synapse refuses uploads without a
    /// Content-Length, which a streamed body does not get by itself); returns the `mxc://` URI.
    pub async fn upload(
        &self,
        access_token: &str,
        body: reqwest::Body,
        length: u64,
        content_type: &str,
    ) -> Result<String, RequestError> {
        let request = self
            .http
            .post(format!("{}/_matrix/media/v3/upload", self.base_url))
            .bearer_auth(access_token)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .header(reqwest::header::CONTENT_LENGTH, length)
            .body(body);
        let response = checked(request).await?;
        string_field(&response, "content_uri")
    }

    /// `GET /_matrix/client/v1/media/{kind}/{server}/{id}{query}` (download or thumbnail),
    /// streamed: returns the body's length and its first `keep` bytes.
    pub async fn media_get(
        &self,
        access_token: &str,
        kind: &str,
        mxc: &str,
        query: &str,
        keep: usize,
    ) -> Result<(u64, Vec<u8>), RequestError> {
        let target = mxc
            .strip_prefix("mxc://")
            .ok_or_else(|| RequestError::Malformed(format!("not an mxc URI: {mxc}")))?;
        let mut response = self
            .http
            .get(format!(
                "{}/_matrix/client/v1/media/{kind}/{target}{query}",
                self.base_url
            ))
            .bearer_auth(access_token)
            .send()
            .await?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            return Err(RequestError::Status { status, body });
        }
        let (mut length, mut kept) = (0u64, Vec::new());
        while let Some(chunk) = response.chunk().await? {
            length += chunk.len() as u64;
            let room = keep.saturating_sub(kept.len());
            kept.extend_from_slice(&chunk[..room.min(chunk.len())]);
        }
        Ok((length, kept))
    }

    /// `POST /im.tessera/friends/requests`: asks `user_id` to be friends (or accepts their
    /// request).
    pub async fn request_friend(
        &self,
        access_token: &str,
        user_id: &str,
    ) -> Result<(), RequestError> {
        let body = json!({ "user_id": user_id });
        let response = self
            .expect_ok(
                Method::POST,
                &format!("{IM}/friends/requests"),
                Some(access_token),
                Some(&body),
            )
            .await?;
        string_field(&response, "room_id").map(drop)
    }

    /// `POST /im.tessera/friends/requests/{userId}/accept`.
    pub async fn accept_friend(
        &self,
        access_token: &str,
        requester: &str,
    ) -> Result<(), RequestError> {
        let path = format!("{IM}/friends/requests/{}/accept", percent_encode(requester));
        let response = self
            .expect_ok(Method::POST, &path, Some(access_token), Some(&json!({})))
            .await?;
        string_field(&response, "room_id").map(drop)
    }

    /// `PUT /im.tessera/moments/post/{txnId}` with text.
    pub async fn post_moment(
        &self,
        access_token: &str,
        txn_id: &str,
        text: &str,
    ) -> Result<(), RequestError> {
        let path = format!("{IM}/moments/post/{}", percent_encode(txn_id));
        let response = self
            .expect_ok(
                Method::PUT,
                &path,
                Some(access_token),
                Some(&json!({ "text": text })),
            )
            .await?;
        string_field(&response, "event_id").map(drop)
    }

    /// One page of `GET /im.tessera/moments/feed`, the newest when `from` is `None`.
    pub async fn feed(
        &self,
        access_token: &str,
        from: Option<&str>,
        limit: u32,
    ) -> Result<FeedPage, RequestError> {
        let mut path = format!("{IM}/moments/feed?limit={limit}");
        if let Some(from) = from {
            write!(path, "&from={}", percent_encode(from)).expect("writing to a String");
        }
        let response = self
            .expect_ok(Method::GET, &path, Some(access_token), None)
            .await?;
        let posts = response["chunk"]
            .as_array()
            .ok_or_else(|| RequestError::Malformed(format!("no `chunk` in {response}")))?
            .len();
        Ok(FeedPage {
            posts,
            next_batch: response["next_batch"].as_str().map(str::to_owned),
        })
    }

    async fn expect_ok(
        &self,
        method: Method,
        path: &str,
        access_token: Option<&str>,
        body: Option<&Value>,
    ) -> Result<Value, RequestError> {
        checked(self.request(method, path, access_token, body)).await
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        access_token: Option<&str>,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Value), RequestError> {
        execute(self.request(method, path, access_token, body)).await
    }

    fn request(
        &self,
        method: Method,
        path: &str,
        access_token: Option<&str>,
        body: Option<&Value>,
    ) -> RequestBuilder {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base_url));
        if let Some(token) = access_token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        request
    }
}

/// Sends the request and hands back the body of a 2xx answer.
async fn checked(request: RequestBuilder) -> Result<Value, RequestError> {
    let (status, response) = execute(request).await?;
    if status.is_success() {
        Ok(response)
    } else {
        Err(status_error(status, &response))
    }
}

async fn execute(request: RequestBuilder) -> Result<(StatusCode, Value), RequestError> {
    let response = request.send().await?;
    let status = response.status();
    let bytes = response.bytes().await?;
    // Error bodies are not always JSON (proxies, panics): keep them as text for the report.
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    Ok((status, value))
}

/// The query of a `/sync` request; `None` leaves a parameter out.
#[derive(Default)]
pub struct SyncQuery<'a> {
    /// The previous response's `next_batch`; without it the sync is an initial sync.
    pub since: Option<&'a str>,
    /// How long the server may wait for something new before answering.
    pub timeout: Option<Duration>,
    /// A filter, inline JSON or the ID of an uploaded one.
    pub filter: Option<&'a str>,
    /// `offline` keeps the request from marking the user online.
    pub set_presence: Option<&'a str>,
}

impl SyncQuery<'_> {
    /// `?name=value&...`, or nothing when every parameter is left out.
    fn query_string(&self) -> String {
        let parameters: Vec<String> = [
            ("since", self.since.map(str::to_owned)),
            ("timeout", self.timeout.map(|t| t.as_millis().to_string())),
            ("filter", self.filter.map(str::to_owned)),
            ("set_presence", self.set_presence.map(str::to_owned)),
        ]
        .into_iter()
        .filter_map(|(name, value)| Some(format!("{name}={}", percent_encode(&value?))))
        .collect();
        if parameters.is_empty() {
            String::new()
        } else {
            format!("?{}", parameters.join("&"))
        }
    }
}

/// An open WebSocket sync connection.
pub struct SyncSocket {
    socket: WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>,
}

impl SyncSocket {
    /// The next `sync` frame's body; answers the server's pings while it waits (the library
    /// does so whenever it reads). `Err` when the connection ends or sends something else.
    pub async fn next_sync(&mut self) -> Result<SyncBatch, String> {
        loop {
            let frame = self
                .socket
                .next()
                .await
                .ok_or("the server closed the connection")?
                .map_err(|e| format!("the connection failed: {e}"))?;
            let text = match frame {
                Message::Text(text) => text,
                Message::Close(close) => return Err(format!("the server closed it: {close:?}")),
                _ => continue,
            };
            let frame: Value = serde_json::from_str(&text)
                .map_err(|e| format!("a frame that is not JSON: {e}"))?;
            if frame["type"] != "sync" {
                return Err(format!("an unexpected frame: {text}"));
            }
            return sync_batch_from(&frame["sync"]).map_err(|e| e.to_string());
        }
    }
}

/// What the scenarios need from a `/sync` response.
pub struct SyncBatch {
    pub next_batch: String,
    pub joined_rooms: usize,
    /// The bodies of the `m.room.message` events in the joined rooms' timelines.
    pub message_bodies: Vec<String>,
    /// Some joined room's timeline is `limited`: it skipped events between `since` and its
    /// first event.
    pub limited: bool,
    /// The contents of the to-device events.
    pub to_device_contents: Vec<Value>,
}

fn sync_batch_from(response: &Value) -> Result<SyncBatch, RequestError> {
    let next_batch = string_field(response, "next_batch")?;
    // `rooms`, `to_device` and their sections may be left out when empty.
    let to_device_contents = response["to_device"]["events"]
        .as_array()
        .map(|events| {
            events
                .iter()
                .map(|event| event["content"].clone())
                .collect()
        })
        .unwrap_or_default();
    let Some(joined) = response["rooms"]["join"].as_object() else {
        return Ok(SyncBatch {
            next_batch,
            joined_rooms: 0,
            message_bodies: Vec::new(),
            limited: false,
            to_device_contents,
        });
    };
    let limited = joined
        .values()
        .any(|room| room["timeline"]["limited"] == true);
    let message_bodies = joined
        .values()
        .filter_map(|room| room["timeline"]["events"].as_array())
        .flatten()
        .filter(|event| event["type"] == "m.room.message")
        .filter_map(|event| event["content"]["body"].as_str().map(str::to_owned))
        .collect();
    Ok(SyncBatch {
        next_batch,
        joined_rooms: joined.len(),
        message_bodies,
        limited,
        to_device_contents,
    })
}

/// What the scenarios need from a `/messages` page.
pub struct MessagesPage {
    pub events: usize,
    /// The token for the next (older) page; absent once the start of the room is reached.
    pub end: Option<String>,
}

/// Percent-encodes everything but RFC 3986 unreserved characters, for a path segment or a
/// query value (room IDs carry `!` and `:`, tokens may carry anything).
fn percent_encode(raw: &str) -> String {
    let mut encoded = String::with_capacity(raw.len());
    for byte in raw.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            let _ = write!(encoded, "%{byte:02X}");
        }
    }
    encoded
}

/// Synapse's MAC: hex HMAC-SHA1 over `nonce\0username\0password\0notadmin`.
fn registration_mac(shared_secret: &str, nonce: &str, username: &str, password: &str) -> String {
    let mut mac = Hmac::<Sha1>::new_from_slice(shared_secret.as_bytes())
        .expect("HMAC accepts keys of any length");
    for (i, part) in [nonce, username, password, "notadmin"].iter().enumerate() {
        if i > 0 {
            mac.update(b"\0");
        }
        mac.update(part.as_bytes());
    }
    hex::encode(mac.finalize().into_bytes())
}

fn session_from(response: &Value) -> Result<Session, RequestError> {
    Ok(Session {
        user_id: string_field(response, "user_id")?,
        device_id: string_field(response, "device_id")?,
        access_token: string_field(response, "access_token")?,
    })
}

fn string_field(response: &Value, field: &str) -> Result<String, RequestError> {
    response[field]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| RequestError::Malformed(format!("no `{field}` in {response}")))
}

fn status_error(status: StatusCode, body: &Value) -> RequestError {
    RequestError::Status {
        status,
        body: body.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_mac_matches_synapse() {
        // Python: hmac.new(b"secret", b"abc\x00alice\x00pw\x00notadmin", hashlib.sha1).hexdigest()
        assert_eq!(
            registration_mac("secret", "abc", "alice", "pw"),
            "42e32623fe124933c326f9d2d67ff7c617915a10"
        );
    }

    #[test]
    fn sync_batch_lists_joined_rooms_and_message_bodies() {
        let response = json!({
            "next_batch": "s42",
            "rooms": { "join": {
                "!a:localhost": { "timeline": { "events": [
                    { "type": "m.room.member", "content": { "membership": "join" } },
                    { "type": "m.room.message", "content": { "msgtype": "m.text", "body": "one" } },
                ] } },
                "!b:localhost": {},
            } },
        });
        let batch = sync_batch_from(&response).unwrap();
        assert_eq!(batch.next_batch, "s42");
        assert_eq!(batch.joined_rooms, 2);
        assert_eq!(batch.message_bodies, ["one"]);
        assert!(!batch.limited);

        assert!(batch.to_device_contents.is_empty());

        let empty = sync_batch_from(&json!({ "next_batch": "s43" })).unwrap();
        assert_eq!((empty.joined_rooms, empty.message_bodies.len()), (0, 0));
        let to_device = sync_batch_from(&json!({
            "next_batch": "s44",
            "to_device": { "events": [
                { "type": "m.room.encrypted", "sender": "@a:localhost", "content": { "n": 1 } },
            ] },
        }))
        .unwrap();
        assert_eq!(to_device.to_device_contents, [json!({ "n": 1 })]);
        let gap = sync_batch_from(&json!({
            "next_batch": "s45",
            "rooms": { "join": { "!a:localhost": { "timeline": { "limited": true, "events": [] } } } },
        }))
        .unwrap();
        assert!(gap.limited);
        assert!(sync_batch_from(&json!({ "rooms": {} })).is_err());
    }

    #[test]
    fn percent_encoding_keeps_only_unreserved_characters() {
        assert_eq!(
            percent_encode("!abc_D-1.~:localhost"),
            "%21abc_D-1.~%3Alocalhost"
        );
        assert_eq!(percent_encode("t1+/=é"), "t1%2B%2F%3D%C3%A9");
    }
}
