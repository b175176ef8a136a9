//! The content repository: uploads (one step and reserved with /create), downloads, safety
//! headers, limits, thumbnails, the legacy endpoints' freeze, S3 storage and URL previews.

use std::{
    io::Cursor,
    net::SocketAddr,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use complement_tests::{
    Client, Method, Response, TestServer, User, json,
    media::{UPLOAD, encoded, get_bytes, gradient, pattern, upload, upload_raw},
    wait_until,
};
use image::{GenericImageView, ImageFormat};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};

const V1: &str = "/_matrix/client/v1/media";

async fn register_alice(server: &TestServer) -> User {
    server.client().register("alice", "alice-password-1").await
}

#[tokio::test]
async fn upload_and_download_are_byte_identical_with_safety_headers() {
    let server = TestServer::start().await;
    let alice = register_alice(&server).await;
    let bob = server.client().register("bob", "bob-password-1").await;

    let small = b"hello, media".to_vec();
    let id = upload(
        &server,
        &alice,
        small.clone(),
        "text/plain",
        Some("greeting.txt"),
    )
    .await;
    let media_id = id.split('/').nth(1).unwrap();
    assert!(media_id.len() >= 24, "media IDs are unguessable: {id}");
    assert!(id.starts_with(server.server_name()));

    // Any authenticated user may download it.
    let got = get_bytes(
        &server,
        &format!("{V1}/download/{id}"),
        Some(&bob.access_token),
    )
    .await;
    assert_eq!(got.status, 200);
    assert_eq!(got.bytes, small);
    assert_eq!(got.header("content-type"), "text/plain");
    assert_eq!(
        got.header("content-disposition"),
        "inline; filename=\"greeting.txt\""
    );
    assert!(
        got.header("content-security-policy")
            .starts_with("sandbox; default-src 'none'")
    );
    assert_eq!(got.header("x-content-type-options"), "nosniff");
    assert_eq!(got.header("cross-origin-resource-policy"), "cross-origin");

    // The file name in the path overrides the uploaded one, encoded per RFC 5987 when needed.
    let got = get_bytes(
        &server,
        &format!("{V1}/download/{id}/r%C3%A9sum%C3%A9.txt"),
        Some(&bob.access_token),
    )
    .await;
    assert_eq!(got.bytes, small);
    assert_eq!(
        got.header("content-disposition"),
        "inline; filename*=utf-8''r%C3%A9sum%C3%A9.txt"
    );

    // Types that a browser could run are never inline.
    let html = upload(
        &server,
        &alice,
        b"<script>alert(1)</script>".to_vec(),
        "text/html",
        None,
    )
    .await;
    let got = get_bytes(
        &server,
        &format!("{V1}/download/{html}"),
        Some(&bob.access_token),
    )
    .await;
    assert_eq!(got.header("content-disposition"), "attachment");
    assert_eq!(got.header("content-type"), "text/html");

    // 50 MB, streamed both ways.
    let large = pattern(50_000_000);
    let id = upload(
        &server,
        &alice,
        large.clone(),
        "application/octet-stream",
        None,
    )
    .await;
    let got = get_bytes(
        &server,
        &format!("{V1}/download/{id}"),
        Some(&bob.access_token),
    )
    .await;
    assert_eq!(got.status, 200);
    assert_eq!(got.header("content-length"), "50000000");
    assert!(
        got.bytes == large,
        "the 50 MB download differs from the upload"
    );
    assert_eq!(got.header("content-disposition"), "attachment");

    // Unknown media, foreign servers and malformed IDs.
    get_bytes(
        &server,
        &format!("{V1}/download/{}/nosuchmedia", server.server_name()),
        Some(&bob.access_token),
    )
    .await
    .assert_error(404, "M_NOT_FOUND");
    // Media of a server that cannot be reached: the failure is that server's (502).
    get_bytes(
        &server,
        &format!("{V1}/download/other.example/abcdef"),
        Some(&bob.access_token),
    )
    .await
    .assert_error(502, "M_UNKNOWN");
    get_bytes(
        &server,
        &format!("{V1}/download/{}/bad.id", server.server_name()),
        Some(&bob.access_token),
    )
    .await
    .assert_error(400, "M_INVALID_PARAM");
}

