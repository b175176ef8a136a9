//! Media across servers (spec: "Content repository", Server-Server API "Content
//! Repository"): a user of one server downloads and thumbnails media uploaded on another,
//! which is fetched once over federation and then served from the cache.

use complement_tests::{
    federation::{Federation, federated_server_name},
    media::{encoded, get_bytes, gradient, upload},
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
