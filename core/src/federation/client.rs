//! The outbound federation client: one connection pool for every destination, TLS against
//! the system roots plus `federation.extra_ca_files`, the address policy checked where each
//! connection is made, and requests signed with `X-Matrix`.

use std::{net::IpAddr, sync::Arc, time::Duration};

use bytes::{Bytes, BytesMut};
use futures::{StreamExt, stream::BoxStream};
use http::{HeaderValue, StatusCode, header};
use ruma::{
    OwnedServerName, ServerName,
    api::{
        IncomingResponseExt, OutgoingRequest, OutgoingRequestExt,
        federation::authentication::{ServerSignatures, XMatrixSigningInput},
        path_builder::SinglePath,
    },
};
use serde::Deserialize;

use super::{
    FederationError,
    discovery::{Destination, Discovery},
};
use crate::{
    Config,
    keys::SigningKey,
    outbound_address::{AddressPolicy, GuardedResolver, PinnedAddresses, blocked_in},
};

/// Largest response body read whole from another server (a `send_join` of a big room is tens
/// of MB); media is streamed instead.
const MAX_RESPONSE_BYTES: usize = 128 * 1024 * 1024;
/// Largest error body read from another server.
const MAX_ERROR_BYTES: usize = 64 * 1024;

pub struct FederationClient {
    server_name: OwnedServerName,
    signing_key: Arc<SigningKey>,
    http: reqwest::Client,
    pinned: PinnedAddresses,
    policy: Arc<AddressPolicy>,
    discovery: Discovery,
}