#[tokio::test]
async fn authenticated_endpoints_refuse_anonymous_requests() {
    let server = TestServer::start().await;
    let alice = register_alice(&server).await;
    let id = upload(&server, &alice, b"secret".to_vec(), "text/plain", None).await;
    for path in [
        format!("{V1}/download/{id}"),
        format!("{V1}/download/{id}/name.txt"),
        format!("{V1}/thumbnail/{id}?width=32&height=32"),
        format!("{V1}/config"),
        format!("{V1}/preview_url?url=https://example.org"),
    ] {
        get_bytes(&server, &path, None)
            .await
            .assert_error(401, "M_MISSING_TOKEN");
    }
    let anonymous = server.client();
    anonymous
        .request_bytes(Method::POST, UPLOAD, b"x".to_vec(), "text/plain")
        .await
        .assert_error(401, "M_MISSING_TOKEN");
    anonymous
        .post("/_matrix/media/v1/create", json!({}))
        .await
        .assert_error(401, "M_MISSING_TOKEN");
    // The federation media endpoints need X-Matrix request authentication.
    let media_id = id.split('/').nth(1).unwrap();
    for path in [
        format!("/_matrix/federation/v1/media/download/{media_id}"),
        format!("/_matrix/federation/v1/media/thumbnail/{media_id}?width=32&height=32"),
    ] {
        get_bytes(&server, &path, None)
            .await
            .assert_error(401, "M_UNAUTHORIZED");
    }
}

#[tokio::test]
async fn uploads_over_the_limit_are_refused() {
    let server = TestServer::builder()
        .set("media.max_upload_size", 100_000)
        .start()
        .await;
    let alice = register_alice(&server).await;
    let config = alice.client.get(&format!("{V1}/config")).await.ok();
    assert_eq!(config["m.upload.size"], 100_000);
    let legacy = alice.client.get("/_matrix/media/v3/config").await.ok();
    assert_eq!(legacy["m.upload.size"], 100_000);

    let (status, body) = upload_raw(
        &server,
        &alice,
        pattern(100_001),
        "application/octet-stream",
        None,
    )
    .await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (413, Some("M_TOO_LARGE")),
        "{body}"
    );
    // Without a Content-Length the limit is enforced while streaming.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..20).map(|_| Ok(pattern(10_000))).collect();
    let response = reqwest::Client::new()
        .post(format!("{}{UPLOAD}", server.base_url()))
        .bearer_auth(&alice.access_token)
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .expect("chunked upload");
    assert_eq!(response.status().as_u16(), 413);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["errcode"], "M_TOO_LARGE", "{body}");
    // Exactly at the limit is fine.
    upload(
        &server,
        &alice,
        pattern(100_000),
        "application/octet-stream",
        None,
    )
    .await;
}

#[tokio::test]
async fn legacy_endpoints_serve_only_media_from_before_the_freeze() {
    // The default: frozen, nothing uploaded on this server is served unauthenticated.
    let frozen = TestServer::start().await;
    let alice = register_alice(&frozen).await;
    let id = upload(&frozen, &alice, b"new media".to_vec(), "text/plain", None).await;
    for path in [
        format!("/_matrix/media/v3/download/{id}"),
        format!("/_matrix/media/v3/download/{id}/a.txt"),
        format!("/_matrix/media/v3/thumbnail/{id}?width=32&height=32"),
    ] {
        get_bytes(&frozen, &path, None)
            .await
            .assert_error(404, "M_NOT_FOUND");
    }
    // Still served through the authenticated endpoint.
    let got = get_bytes(
        &frozen,
        &format!("{V1}/download/{id}"),
        Some(&alice.access_token),
    )
    .await;
    assert_eq!(got.bytes, b"new media");

    // A freeze in the future: media uploaded before it is served without a token.
    let open = TestServer::builder()
        .set(
            "media.unauthenticated_media_cutoff_ms",
            32_503_680_000_000_i64,
        )
        .start()
        .await;
    let alice = register_alice(&open).await;
    let id = upload(
        &open,
        &alice,
        b"old media".to_vec(),
        "text/plain",
        Some("old.txt"),
    )
    .await;
    let got = get_bytes(&open, &format!("/_matrix/media/v3/download/{id}"), None).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.bytes, b"old media");
    assert_eq!(
        got.header("content-disposition"),
        "inline; filename=\"old.txt\""
    );
    assert_eq!(got.header("x-content-type-options"), "nosniff");
}

