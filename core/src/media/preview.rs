//! URL previews: fetching a page (size and time limits, no private or loopback addresses unless
//! the config allows them) and reading its OpenGraph data.
//!
//! Addresses are checked where the connection is made (`outbound_address`), plus a check of
//! literal IP hosts, which reqwest connects to without resolving. Redirects are followed by
//! hand so that every hop is checked the same way.

use std::{io::Cursor, net::IpAddr, sync::Arc, time::Duration};

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use reqwest::{StatusCode, header};
use serde_json::{Map, Value as JsonValue};
use url::Url;

use super::MediaError;
use crate::{
    config::MediaConfig,
    outbound_address::{AddressPolicy, GuardedResolver, PinnedAddresses, blocked_in},
};

/// Hops followed before giving up.
const MAX_REDIRECTS: usize = 5;
/// Text kept of a description or title.
const MAX_TEXT_CHARS: usize = 500;

pub struct PreviewImage {
    pub bytes: Bytes,
    pub content_type: String,
    pub dimensions: Option<(u32, u32)>,
}

pub struct Preview {
    pub og: Map<String, JsonValue>,
    pub image: Option<PreviewImage>,
}

pub struct Previewer {
    client: reqwest::Client,
    policy: Arc<AddressPolicy>,
    max_bytes: u64,
}

impl Previewer {
    pub fn new(config: &MediaConfig) -> Result<Self, MediaError> {
        let policy = Arc::new(AddressPolicy {
            allow_private: config.url_preview_allow_private,
            whitelist: config.url_preview_ip_range_whitelist.clone(),
        });
        let client = reqwest::Client::builder()
            .dns_resolver(Arc::new(GuardedResolver {
                policy: policy.clone(),
                pinned: PinnedAddresses::default(),
            }))
            // A proxy would make the connection, bypassing the address checks.
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(config.url_preview_timeout_secs))
            .user_agent(concat!(
                "Tessera/",
                env!("CARGO_PKG_VERSION"),
                " (URL preview)"
            ))
            .build()
            .map_err(|e| MediaError::Internal(format!("cannot build the preview client: {e}")))?;
        Ok(Self {
            client,
            policy,
            max_bytes: config.url_preview_max_bytes,
        })
    }

    /// Fetches `url` and reads its OpenGraph data; an image URL, or a page's `og:image`, is
    /// fetched too, for the caller to store.
    pub async fn fetch(&self, url: &str) -> Result<Preview, MediaError> {
        let url = Url::parse(url)
            .map_err(|e| MediaError::InvalidParam(format!("Not a valid URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(MediaError::InvalidParam(
                "Only http and https URLs can be previewed".to_owned(),
            ));
        }
        let (final_url, content_type, body) = self.get(url).await?;
        if content_type.starts_with("image/") {
            return Ok(Preview {
                og: Map::new(),
                image: Some(image(body, content_type)),
            });
        }
        if !(content_type.starts_with("text/html") || content_type.starts_with("application/xhtml"))
        {
            return Ok(Preview {
                og: Map::new(),
                image: None,
            });
        }
        let mut og = parse_html(&String::from_utf8_lossy(&body));
        let image_url = og
            .remove("og:image")
            .and_then(|v| v.as_str().and_then(|s| final_url.join(s).ok()));
        let image = match image_url {
            Some(image_url) => match self.get(image_url).await {
                Ok((_, content_type, body)) if content_type.starts_with("image/") => {
                    Some(image(body, content_type))
                }
                // The page's preview is still useful without its picture.
                Ok(_) | Err(_) => None,
            },
            None => None,
        };
        Ok(Preview { og, image })
    }

    /// GETs `url` following redirects: the final URL, its content type and up to `max_bytes`
    /// of its body.
    async fn get(&self, mut url: Url) -> Result<(Url, String, Bytes), MediaError> {
        for _ in 0..=MAX_REDIRECTS {
            self.check_literal_host(&url)?;
            let response = self
                .client
                .get(url.clone())
                .send()
                .await
                .map_err(|e| fetch_error(&url, &e))?;
            if response.status().is_redirection() {
                let location = response
                    .headers()
                    .get(header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|l| url.join(l).ok())
                    .ok_or_else(|| {
                        MediaError::PreviewFailed(format!("{url} redirects without a location"))
                    })?;
                url = location;
                continue;
            }
            if response.status() != StatusCode::OK {
                return Err(MediaError::PreviewFailed(format!(
                    "{url} answered {}",
                    response.status()
                )));
            }
            if response
                .content_length()
                .is_some_and(|len| len > self.max_bytes)
            {
                return Err(MediaError::TooLarge(format!(
                    "{url} is larger than the preview limit of {} bytes",
                    self.max_bytes
                )));
            }
            let content_type = response
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_ascii_lowercase();
            let mut body = BytesMut::new();
            let mut stream = response.bytes_stream();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| fetch_error(&url, &e))?;
                if (body.len() + chunk.len()) as u64 > self.max_bytes {
                    return Err(MediaError::TooLarge(format!(
                        "{url} is larger than the preview limit of {} bytes",
                        self.max_bytes
                    )));
                }
                body.extend_from_slice(&chunk);
            }
            return Ok((url, content_type, body.freeze()));
        }
        Err(MediaError::PreviewFailed(format!(
            "more than {MAX_REDIRECTS} redirects"
        )))
    }

    fn check_literal_host(&self, url: &Url) -> Result<(), MediaError> {
        let ip = match url.host() {
            Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip),
            Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip),
            Some(url::Host::Domain(_)) => return Ok(()),
            None => {
                return Err(MediaError::InvalidParam("The URL has no host".to_owned()));
            }
        };
        if self.policy.allows(ip) {
            Ok(())
        } else {
            Err(MediaError::Forbidden(format!(
                "{ip} is a private or reserved address; URL previews may not reach it"
            )))
        }
    }
}

