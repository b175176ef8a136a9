//! A stand-in for a homeserver older than Matrix v1.11 (spec: Server-Server API, "Content
//! Repository"): it answers the federation media endpoint with `M_UNRECOGNIZED` and serves
//! its media through the legacy `/_matrix/media/v3/download`, or answers it with a
//! `Location` elsewhere, as the spec lets a server do. Real HTTPS on loopback, with a
//! certificate of the federation's test CA. Tessera itself always answers with the file, so
//! only a stand-in can show that the other two answers are handled.

use std::{collections::HashMap, path::PathBuf, sync::Arc};

use axum::{
    Router,
    extract::{Path, Query, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};

/// The stand-in's server name; a federation started with its port resolves it.
pub const OLDER_SERVER_NAME: &str = "old.tessera.test";

/// How the stand-in answers the federation media endpoint for a file.
#[derive(Clone, Copy)]
pub enum Served {
    /// 404 `M_UNRECOGNIZED`; the file is at the legacy endpoint.
    Legacy,
    /// A multipart answer whose file part is a `Location` at `https://127.0.0.1:{port}/files/`.
    Location,
}

#[derive(Clone)]
pub struct OlderMedia {
    pub media_id: String,
    pub served: Served,
    pub content_type: String,
    pub filename: String,
    pub bytes: Vec<u8>,
}

pub struct OlderServer {
    pub port: u16,
    listener: std::net::TcpListener,
}

struct Files {
    port: u16,
    media: HashMap<String, OlderMedia>,
}

impl OlderServer {
    /// Takes a loopback port, so that servers can be told where the stand-in is before it
    /// serves.
    pub fn bind() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let port = listener.local_addr().expect("a local address").port();
        Self { port, listener }
    }

    /// Serves `media` until the test process ends, over TLS with `certificate` (its PEM file
    /// and key), which must name [`OLDER_SERVER_NAME`] and `127.0.0.1`.
    pub async fn serve(self, certificate: (PathBuf, PathBuf), media: Vec<OlderMedia>) {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let tls =
            axum_server::tls_rustls::RustlsConfig::from_pem_file(&certificate.0, &certificate.1)
                .await
                .expect("load the stand-in's certificate");
        let files = Arc::new(Files {
            port: self.port,
            media: media
                .into_iter()
                .map(|file| (file.media_id.clone(), file))
                .collect(),
        });
        let app = Router::new()
            .route(
                "/_matrix/federation/v1/media/download/{media_id}",
                get(federation_download),
            )
            .route(
                "/_matrix/media/v3/download/{server}/{media_id}",
                get(legacy_download),
            )
            .route("/files/{media_id}", get(located_file))
            .with_state(files);
        let server = axum_server::from_tcp_rustls(self.listener, tls);
        tokio::spawn(async move { server.serve(app.into_make_service()).await });
    }
}

fn matrix_error(status: StatusCode, errcode: &str, error: &str) -> Response {
    let body = serde_json::json!({ "errcode": errcode, "error": error }).to_string();
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn federation_download(
    State(files): State<Arc<Files>>,
    Path(media_id): Path<String>,
) -> Response {
    match files.media.get(&media_id) {
        Some(file) if matches!(file.served, Served::Location) => {
            let boundary = "older-server-boundary";
            let body = format!(
                "--{boundary}\r\nContent-Type: application/json\r\n\r\n{{}}\r\n\
                 --{boundary}\r\nLocation: https://127.0.0.1:{}/files/{media_id}\r\n\r\n\r\n\
                 --{boundary}--\r\n",
                files.port
            );
            (
                [(
                    header::CONTENT_TYPE,
                    format!("multipart/mixed; boundary={boundary}"),
                )],
                body,
            )
                .into_response()
        }
        _ => matrix_error(
            StatusCode::NOT_FOUND,
            "M_UNRECOGNIZED",
            "Unrecognized request",
        ),
    }
}

async fn legacy_download(
    State(files): State<Arc<Files>>,
    Path((server, media_id)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    // A server asking for media of this one must not let it ask back (spec: `allow_remote`).
    if query.get("allow_remote").map(String::as_str) != Some("false") {
        return matrix_error(
            StatusCode::BAD_REQUEST,
            "M_INVALID_PARAM",
            "a server must ask with allow_remote=false",
        );
    }
    match files.media.get(&media_id) {
        Some(file) if server == OLDER_SERVER_NAME && matches!(file.served, Served::Legacy) => {
            file_response(file)
        }
        _ => matrix_error(StatusCode::NOT_FOUND, "M_NOT_FOUND", "Not found"),
    }
}

async fn located_file(State(files): State<Arc<Files>>, Path(media_id): Path<String>) -> Response {
    match files.media.get(&media_id) {
        Some(file) if matches!(file.served, Served::Location) => file_response(file),
        _ => (StatusCode::NOT_FOUND, "no such file").into_response(),
    }
}

fn file_response(file: &OlderMedia) -> Response {
    (
        [
            (header::CONTENT_TYPE, file.content_type.clone()),
            (
                header::CONTENT_DISPOSITION,
                format!("inline; filename=\"{}\"", file.filename),
            ),
        ],
        file.bytes.clone(),
    )
        .into_response()
}