#[tokio::test]
async fn thumbnails_have_the_requested_bounds_and_are_never_upscaled() {
    let server = TestServer::start().await;
    let alice = register_alice(&server).await;
    let token = Some(alice.access_token.as_str());
    for (format, content_type) in [
        (ImageFormat::Png, "image/png"),
        (ImageFormat::Jpeg, "image/jpeg"),
    ] {
        let id = upload(
            &server,
            &alice,
            encoded(gradient(1000, 500), format),
            content_type,
            None,
        )
        .await;
        for (query, expected) in [
            ("width=96&height=96&method=crop", (96, 96)),
            ("width=32&height=32&method=crop", (32, 32)),
            ("width=64&height=64&method=crop", (96, 96)),
            ("width=64&height=50&method=crop", (64, 50)),
            ("width=320&height=240&method=scale", (320, 160)),
            ("width=640&height=480&method=scale", (640, 320)),
            ("width=800&height=600", (800, 400)),
        ] {
            // Twice: generated, then from the cache.
            for _ in 0..2 {
                let got = get_bytes(&server, &format!("{V1}/thumbnail/{id}?{query}"), token).await;
                assert_eq!(
                    got.status,
                    200,
                    "{query}: {}",
                    String::from_utf8_lossy(&got.bytes)
                );
                assert_eq!(got.header("content-type"), content_type, "{query}");
                let decoded = image::load_from_memory(&got.bytes).expect("a decodable thumbnail");
                assert_eq!(decoded.dimensions(), expected, "{content_type} {query}");
            }
        }
    }

    // Smaller than asked: the original itself.
    let small = encoded(gradient(50, 40), ImageFormat::Png);
    let id = upload(&server, &alice, small.clone(), "image/png", None).await;
    let got = get_bytes(
        &server,
        &format!("{V1}/thumbnail/{id}?width=96&height=96&method=crop"),
        token,
    )
    .await;
    assert_eq!(got.bytes, small);

    // Animated GIFs stay animated only when asked.
    let frames = (0..3u8).map(|i| {
        image::Frame::new(image::RgbaImage::from_pixel(
            400,
            200,
            image::Rgba([i * 80, 0, 0, 255]),
        ))
    });
    let mut gif = Vec::new();
    image::codecs::gif::GifEncoder::new(&mut gif)
        .encode_frames(frames)
        .unwrap();
    let id = upload(&server, &alice, gif, "image/gif", None).await;
    let got = get_bytes(
        &server,
        &format!("{V1}/thumbnail/{id}?width=96&height=96&method=crop&animated=true"),
        token,
    )
    .await;
    assert_eq!(got.header("content-type"), "image/gif");
    let decoder = image::codecs::gif::GifDecoder::new(Cursor::new(&got.bytes)).unwrap();
    let frames = image::AnimationDecoder::into_frames(decoder)
        .collect_frames()
        .unwrap();
    assert_eq!(frames.len(), 3);
    assert_eq!(frames[0].buffer().dimensions(), (96, 96));
    let got = get_bytes(
        &server,
        &format!("{V1}/thumbnail/{id}?width=96&height=96&method=crop&animated=false"),
        token,
    )
    .await;
    assert_eq!(got.header("content-type"), "image/png");

    // Content that is not an image this server reads: a clear error, and the server lives on.
    let id = upload(
        &server,
        &alice,
        b"definitely not a png".to_vec(),
        "image/png",
        None,
    )
    .await;
    get_bytes(
        &server,
        &format!("{V1}/thumbnail/{id}?width=32&height=32"),
        token,
    )
    .await
    .assert_error(400, "M_UNKNOWN");
    let id = upload(
        &server,
        &alice,
        b"%PDF-1.4".to_vec(),
        "application/pdf",
        None,
    )
    .await;
    get_bytes(
        &server,
        &format!("{V1}/thumbnail/{id}?width=32&height=32"),
        token,
    )
    .await
    .assert_error(400, "M_UNKNOWN");
    get_bytes(
        &server,
        &format!("{V1}/thumbnail/{id}?width=0&height=32"),
        token,
    )
    .await
    .assert_error(400, "M_UNKNOWN");
    get_bytes(
        &server,
        &format!("{V1}/thumbnail/{id}?width=32&height=32&method=stretch"),
        token,
    )
    .await
    .assert_error(400, "M_INVALID_PARAM");
    alice
        .client
        .get(&format!("{V1}/config"))
        .await
        .assert_status(200);
}