fn fetch_error(url: &Url, error: &reqwest::Error) -> MediaError {
    if let Some(blocked) = blocked_in(error) {
        return MediaError::Forbidden(blocked.to_string());
    }
    if error.is_timeout() {
        return MediaError::PreviewFailed(format!("{url} did not answer in time"));
    }
    MediaError::PreviewFailed(format!("cannot fetch {url}: {error}"))
}

fn image(bytes: Bytes, content_type: String) -> PreviewImage {
    let dimensions = image::ImageReader::new(Cursor::new(&bytes))
        .with_guessed_format()
        .ok()
        .and_then(|r| r.into_dimensions().ok());
    PreviewImage {
        bytes,
        content_type,
        dimensions,
    }
}

/// OpenGraph properties of a page (`<meta property="og:...">`), with `og:title` and
/// `og:description` filled from `<title>` and `<meta name="description">` when missing.
pub fn parse_html(html: &str) -> Map<String, JsonValue> {
    let mut og = Map::new();
    let Ok(dom) = tl::parse(html, tl::ParserOptions::default()) else {
        return og;
    };
    let parser = dom.parser();
    let mut description = None;
    for tag in dom
        .query_selector("meta")
        .into_iter()
        .flatten()
        .filter_map(|handle| handle.get(parser)?.as_tag())
    {
        let attr = |name: &str| {
            tag.attributes()
                .get(name)
                .flatten()
                .map(|v| decode_entities(&v.as_utf8_str()))
        };
        let Some(content) = attr("content") else {
            continue;
        };
        let key = attr("property").or_else(|| attr("name"));
        match key {
            Some(key) if key.starts_with("og:") => {
                og.entry(key).or_insert_with(|| truncate(&content).into());
            }
            Some(key) if key.eq_ignore_ascii_case("description") => {
                description.get_or_insert(content);
            }
            _ => {}
        }
    }
    if !og.contains_key("og:title")
        && let Some(title) = dom
            .query_selector("title")
            .and_then(|mut it| it.next())
            .and_then(|handle| handle.get(parser))
            .map(|node| decode_entities(node.inner_text(parser).trim()))
            .filter(|t| !t.is_empty())
    {
        og.insert("og:title".to_owned(), truncate(&title).into());
    }
    if !og.contains_key("og:description")
        && let Some(description) = description
    {
        og.insert("og:description".to_owned(), truncate(&description).into());
    }
    og
}

fn truncate(text: &str) -> String {
    text.chars().take(MAX_TEXT_CHARS).collect()
}

/// The HTML character references pages commonly use in titles and descriptions.
fn decode_entities(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find('&') {
        out.push_str(&rest[..start]);
        rest = &rest[start..];
        let decoded = rest.find(';').filter(|&end| end <= 10).and_then(|end| {
            let entity = &rest[1..end];
            let ch = match entity {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                "nbsp" => Some('\u{a0}'),
                _ => entity.strip_prefix('#').and_then(|num| {
                    let code = match num.strip_prefix(['x', 'X']) {
                        Some(hex) => u32::from_str_radix(hex, 16).ok(),
                        None => num.parse().ok(),
                    };
                    code.and_then(char::from_u32)
                }),
            };
            ch.map(|ch| (ch, end))
        });
        match decoded {
            Some((ch, end)) => {
                out.push(ch);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opengraph_with_fallbacks() {
        let og = parse_html(
            r#"<html><head><title>Fish &amp; Chips</title>
               <meta name="description" content="A &quot;classic&quot;">
               <meta property="og:image" content="/pic.png">
               <meta property="og:type" content="article"></head></html>"#,
        );
        assert_eq!(og["og:title"], "Fish & Chips");
        assert_eq!(og["og:description"], "A \"classic\"");
        assert_eq!(og["og:image"], "/pic.png");
        assert_eq!(og["og:type"], "article");
        let og = parse_html(r#"<meta property="og:title" content="OG"><title>T</title>"#);
        assert_eq!(og["og:title"], "OG");
    }
}
