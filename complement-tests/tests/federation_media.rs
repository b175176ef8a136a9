//! Media across servers (spec: "Content repository", Server-Server API "Content
//! Repository"): a user of one server downloads and thumbnails media uploaded on another,
//! which is fetched once over federation and then served from the cache.

use complement_tests::{
    ServerBuilder, User,
    federation::{Federation, federated_server_name},
    media::{encoded, get_bytes, gradient, pattern, upload},
    older_server::{OLDER_SERVER_NAME, OlderMedia, OlderServer, Served},
};
use image::{GenericImageView, ImageFormat};

const PASSWORD: &str = "federation-media-pw";
const V1: &str = "/_matrix/client/v1/media";

#[tokio::test]
async fn remote_media_is_fetched_cached_and_thumbnailed() {
    let mut federation = Federation::start(2).await;
    let alice = federation.register(0, "alice", PASSWORD).await;
    let bob = federation.register(1, "bob", PASSWORD).await;
    let png = encoded(gradient(640, 480), ImageFormat::Png);
    let mxc = upload(
        &federation.servers[0],
        &alice,
        png.clone(),
        "image/png",
        Some("holiday.png"),
    )
    .await;
    assert!(mxc.starts_with(&federated_server_name(0)), "{mxc}");

    // Bob's server fetches it from Alice's: the same bytes, type and name.
    let got = get_bytes(
        &federation.servers[1],
        &format!("{V1}/download/{mxc}"),
        Some(&bob.access_token),
    )
    .await;
    assert_eq!(got.status, 200, "{}", String::from_utf8_lossy(&got.bytes));
    assert_eq!(got.bytes, png);
    assert_eq!(got.header("content-type"), "image/png");
    assert!(
        got.header("content-disposition").contains("holiday.png"),
        "{:?}",
        got.headers
    );

    // A thumbnail of it, made on Bob's server.
    let thumb = get_bytes(
        &federation.servers[1],
        &format!("{V1}/thumbnail/{mxc}?width=64&height=64&method=scale"),
        Some(&bob.access_token),
    )
    .await;
    assert_eq!(
        thumb.status,
        200,
        "{}",
        String::from_utf8_lossy(&thumb.bytes)
    );
    let decoded = image::load_from_memory(&thumb.bytes).expect("a decodable thumbnail");
    // Scaling is served at the smallest configured size that covers the request (320x240).
    assert_eq!(decoded.dimensions(), (320, 240));

    // With Alice's server down, the cached copy is still served.
    federation.servers[0].stop();
    let cached = get_bytes(
        &federation.servers[1],
        &format!("{V1}/download/{mxc}"),
        Some(&bob.access_token),
    )
    .await;
    assert_eq!(cached.status, 200);
    assert_eq!(cached.bytes, png);
    // Media never fetched is not available while its server is down: 502, not a made-up 404.
    let unknown = format!("{}/NeverFetched123", federated_server_name(0));
    get_bytes(
        &federation.servers[1],
        &format!("{V1}/download/{unknown}"),
        Some(&bob.access_token),
    )
    .await
    .assert_error(502, "M_UNKNOWN");
}

#[tokio::test]
async fn unknown_remote_media_is_not_found() {
    let federation = Federation::start(2).await;
    let bob = federation.register(1, "bob", PASSWORD).await;
    let unknown = format!("{}/NoSuchMedia123", federated_server_name(0));
    get_bytes(
        &federation.servers[1],
        &format!("{V1}/download/{unknown}"),
        Some(&bob.access_token),
    )
    .await
    .assert_error(404, "M_NOT_FOUND");
    // The federation endpoint itself refuses unsigned requests.
    let response = federation
        .https_client()
        .get(format!(
            "{}/_matrix/federation/v1/media/download/NoSuchMedia123",
            federation.federation_url(0)
        ))
        .send()
        .await
        .expect("the federation listener answers");
    assert_eq!(response.status().as_u16(), 401);
}

fn older_media(media_id: &str, served: Served, bytes: Vec<u8>) -> OlderMedia {
    OlderMedia {
        media_id: media_id.to_owned(),
        served,
        content_type: "image/png".to_owned(),
        filename: format!("{media_id}.png"),
        bytes,
    }
}

/// One Tessera server (its configuration adjusted by `configure`) beside an older server
/// serving `media`, and a user of the Tessera server.
async fn beside_an_older_server(
    media: Vec<OlderMedia>,
    configure: impl Fn(usize, ServerBuilder) -> ServerBuilder,
) -> (Federation, User) {
    let older = OlderServer::bind();
    let federation =
        Federation::start_with_peers(1, &[(OLDER_SERVER_NAME, older.port)], configure).await;
    older
        .serve(
            federation.certificate(&[OLDER_SERVER_NAME, "127.0.0.1"]),
            media,
        )
        .await;
    let bob = federation.register(0, "bob", PASSWORD).await;
    (federation, bob)
}