impl FederationClient {
    pub fn new(config: Arc<Config>, signing_key: Arc<SigningKey>) -> Result<Self, FederationError> {
        let federation = &config.federation;
        let policy = Arc::new(AddressPolicy {
            allow_private: federation.allow_private_addresses,
            whitelist: federation.ip_range_whitelist.clone(),
        });
        let pinned = PinnedAddresses::default();
        let setup_error = |reason: String| FederationError::Request {
            server: config.server_name.clone(),
            reason,
        };
        let mut builder = reqwest::Client::builder()
            .dns_resolver(Arc::new(GuardedResolver {
                policy: policy.clone(),
                pinned: pinned.clone(),
            }))
            // A proxy would make the connection, bypassing the address checks.
            .no_proxy()
            .redirect(reqwest::redirect::Policy::limited(3))
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(federation.request_timeout_secs))
            .pool_idle_timeout(Duration::from_secs(90))
            .user_agent(concat!("Tessera/", env!("CARGO_PKG_VERSION")));
        for path in &federation.extra_ca_files {
            let pem = std::fs::read(path)
                .map_err(|e| setup_error(format!("cannot read {}: {e}", path.display())))?;
            let certificates = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| setup_error(format!("{} is not PEM: {e}", path.display())))?;
            for certificate in certificates {
                builder = builder.add_root_certificate(certificate);
            }
        }
        let http = builder
            .build()
            .map_err(|e| setup_error(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            server_name: config.server_name.clone(),
            signing_key,
            discovery: Discovery::new(federation.clone(), http.clone()),
            http,
            pinned,
            policy,
        })
    }

    /// Sends a signed request of the Server-Server API and parses the response.
    pub async fn send<R>(
        &self,
        destination: &ServerName,
        request: R,
    ) -> Result<R::IncomingResponse, FederationError>
    where
        R: OutgoingRequest<Authentication = ServerSignatures, PathBuilder = SinglePath>,
    {
        let (target, request) = self.signed(destination, request).await?;
        let answer = self
            .execute(destination, &target, request, MAX_RESPONSE_BYTES)
            .await?;
        let mut response = http::Response::builder().status(answer.status);
        if let Some(content_type) = answer.headers.get(header::CONTENT_TYPE) {
            response = response.header(header::CONTENT_TYPE, content_type);
        }
        let response = response
            .body(&answer.body[..])
            .map_err(|e| bad_response(destination, e.to_string()))?;
        R::IncomingResponse::try_from_http_response(response)
            .map_err(|e| bad_response(destination, e.to_string()))
    }

    /// Sends a signed request of the Server-Server API and answers the success's headers and
    /// its body as it arrives (federation media, which may be large).
    pub async fn send_streamed<R>(
        &self,
        destination: &ServerName,
        request: R,
    ) -> Result<Streamed, FederationError>
    where
        R: OutgoingRequest<Authentication = ServerSignatures, PathBuilder = SinglePath>,
    {
        let (target, request) = self.signed(destination, request).await?;
        self.open(destination, addressed(&target, request)).await
    }

    /// The request signed for `destination`, and where it goes.
    async fn signed<R>(
        &self,
        destination: &ServerName,
        request: R,
    ) -> Result<(Destination, http::Request<Vec<u8>>), FederationError>
    where
        R: OutgoingRequest<Authentication = ServerSignatures, PathBuilder = SinglePath>,
    {
        let target = self.destination(destination).await?;
        let signing = XMatrixSigningInput::new(
            self.server_name.clone(),
            destination.to_owned(),
            self.signing_key.pair(),
        );
        let request = request
            .try_into_http_request::<Vec<u8>>(&target.base_url(), signing, ())
            .map_err(|e| FederationError::Request {
                server: destination.to_owned(),
                reason: e.to_string(),
            })?;
        Ok((target, request))
    }

    /// An unauthenticated GET (the key endpoints), answering the JSON body.
    pub async fn get_json(
        &self,
        destination: &ServerName,
        path: &str,
    ) -> Result<Bytes, FederationError> {
        let target = self.destination(destination).await?;
        let request = http::Request::get(format!("{}{path}", target.base_url()))
            .body(Vec::new())
            .map_err(|e| FederationError::Request {
                server: destination.to_owned(),
                reason: e.to_string(),
            })?;
        Ok(self
            .execute(destination, &target, request, MAX_RESPONSE_BYTES)
            .await?
            .body)
    }

    /// An unauthenticated POST of JSON (the notary key query).
    pub async fn post_json(
        &self,
        destination: &ServerName,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<Bytes, FederationError> {
        let target = self.destination(destination).await?;
        let request = http::Request::post(format!("{}{path}", target.base_url()))
            .header(header::CONTENT_TYPE, "application/json")
            .body(body.to_string().into_bytes())
            .map_err(|e| FederationError::Request {
                server: destination.to_owned(),
                reason: e.to_string(),
            })?;
        Ok(self
            .execute(destination, &target, request, MAX_RESPONSE_BYTES)
            .await?
            .body)
    }

    /// Discovers where `destination` is and pins discovered addresses for the connection.
    async fn destination(&self, destination: &ServerName) -> Result<Destination, FederationError> {
        if destination == self.server_name {
            return Err(FederationError::Request {
                server: destination.to_owned(),
                reason: "a server does not send federation requests to itself".to_owned(),
            });
        }
        let target = self.discovery.resolve(destination, &self.policy).await?;
        if let Some(addresses) = &target.addresses {
            self.pinned
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .insert(target.tls_name.clone(), addresses.clone());
        } else if let Ok(ip) = target.tls_name.parse::<IpAddr>()
            && !self.policy.allows(ip)
        {
            // reqwest connects to IP literals without asking the resolver.
            return Err(FederationError::Unreachable {
                server: destination.to_owned(),
                reason: format!(
                    "{ip} is a private or reserved address, which federation may not reach"
                ),
            });
        }
        Ok(target)
    }

    /// Sends a request to a discovered destination and reads at most `limit` bytes of the
    /// answer; a non-success status becomes `Remote`.
    async fn execute(
        &self,
        server: &ServerName,
        target: &Destination,
        request: http::Request<Vec<u8>>,
        limit: usize,
    ) -> Result<Answer, FederationError> {
        self.read(server, addressed(target, request), limit).await
    }

    /// Sends a request and reads at most `limit` bytes of the answer; a non-success status
    /// becomes `Remote`.
    async fn read(
        &self,
        server: &ServerName,
        request: http::Request<Vec<u8>>,
        limit: usize,
    ) -> Result<Answer, FederationError> {
        let (status, headers, response) = self.respond(server, request).await?;
        let body = read_body(server, response, limit).await?;
        if !status.is_success() {
            return Err(remote_error(server, status, &body));
        }
        Ok(Answer {
            status,
            headers,
            body,
        })
    }

    /// Sends a request; a success is answered with its body as it arrives, anything else
    /// becomes `Remote` (its error body read, within a small limit).
    async fn open(
        &self,
        server: &ServerName,
        request: http::Request<Vec<u8>>,
    ) -> Result<Streamed, FederationError> {
        let (status, headers, response) = self.respond(server, request).await?;
        if !status.is_success() {
            let body = read_body(server, response, MAX_ERROR_BYTES).await?;
            return Err(remote_error(server, status, &body));
        }
        let owned = server.to_owned();
        let body = response
            .bytes_stream()
            .map(move |chunk| chunk.map_err(|e| unreachable(&owned, &e)))
            .boxed();
        Ok(Streamed { headers, body })
    }

    async fn respond(
        &self,
        server: &ServerName,
        request: http::Request<Vec<u8>>,
    ) -> Result<(StatusCode, http::HeaderMap, reqwest::Response), FederationError> {
        let request =
            reqwest::Request::try_from(request.map(reqwest::Body::from)).map_err(|e| {
                FederationError::Request {
                    server: server.to_owned(),
                    reason: e.to_string(),
                }
            })?;
        let response = self
            .http
            .execute(request)
            .await
            .map_err(|e| unreachable(server, &e))?;
        Ok((response.status(), response.headers().clone(), response))
    }

    /// `mxc://{destination}/{media_id}` through the unauthenticated media endpoint of servers
    /// older than Matrix v1.11, which lack the federation one.
    pub async fn legacy_media(
        &self,
        destination: &ServerName,
        media_id: &str,
        timeout: Duration,
    ) -> Result<Streamed, FederationError> {
        let target = self.destination(destination).await?;
        // `allow_remote=false`: the server answers for its own media only, so two servers
        // cannot send each other round in a loop.
        let url = format!(
            "{}/_matrix/media/v3/download/{destination}/{media_id}?allow_remote=false&allow_redirect=true&timeout_ms={}",
            target.base_url(),
            timeout.as_millis()
        );
        let request =
            http::Request::get(url)
                .body(Vec::new())
                .map_err(|e| FederationError::Request {
                    server: destination.to_owned(),
                    reason: e.to_string(),
                })?;
        self.open(destination, addressed(&target, request)).await
    }

    /// A URL that `server` named as where its media is (the `Location` of a federation
    /// media answer), its address checked like any other.
    pub async fn located_media(
        &self,
        server: &ServerName,
        url: &str,
    ) -> Result<Streamed, FederationError> {
        let request_error = |reason: String| FederationError::Request {
            server: server.to_owned(),
            reason,
        };
        let parsed = url::Url::parse(url).map_err(|e| request_error(format!("{url}: {e}")))?;
        if !matches!(parsed.scheme(), "https" | "http") {
            return Err(request_error(format!("{url} is not an HTTP(S) URL")));
        }
        // reqwest connects to IP literals without asking the resolver, which checks names.
        let literal = match parsed.host() {
            Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
            _ => None,
        };
        if let Some(ip) = literal
            && !self.policy.allows(ip)
        {
            return Err(FederationError::Unreachable {
                server: server.to_owned(),
                reason: format!(
                    "{url}: {ip} is a private or reserved address, which federation may not reach"
                ),
            });
        }
        let request = http::Request::get(url)
            .body(Vec::new())
            .map_err(|e| request_error(e.to_string()))?;
        self.open(server, request).await
    }
}

