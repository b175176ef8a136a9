//! A small Client-Server API client: raw requests plus the few flows every test needs.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use reqwest::Method;
use reqwest::header::{CONTENT_TYPE, HeaderMap};
use serde_json::{Value, json};

use crate::V3;
use crate::util::admin_register_mac;

/// Longest a single request may take before the test fails.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// An HTTP client bound to one server, optionally carrying an access token.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base_url: String,
    token: Option<String>,
}

/// What came back: status, body (parsed as JSON when it is JSON, else `Value::Null`), raw text.
#[derive(Debug)]
pub struct Response {
    /// "METHOD path", for messages.
    pub request: String,
    pub status: u16,
    pub json: Value,
    pub text: String,
    pub headers: HeaderMap,
}

/// A logged-in user: the IDs the server returned and a client carrying the access token.
#[derive(Clone)]
pub struct User {
    pub user_id: String,
    pub access_token: String,
    pub device_id: String,
    pub password: String,
    /// Present when the session was created with `refresh_token: true`.
    pub refresh_token: Option<String>,
    /// Authenticated with `access_token`.
    pub client: Client,
}

impl Client {
    pub fn new(base_url: &str) -> Self {
        Client {
            http: http_client(None),
            base_url: base_url.trim_end_matches('/').to_owned(),
            token: None,
        }
    }

    /// The same server and token, connecting from another loopback source address (e.g.
    /// 127.0.0.2), so that the server sees another client IP.
    /// A client of `base_url` over an HTTP client made elsewhere (for TLS settings).
    pub(crate) fn with_http(http: reqwest::Client, base_url: &str) -> Self {
        Self {
            http,
            base_url: base_url.to_owned(),
            token: None,
        }
    }

    pub fn from_address(&self, local_address: IpAddr) -> Self {
        Client {
            http: http_client(Some(local_address)),
            ..self.clone()
        }
    }

    /// The same server, authenticated with `token`.
    pub fn with_token(&self, token: &str) -> Self {
        Client {
            token: Some(token.to_owned()),
            ..self.clone()
        }
    }

    /// The server's address, e.g. `http://127.0.0.1:8008`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The same server, no access token.
    pub fn anonymous(&self) -> Self {
        Client {
            token: None,
            ..self.clone()
        }
    }

    /// Sends `method path` with an optional JSON body (and the access token as a Bearer header).
    pub async fn request(&self, method: Method, path: &str, body: Option<Value>) -> Response {
        let body = body.map(|b| (b.to_string().into_bytes(), "application/json"));
        self.send(method, path, body, &self.auth_header()).await
    }