#[tokio::test]
async fn thumbnails_of_huge_images_are_refused() {
    let server = TestServer::builder()
        .set("media.max_image_pixels", 10_000)
        .start()
        .await;
    let alice = register_alice(&server).await;
    let id = upload(
        &server,
        &alice,
        encoded(gradient(200, 200), ImageFormat::Png),
        "image/png",
        None,
    )
    .await;
    get_bytes(
        &server,
        &format!("{V1}/thumbnail/{id}?width=32&height=32"),
        Some(&alice.access_token),
    )
    .await
    .assert_error(413, "M_TOO_LARGE");
}

fn upload_path(content_uri: &str) -> String {
    format!(
        "{UPLOAD}/{}",
        content_uri.strip_prefix("mxc://").expect("an mxc URI")
    )
}

#[tokio::test]
async fn async_upload_creates_then_uploads_once() {
    let server = TestServer::builder()
        .set("media.max_pending_uploads", 2)
        .start()
        .await;
    let alice = register_alice(&server).await;
    let bob = server.client().register("bob", "bob-password-1").await;

    let created = alice
        .client
        .post("/_matrix/media/v1/create", json!({}))
        .await
        .ok();
    let uri = created["content_uri"].as_str().unwrap().to_owned();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let expires = created["unused_expires_at"]
        .as_u64()
        .expect("unused_expires_at");
    assert!(expires > now_ms + 3_600_000, "{created}");
    let id = uri.strip_prefix("mxc://").unwrap().to_owned();

    // Not uploaded yet: downloads wait up to timeout_ms, then say so.
    get_bytes(
        &server,
        &format!("{V1}/download/{id}?timeout_ms=200"),
        Some(&bob.access_token),
    )
    .await
    .assert_error(504, "M_NOT_YET_UPLOADED");

    // Only its creator may upload to it.
    bob.client
        .request_bytes(
            Method::PUT,
            &upload_path(&uri),
            b"bob's".to_vec(),
            "text/plain",
        )
        .await
        .assert_error(403, "M_FORBIDDEN");

    // A download that is waiting gets the content as soon as it arrives.
    let waiting = {
        let path = format!("{V1}/download/{id}?timeout_ms=20000");
        let base = server.base_url();
        let token = bob.access_token.clone();
        tokio::spawn(async move {
            reqwest::Client::new()
                .get(format!("{base}{path}"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
        })
    };
    // Whether the download is already parked or still on its way, it must deliver the bytes.
    let put = alice
        .client
        .request_bytes(
            Method::PUT,
            &upload_path(&uri),
            b"async content".to_vec(),
            "text/plain",
        )
        .await;
    assert_eq!(put.ok(), json!({}));
    let response = waiting.await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.bytes().await.unwrap().as_ref(), b"async content");

    alice
        .client
        .request_bytes(
            Method::PUT,
            &upload_path(&uri),
            b"again".to_vec(),
            "text/plain",
        )
        .await
        .assert_error(409, "M_CANNOT_OVERWRITE_MEDIA");
    let got = get_bytes(
        &server,
        &format!("{V1}/download/{id}"),
        Some(&bob.access_token),
    )
    .await;
    assert_eq!(got.bytes, b"async content");

    // IDs that were never created.
    alice
        .client
        .request_bytes(
            Method::PUT,
            &format!("{UPLOAD}/{}/neverCreated123", server.server_name()),
            b"x".to_vec(),
            "text/plain",
        )
        .await
        .assert_error(404, "M_NOT_FOUND");

    // At most two pending uploads per user.
    for _ in 0..2 {
        alice
            .client
            .post("/_matrix/media/v1/create", json!({}))
            .await
            .assert_status(200);
    }
    alice
        .client
        .post("/_matrix/media/v1/create", json!({}))
        .await
        .assert_error(429, "M_LIMIT_EXCEEDED");
    bob.client
        .post("/_matrix/media/v1/create", json!({}))
        .await
        .assert_status(200);
}

#[tokio::test]
async fn media_id_creation_is_rate_limited() {
    let server = TestServer::builder()
        .rate_limit("media_create", 0.01, 2)
        .start()
        .await;
    let alice = register_alice(&server).await;
    for _ in 0..2 {
        alice
            .client
            .post("/_matrix/media/v1/create", json!({}))
            .await
            .assert_status(200);
    }
    let refused = alice
        .client
        .post("/_matrix/media/v1/create", json!({}))
        .await;
    refused.assert_error(429, "M_LIMIT_EXCEEDED");
    assert!(
        refused.json["retry_after_ms"]
            .as_u64()
            .is_some_and(|ms| ms > 0),
        "{refused}"
    );
}

#[tokio::test]
async fn unused_media_ids_expire() {
    let server = TestServer::builder()
        .set("media.unused_expiry_secs", 1)
        .start()
        .await;
    let alice = register_alice(&server).await;
    let created = alice
        .client
        .post("/_matrix/media/v1/create", json!({}))
        .await
        .ok();
    let uri = created["content_uri"].as_str().unwrap().to_owned();
    let id = uri.strip_prefix("mxc://").unwrap().to_owned();
    let token = alice.access_token.clone();
    wait_until(
        "the reserved media ID expires",
        Duration::from_secs(15),
        || async {
            let got = get_bytes(
                &server,
                &format!("{V1}/download/{id}?timeout_ms=0"),
                Some(&token),
            )
            .await;
            (got.status == 404).then_some(())
        },
    )
    .await;
    alice
        .client
        .request_bytes(
            Method::PUT,
            &upload_path(&uri),
            b"late".to_vec(),
            "text/plain",
        )
        .await
        .assert_error(404, "M_NOT_FOUND");
}

/// A tiny HTTP server for previews: `/page` is HTML with OpenGraph tags pointing at `/pic.png`,
/// `/redirect` redirects to `/page`.
async fn serve_pages() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let picture = encoded(gradient(60, 30), ImageFormat::Png);
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let picture = picture.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&request);
                let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
                let (status, content_type, body, extra) = match path.as_str() {
                    "/page" => (
                        "200 OK",
                        "text/html; charset=utf-8",
                        br#"<html><head><title>Ignored title</title>
                            <meta property="og:title" content="Tessera &amp; friends">
                            <meta name="description" content="A page served by the test">
                            <meta property="og:image" content="/pic.png"></head>
                            <body>hi</body></html>"#
                            .to_vec(),
                        String::new(),
                    ),
                    "/pic.png" => ("200 OK", "image/png", picture, String::new()),
                    "/redirect" => (
                        "302 Found",
                        "text/plain",
                        Vec::new(),
                        "Location: /page\r\n".to_owned(),
                    ),
                    _ => ("404 Not Found", "text/plain", b"no".to_vec(), String::new()),
                };
                let head = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n",
                    body.len()
                );
                let _ = socket.write_all(head.as_bytes()).await;
                let _ = socket.write_all(&body).await;
            });
        }
    });
    addr
}

