//! Helpers of the content repository tests: uploads and downloads over plain HTTP (the bodies
//! are bytes, not JSON), and test images.

use std::{io::Cursor, time::Duration};

use image::{DynamicImage, ImageFormat, RgbImage};

use crate::{TestServer, User};

/// The legacy upload endpoint (not frozen: uploads are not downloads).
pub const UPLOAD: &str = "/_matrix/media/v3/upload";

/// What a download returned, with the body as bytes.
pub struct Download {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub bytes: Vec<u8>,
}

impl Download {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("no {name} header in {:?}", self.headers))
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.bytes).unwrap_or_default()
    }

    #[track_caller]
    pub fn assert_error(&self, status: u16, errcode: &str) {
        assert_eq!(
            (self.status, self.json()["errcode"].as_str()),
            (status, Some(errcode)),
            "{}",
            String::from_utf8_lossy(&self.bytes)
        );
    }
}

pub async fn get_bytes(server: &TestServer, path: &str, token: Option<&str>) -> Download {
    let mut request = reqwest::Client::new().get(format!("{}{path}", server.base_url()));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request
        .timeout(Duration::from_secs(120))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    Download {
        status: response.status().as_u16(),
        headers: response.headers().clone(),
        bytes: response.bytes().await.expect("download body").to_vec(),
    }
}

pub async fn upload_raw(
    server: &TestServer,
    user: &User,
    body: Vec<u8>,
    content_type: &str,
    filename: Option<&str>,
) -> (u16, serde_json::Value) {
    let query = filename.map_or_else(String::new, |f| format!("?filename={}", crate::enc(f)));
    let response = reqwest::Client::new()
        .post(format!("{}{UPLOAD}{query}", server.base_url()))
        .bearer_auth(&user.access_token)
        .header("content-type", content_type)
        .body(body)
        .timeout(Duration::from_secs(120))
        .send()
        .await
        .expect("upload");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or_default())
}

/// Uploads and returns `server/mediaId` (the mxc URI without its scheme).
pub async fn upload(
    server: &TestServer,
    user: &User,
    body: Vec<u8>,
    content_type: &str,
    filename: Option<&str>,
) -> String {
    let (status, json) = upload_raw(server, user, body, content_type, filename).await;
    assert_eq!(status, 200, "{json}");
    let uri = json["content_uri"].as_str().expect("content_uri");
    uri.strip_prefix("mxc://").expect("an mxc URI").to_owned()
}

pub fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

pub fn encoded(image: DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut bytes = Vec::new();
    image
        .write_to(&mut Cursor::new(&mut bytes), format)
        .unwrap();
    bytes
}

pub fn gradient(width: u32, height: u32) -> DynamicImage {
    DynamicImage::ImageRgb8(RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, 128])
    }))
}