    /// Sends with exactly these headers (the client's own token is NOT added): for testing
    /// `Authorization` variants, CORS and the like.
    pub async fn request_with_headers(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Response {
        let headers: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.send(method, path, None, &headers).await
    }

    fn auth_header(&self) -> Vec<(String, String)> {
        self.token
            .iter()
            .map(|t| ("Authorization".to_owned(), format!("Bearer {t}")))
            .collect()
    }

    /// Sends raw bytes as the body with the given content type: for malformed input.
    pub async fn request_bytes(
        &self,
        method: Method,
        path: &str,
        body: impl Into<Vec<u8>>,
        content_type: &'static str,
    ) -> Response {
        self.try_request_bytes(method, path, body, content_type)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Like [`Client::request_bytes`], but a missing HTTP response (connection dropped) is an
    /// `Err` describing it instead of a panic, so that a test can collect several failures.
    pub async fn try_request_bytes(
        &self,
        method: Method,
        path: &str,
        body: impl Into<Vec<u8>>,
        content_type: &'static str,
    ) -> Result<Response, String> {
        self.try_send(
            method,
            path,
            Some((body.into(), content_type)),
            &self.auth_header(),
        )
        .await
    }

    pub async fn get(&self, path: &str) -> Response {
        self.request(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Response {
        self.request(Method::POST, path, Some(body)).await
    }

    pub async fn put(&self, path: &str, body: Value) -> Response {
        self.request(Method::PUT, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Response {
        self.request(Method::DELETE, path, None).await
    }

    pub(crate) async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<(Vec<u8>, &'static str)>,
        headers: &[(String, String)],
    ) -> Response {
        self.try_send(method, path, body, headers)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    async fn try_send(
        &self,
        method: Method,
        path: &str,
        body: Option<(Vec<u8>, &'static str)>,
        headers: &[(String, String)],
    ) -> Result<Response, String> {
        let request = format!("{method} {path}");
        let mut builder = self
            .http
            .request(method, format!("{}{path}", self.base_url));
        for (name, value) in headers {
            builder = builder.header(name, value);
        }
        if let Some((bytes, content_type)) = body {
            builder = builder.header(CONTENT_TYPE, content_type).body(bytes);
        }
        let resp = builder.send().await.map_err(|e| {
            format!("{request}: no HTTP response (server down or connection dropped?): {e}")
        })?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp
            .text()
            .await
            .map_err(|e| format!("{request} -> {status}: reading the body failed: {e}"))?;
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Ok(Response {
            request,
            status,
            json,
            text,
            headers,
        })
    }

    /// One `POST /register` with exactly this body.
    pub async fn register_raw(&self, body: Value) -> Response {
        self.anonymous().post(&format!("{V3}/register"), body).await
    }

    /// `POST /register` through User-Interactive Auth with `m.login.dummy`: the first request
    /// (without `auth`) must get 401 with a dummy flow and a session; the second completes it.
    /// Any other first answer (400, 403, 429...) is returned as it is.
    pub async fn register_dummy(&self, body: Value) -> Response {
        let first = self.register_raw(body.clone()).await;
        if first.status != 401 {
            return first;
        }
        let session = first.uia_session(&["m.login.dummy"]);
        let auth = json!({ "type": "m.login.dummy", "session": session });
        self.register_raw(with_auth(body, auth)).await
    }

    /// Registers `username` with `password` (open registration); panics unless it succeeds.
    pub async fn register(&self, username: &str, password: &str) -> User {
        self.register_with(json!({ "username": username, "password": password }))
            .await
    }

    /// Registers with extra body fields (`device_id`, `refresh_token`...); panics unless 200.
    pub async fn register_with(&self, body: Value) -> User {
        let password = body["password"].as_str().unwrap_or_default().to_owned();
        let resp = self.register_dummy(body).await;
        self.user_from(&resp, &password)
    }

    /// One `POST /login` with exactly this body.
    pub async fn login_raw(&self, body: Value) -> Response {
        self.anonymous().post(&format!("{V3}/login"), body).await
    }

    /// `m.login.password` with an `m.id.user` identifier (localpart or full user ID).
    pub async fn login_password(&self, user: &str, password: &str) -> Response {
        self.login_raw(password_login_body(user, password)).await
    }

    /// Logs in with a password; panics unless it succeeds.
    pub async fn login(&self, user: &str, password: &str) -> User {
        let resp = self.login_password(user, password).await;
        self.user_from(&resp, password)
    }

    /// Logs in with extra body fields merged over the password login body; panics unless 200.
    pub async fn login_with(&self, user: &str, password: &str, extra: Value) -> User {
        let mut body = password_login_body(user, password);
        merge(&mut body, extra);
        let resp = self.login_raw(body).await;
        self.user_from(&resp, password)
    }

    /// Builds a [`User`] from a successful login/register response.
    #[track_caller]
    pub fn user_from(&self, resp: &Response, password: &str) -> User {
        resp.assert_status(200);
        let field = |name: &str| {
            resp.json[name]
                .as_str()
                .unwrap_or_else(|| panic!("{name} missing or not a string in {resp}"))
                .to_owned()
        };
        let access_token = field("access_token");
        User {
            user_id: field("user_id"),
            device_id: field("device_id"),
            refresh_token: resp.json["refresh_token"].as_str().map(str::to_owned),
            client: self.with_token(&access_token),
            access_token,
            password: password.to_owned(),
        }
    }

    /// Sends `body` without `auth`, asserts the UIA 401 (flows offering `stage`) and returns
    /// its session.
    pub async fn uia_start(&self, method: Method, path: &str, body: Value, stage: &str) -> String {
        self.request(method, path, Some(body))
            .await
            .uia_session(&[stage])
    }

    /// Runs `method path` through UIA with `m.login.password` for `user_id` / `password`.
    pub async fn uia_password(
        &self,
        method: Method,
        path: &str,
        body: Value,
        user_id: &str,
        password: &str,
    ) -> Response {
        let session = self
            .uia_start(method.clone(), path, body.clone(), "m.login.password")
            .await;
        let auth = password_auth(&session, user_id, password);
        self.request(method, path, Some(with_auth(body, auth)))
            .await
    }

    /// Synapse's shared-secret registration: `GET` a nonce, then `POST` with the HMAC.
    pub async fn admin_register(
        &self,
        shared_secret: &str,
        username: &str,
        password: &str,
        admin: bool,
    ) -> Response {
        let nonce = self.admin_register_nonce().await;
        let mac = admin_register_mac(shared_secret, &nonce, username, password, admin);
        self.anonymous()
            .post(
                "/_synapse/admin/v1/register",
                json!({
                    "nonce": nonce,
                    "username": username,
                    "password": password,
                    "admin": admin,
                    "mac": mac,
                }),
            )
            .await
    }

    /// `GET /_synapse/admin/v1/register` -> the nonce; panics unless 200 with a string nonce.
    pub async fn admin_register_nonce(&self) -> String {
        let resp = self.anonymous().get("/_synapse/admin/v1/register").await;
        resp.assert_status(200);
        resp.json["nonce"]
            .as_str()
            .unwrap_or_else(|| panic!("no nonce in {resp}"))
            .to_owned()
    }
}

impl User {
    /// `GET /account/whoami` with this user's token.
    pub async fn whoami(&self) -> Response {
        self.client.get(&format!("{V3}/account/whoami")).await
    }

    /// Asserts this user's access token works and belongs to this user and device.
    pub async fn assert_token_valid(&self) {
        let resp = self.whoami().await;
        resp.assert_status(200);
        assert_eq!(resp.json["user_id"], self.user_id.as_str(), "{resp}");
        assert_eq!(resp.json["device_id"], self.device_id.as_str(), "{resp}");
    }

    /// Asserts this user's access token is rejected with 401 M_UNKNOWN_TOKEN.
    pub async fn assert_token_invalid(&self) {
        self.whoami().await.assert_error(401, "M_UNKNOWN_TOKEN");
    }

    /// The sorted device IDs of `GET /devices`.
    pub async fn device_ids(&self) -> Vec<String> {
        let body = self.client.get(&format!("{V3}/devices")).await.ok();
        let mut ids: Vec<String> = body["devices"]
            .as_array()
            .unwrap_or_else(|| panic!("no devices list: {body}"))
            .iter()
            .map(|d| {
                d["device_id"]
                    .as_str()
                    .unwrap_or_else(|| panic!("device without device_id: {body}"))
                    .to_owned()
            })
            .collect();
        ids.sort();
        ids
    }

    /// Runs `method path` through UIA with this user's password.
    pub async fn uia_password(&self, method: Method, path: &str, body: Value) -> Response {
        self.client
            .uia_password(method, path, body, &self.user_id, &self.password)
            .await
    }
}

impl Response {
    /// The `errcode` of a Matrix error body.
    pub fn errcode(&self) -> Option<&str> {
        self.json["errcode"].as_str()
    }

    /// Asserts the status code.
    #[track_caller]
    pub fn assert_status(&self, status: u16) -> &Self {
        assert_eq!(self.status, status, "unexpected status: {self}");
        self
    }

    /// Asserts 200 and returns the JSON body.
    #[track_caller]
    pub fn ok(self) -> Value {
        self.assert_status(200);
        self.json
    }

    /// Asserts a Matrix error: this status, this errcode, and an `error` string (the spec says
    /// `errcode` and `error` MUST always be present).
    #[track_caller]
    pub fn assert_error(&self, status: u16, errcode: &str) -> &Self {
        self.assert_error_in(status, &[errcode])
    }

    /// Like [`Response::assert_error`], accepting any of `errcodes`.
    #[track_caller]
    pub fn assert_error_in(&self, status: u16, errcodes: &[&str]) -> &Self {
        assert!(
            self.status == status && self.errcode().is_some_and(|c| errcodes.contains(&c)),
            "expected {status} with errcode {}, got: {self}",
            errcodes.join(" or ")
        );
        assert!(
            self.json["error"].is_string(),
            "Matrix error without an `error` string: {self}"
        );
        self
    }

    /// Asserts a UIA 401 whose flows offer a flow of exactly `stages`, and returns its session.
    #[track_caller]
    pub fn uia_session(&self, stages: &[&str]) -> String {
        self.assert_status(401);
        let flows = self.json["flows"]
            .as_array()
            .unwrap_or_else(|| panic!("UIA 401 without a flows list: {self}"));
        let offered = flows.iter().any(|flow| {
            flow["stages"].as_array().is_some_and(|s| {
                s.iter()
                    .map(Value::as_str)
                    .eq(stages.iter().map(|x| Some(*x)))
            })
        });
        assert!(offered, "UIA flows do not offer {stages:?}: {self}");
        self.json["session"]
            .as_str()
            .unwrap_or_else(|| panic!("UIA 401 without a session: {self}"))
            .to_owned()
    }

    /// The value of a response header, if present and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

impl fmt::Display for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const MAX: usize = 2000;
        let mut end = self.text.len().min(MAX);
        while !self.text.is_char_boundary(end) {
            end -= 1;
        }
        let ellipsis = if end < self.text.len() { "..." } else { "" };
        write!(
            f,
            "{} -> {} {}{ellipsis}",
            self.request,
            self.status,
            &self.text[..end]
        )
    }
}

fn http_client(local_address: Option<IpAddr>) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .local_address(local_address)
        .build()
        .expect("reqwest client")
}

/// The body of an `m.login.password` login with an `m.id.user` identifier.
pub fn password_login_body(user: &str, password: &str) -> Value {
    json!({
        "type": "m.login.password",
        "identifier": { "type": "m.id.user", "user": user },
        "password": password,
    })
}

/// An `m.login.password` UIA auth dict.
pub fn password_auth(session: &str, user: &str, password: &str) -> Value {
    json!({
        "type": "m.login.password",
        "identifier": { "type": "m.id.user", "user": user },
        "password": password,
        "session": session,
    })
}

/// `body` with `auth` added (body must be a JSON object).
pub fn with_auth(mut body: Value, auth: Value) -> Value {
    merge(&mut body, json!({ "auth": auth }));
    body
}

fn merge(body: &mut Value, extra: Value) {
    let (Some(target), Value::Object(extra)) = (body.as_object_mut(), extra) else {
        panic!("merge: both sides must be JSON objects");
    };
    target.extend(extra);
}