/// The request with the `Host` the destination expects (its server name, not the address).
fn addressed(target: &Destination, mut request: http::Request<Vec<u8>>) -> http::Request<Vec<u8>> {
    if let Ok(host) = HeaderValue::from_str(&target.host_header) {
        request.headers_mut().insert(header::HOST, host);
    }
    request
}

/// Reads at most `limit` bytes of a body.
async fn read_body(
    server: &ServerName,
    response: reqwest::Response,
    limit: usize,
) -> Result<Bytes, FederationError> {
    let too_large = || bad_response(server, format!("the response exceeds {limit} bytes"));
    if response
        .content_length()
        .is_some_and(|len| len > limit as u64)
    {
        return Err(too_large());
    }
    let mut body = BytesMut::new();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| unreachable(server, &e))?;
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// A successful answer whose body is read as it arrives.
pub struct Streamed {
    pub headers: http::HeaderMap,
    pub body: BoxStream<'static, Result<Bytes, FederationError>>,
}

impl Streamed {
    pub fn header(&self, name: header::HeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A successful answer of another server, read whole.
struct Answer {
    status: StatusCode,
    headers: http::HeaderMap,
    body: Bytes,
}

fn unreachable(server: &ServerName, error: &reqwest::Error) -> FederationError {
    let reason = if let Some(blocked) = blocked_in(error) {
        blocked.to_string()
    } else if error.is_timeout() {
        "the request timed out".to_owned()
    } else {
        // The chain names the actual cause (refused, TLS, DNS), which the top error does not.
        let mut reason = error.to_string();
        let mut source = std::error::Error::source(error);
        while let Some(cause) = source {
            reason = format!("{reason}: {cause}");
            source = cause.source();
        }
        reason
    };
    FederationError::Unreachable {
        server: server.to_owned(),
        reason,
    }
}

fn bad_response(server: &ServerName, reason: String) -> FederationError {
    FederationError::BadResponse {
        server: server.to_owned(),
        reason,
    }
}

fn remote_error(server: &ServerName, status: StatusCode, body: &[u8]) -> FederationError {
    #[derive(Deserialize)]
    struct MatrixError {
        errcode: String,
        #[serde(default)]
        error: String,
    }
    let (errcode, message) = match serde_json::from_slice::<MatrixError>(body) {
        Ok(e) => (e.errcode, e.error),
        Err(_) => (
            "M_UNKNOWN".to_owned(),
            String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
        ),
    };
    FederationError::Remote {
        server: server.to_owned(),
        status,
        errcode,
        message,
    }
}