#[tokio::test]
async fn media_of_older_servers_is_fetched_through_the_legacy_endpoint_or_a_location() {
    // Spec: Server-Server API, "Content Repository": a server without the federation media
    // endpoint answers M_UNRECOGNIZED, and the legacy `/_matrix/media/v3/download` (with
    // `allow_remote=false`) serves its media; a server may answer with a `Location` instead
    // of the file, which the requesting server follows.
    let legacy_png = encoded(gradient(64, 48), ImageFormat::Png);
    let located_png = encoded(gradient(32, 32), ImageFormat::Png);
    let (federation, bob) = beside_an_older_server(
        vec![
            older_media("legacyPicture", Served::Legacy, legacy_png.clone()),
            older_media("locatedPicture", Served::Location, located_png.clone()),
        ],
        |_, builder| builder.set("federation.allow_private_addresses", true),
    )
    .await;
    for (media_id, png) in [
        ("legacyPicture", legacy_png),
        ("locatedPicture", located_png),
    ] {
        let got = get_bytes(
            &federation.servers[0],
            &format!("{V1}/download/{OLDER_SERVER_NAME}/{media_id}"),
            Some(&bob.access_token),
        )
        .await;
        assert_eq!(got.status, 200, "{}", String::from_utf8_lossy(&got.bytes));
        assert_eq!(got.bytes, png, "{media_id}");
        assert_eq!(got.header("content-type"), "image/png");
        assert!(
            got.header("content-disposition")
                .contains(&format!("{media_id}.png")),
            "{:?}",
            got.headers
        );
    }
    // Media the older server does not have stays a 404.
    get_bytes(
        &federation.servers[0],
        &format!("{V1}/download/{OLDER_SERVER_NAME}/neverUploaded"),
        Some(&bob.access_token),
    )
    .await
    .assert_error(404, "M_NOT_FOUND");
}

#[tokio::test]
async fn a_location_at_a_private_address_is_not_followed() {
    // The stand-in's `Location` is on loopback; a server that may not reach private addresses
    // refuses to follow it (the stand-in's own name resolves through the test's override).
    let png = encoded(gradient(32, 32), ImageFormat::Png);
    let (federation, bob) = beside_an_older_server(
        vec![older_media("locatedPicture", Served::Location, png)],
        |_, builder| builder,
    )
    .await;
    let refused = get_bytes(
        &federation.servers[0],
        &format!("{V1}/download/{OLDER_SERVER_NAME}/locatedPicture"),
        Some(&bob.access_token),
    )
    .await;
    refused.assert_error(502, "M_UNKNOWN");
    let error = String::from_utf8_lossy(&refused.bytes).into_owned();
    assert!(error.contains("private or reserved address"), "{error}");
}

#[tokio::test]
async fn media_of_an_older_server_over_the_size_limit_is_refused() {
    let png = encoded(gradient(256, 256), ImageFormat::Png);
    let limit = png.len() - 1;
    let (federation, bob) = beside_an_older_server(
        vec![older_media("bigPicture", Served::Legacy, png)],
        move |_, builder| builder.set("media.max_upload_size", limit as i64),
    )
    .await;
    get_bytes(
        &federation.servers[0],
        &format!("{V1}/download/{OLDER_SERVER_NAME}/bigPicture"),
        Some(&bob.access_token),
    )
    .await
    .assert_error(502, "M_UNKNOWN");
}

#[tokio::test]
async fn a_large_remote_file_arrives_byte_identical() {
    // The federation answer is read as it arrives and written to the store in parts: a file
    // of many chunks, whose bytes must come through unchanged.
    let federation = Federation::start(2).await;
    let alice = federation.register(0, "alice", PASSWORD).await;
    let bob = federation.register(1, "bob", PASSWORD).await;
    let file = pattern(30 * 1024 * 1024 + 7);
    let mxc = upload(
        &federation.servers[0],
        &alice,
        file.clone(),
        "application/octet-stream",
        Some("big.bin"),
    )
    .await;
    let got = get_bytes(
        &federation.servers[1],
        &format!("{V1}/download/{mxc}"),
        Some(&bob.access_token),
    )
    .await;
    assert_eq!(
        got.status,
        200,
        "{}",
        String::from_utf8_lossy(&got.bytes[..200.min(got.bytes.len())])
    );
    assert_eq!(got.bytes.len(), file.len());
    assert!(got.bytes == file, "the bytes differ");
}