async fn preview(user: &User, url: &str) -> Response {
    user.client
        .get(&format!(
            "{V1}/preview_url?url={}",
            complement_tests::enc(url)
        ))
        .await
}

#[tokio::test]
async fn url_previews_read_opengraph_and_store_the_image() {
    let pages = serve_pages().await;
    let server = TestServer::builder()
        .set("media.url_preview_enabled", true)
        .set(
            "media.url_preview_ip_range_whitelist",
            vec![toml::Value::from("127.0.0.0/8")],
        )
        .start()
        .await;
    let alice = register_alice(&server).await;
    let og = preview(&alice, &format!("http://{pages}/page")).await.ok();
    assert_eq!(og["og:title"], "Tessera & friends", "{og}");
    assert_eq!(og["og:description"], "A page served by the test", "{og}");
    assert_eq!(og["og:image:width"], 60, "{og}");
    let image = og["og:image"].as_str().expect("og:image");
    let id = image
        .strip_prefix("mxc://")
        .expect("og:image is an mxc URI");
    let got = get_bytes(
        &server,
        &format!("{V1}/download/{id}"),
        Some(&alice.access_token),
    )
    .await;
    assert_eq!(got.status, 200);
    assert_eq!(
        image::load_from_memory(&got.bytes).unwrap().dimensions(),
        (60, 30)
    );
    assert_eq!(og["matrix:image:size"], got.bytes.len());

    // Redirects are followed (and checked); the legacy endpoint answers the same.
    let redirected = preview(&alice, &format!("http://{pages}/redirect"))
        .await
        .ok();
    assert_eq!(redirected["og:title"], "Tessera & friends");
    let legacy = alice
        .client
        .get(&format!(
            "/_matrix/media/v3/preview_url?url={}",
            complement_tests::enc(&format!("http://{pages}/page"))
        ))
        .await
        .ok();
    assert_eq!(legacy["og:title"], "Tessera & friends");

    preview(&alice, &format!("http://{pages}/missing"))
        .await
        .assert_error(502, "M_UNKNOWN");
    preview(&alice, "ftp://example.org/file")
        .await
        .assert_error(400, "M_INVALID_PARAM");
}

#[tokio::test]
async fn url_previews_refuse_private_addresses() {
    let pages = serve_pages().await;
    let server = TestServer::builder()
        .set("media.url_preview_enabled", true)
        .start()
        .await;
    let alice = register_alice(&server).await;
    // A literal loopback address, and a name that resolves to one.
    preview(&alice, &format!("http://{pages}/page"))
        .await
        .assert_error(403, "M_FORBIDDEN");
    preview(&alice, &format!("http://localhost:{}/page", pages.port()))
        .await
        .assert_error(403, "M_FORBIDDEN");

    // Off by default.
    let off = TestServer::start().await;
    let bob = off.client().register("bob", "bob-password-1").await;
    preview(&bob, "https://example.org")
        .await
        .assert_error(404, "M_UNRECOGNIZED");
}

/// moto's S3-compatible server, from `$TESSERA_MOTO_SERVER` or the test venv.
struct S3Server {
    child: Child,
    endpoint: String,
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_s3() -> S3Server {
    let binary = std::env::var_os("TESSERA_MOTO_SERVER").map_or_else(
        || {
            PathBuf::from(std::env::var("HOME").expect("HOME"))
                .join(".cache/tessera/venv/bin/moto_server")
        },
        PathBuf::from,
    );
    assert!(
        binary.is_file(),
        "moto_server not found at {} (install with `pip install 'moto[server]'` into \
         ~/.cache/tessera/venv, as .ci/run does, or set TESSERA_MOTO_SERVER)",
        binary.display()
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(binary)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("cannot start moto_server");
    let server = S3Server {
        child,
        endpoint: format!("http://127.0.0.1:{port}"),
    };
    let http = reqwest::Client::new();
    wait_until("moto_server answers", Duration::from_secs(60), || async {
        http.get(&server.endpoint).send().await.ok().map(|_| ())
    })
    .await;
    let created = http
        .put(format!("{}/tessera-media", server.endpoint))
        .send()
        .await
        .expect("create bucket");
    assert!(
        created.status().is_success(),
        "bucket creation: {}",
        created.status()
    );
    server
}

#[tokio::test]
async fn s3_storage_round_trip() {
    let s3 = start_s3().await;
    let mut table = toml::Table::new();
    table.insert("bucket".into(), "tessera-media".into());
    table.insert("endpoint".into(), s3.endpoint.clone().into());
    table.insert("allow_http".into(), true.into());
    table.insert("access_key_id".into(), "testing".into());
    table.insert("secret_access_key".into(), "testing".into());
    table.insert("prefix".into(), "server-one".into());
    let server = TestServer::builder()
        .set("media.storage", "s3")
        .set("media.s3", table)
        .start()
        .await;
    let alice = register_alice(&server).await;
    let token = Some(alice.access_token.as_str());

    // Larger than one multipart part, so the multipart path is used.
    let large = pattern(12_000_000);
    let id = upload(
        &server,
        &alice,
        large.clone(),
        "application/octet-stream",
        None,
    )
    .await;
    let got = get_bytes(&server, &format!("{V1}/download/{id}"), token).await;
    assert_eq!(got.status, 200);
    assert!(
        got.bytes == large,
        "the S3 download differs from the upload"
    );

    let small = b"small object".to_vec();
    let id = upload(&server, &alice, small.clone(), "text/plain", None).await;
    assert_eq!(
        get_bytes(&server, &format!("{V1}/download/{id}"), token)
            .await
            .bytes,
        small
    );

    // The object really is in the bucket, under the prefix.
    let media_id = id.split('/').nth(1).unwrap();
    let listing = reqwest::get(format!(
        "{}/tessera-media?list-type=2&prefix=server-one/",
        s3.endpoint
    ))
    .await
    .unwrap()
    .text()
    .await
    .unwrap();
    assert!(listing.contains(media_id), "{listing}");

    let png = upload(
        &server,
        &alice,
        encoded(gradient(500, 500), ImageFormat::Png),
        "image/png",
        None,
    )
    .await;
    let got = get_bytes(
        &server,
        &format!("{V1}/thumbnail/{png}?width=96&height=96&method=crop"),
        token,
    )
    .await;
    assert_eq!(
        image::load_from_memory(&got.bytes).unwrap().dimensions(),
        (96, 96)
    );

    // An async upload lands in S3 as well.
    let created = alice
        .client
        .post("/_matrix/media/v1/create", json!({}))
        .await
        .ok();
    let uri = created["content_uri"].as_str().unwrap();
    alice
        .client
        .request_bytes(
            Method::PUT,
            &upload_path(uri),
            b"reserved".to_vec(),
            "text/plain",
        )
        .await
        .assert_status(200);
    let id = uri.strip_prefix("mxc://").unwrap();
    assert_eq!(
        get_bytes(&server, &format!("{V1}/download/{id}"), token)
            .await
            .bytes,
        b"reserved"
    );
}

#[tokio::test]
async fn media_survives_a_restart() {
    let mut server = TestServer::start().await;
    let alice = register_alice(&server).await;
    let id = upload(&server, &alice, b"durable".to_vec(), "text/plain", None).await;
    server.stop();
    server.run().await;
    let client: Client = server.client().with_token(&alice.access_token);
    client.get(&format!("{V1}/config")).await.assert_status(200);
    let got = get_bytes(
        &server,
        &format!("{V1}/download/{id}"),
        Some(&alice.access_token),
    )
    .await;
    assert_eq!(got.bytes, b"durable");
}
