//! How served content is labelled (spec: "Serving inline content"): `inline` only for the types
//! browsers cannot turn into script, `attachment` for everything else, and the file name encoded
//! per RFC 6266 / RFC 5987.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// The spec's list of types safe to serve inline.
const INLINE_TYPES: [&str; 26] = [
    "text/css",
    "text/plain",
    "text/csv",
    "application/json",
    "application/ld+json",
    "image/jpeg",
    "image/gif",
    "image/png",
    "image/apng",
    "image/webp",
    "image/avif",
    "video/mp4",
    "video/webm",
    "video/ogg",
    "video/quicktime",
    "audio/mp4",
    "audio/webm",
    "audio/aac",
    "audio/mpeg",
    "audio/ogg",
    "audio/wave",
    "audio/wav",
    "audio/x-wav",
    "audio/x-pn-wav",
    "audio/flac",
    "audio/x-flac",
];

/// RFC 5987 `attr-char`: everything else in `filename*` is percent-encoded.
const ATTR_CHAR_ESCAPES: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'!')
    .remove(b'#')
    .remove(b'$')
    .remove(b'&')
    .remove(b'+')
    .remove(b'-')
    .remove(b'.')
    .remove(b'^')
    .remove(b'_')
    .remove(b'`')
    .remove(b'|')
    .remove(b'~');

/// The media type without parameters, lowercased: `Text/Plain; charset=x` -> `text/plain`.
fn essence(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

pub fn is_inline_safe(content_type: &str) -> bool {
    INLINE_TYPES.contains(&essence(content_type).as_str())
}

/// The `Content-Disposition` value for content of `content_type` named `filename`.
pub fn content_disposition(content_type: &str, filename: Option<&str>) -> String {
    let kind = if is_inline_safe(content_type) {
        "inline"
    } else {
        "attachment"
    };
    match filename.filter(|name| !name.is_empty()) {
        None => kind.to_owned(),
        Some(name)
            if name
                .bytes()
                .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\') =>
        {
            format!("{kind}; filename=\"{name}\"")
        }
        Some(name) => format!(
            "{kind}; filename*=utf-8''{}",
            utf8_percent_encode(name, ATTR_CHAR_ESCAPES)
        ),
    }
}

/// The type content is served with: as uploaded when it is a well-formed media type, else
/// `application/octet-stream`.
pub fn served_content_type(content_type: Option<&str>) -> String {
    content_type
        .filter(|t| {
            let essence = essence(t);
            let mut parts = essence.split('/');
            let token = |s: Option<&str>| {
                s.is_some_and(|s| {
                    !s.is_empty()
                        && s.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
                })
            };
            token(parts.next())
                && token(parts.next())
                && parts.next().is_none()
                && t.bytes().all(|b| (0x20..0x7f).contains(&b))
        })
        .unwrap_or("application/octet-stream")
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_safe_types_are_inline() {
        assert_eq!(content_disposition("image/png", None), "inline");
        assert_eq!(
            content_disposition("Text/Plain; charset=utf-8", Some("a.txt")),
            "inline; filename=\"a.txt\""
        );
        assert_eq!(
            content_disposition("text/html", Some("x.html")),
            "attachment; filename=\"x.html\""
        );
        assert_eq!(content_disposition("image/svg+xml", None), "attachment");
    }

    #[test]
    fn non_ascii_and_quoted_names_use_rfc_5987() {
        assert_eq!(
            content_disposition("application/pdf", Some("résumé \"v2\".pdf")),
            "attachment; filename*=utf-8''r%C3%A9sum%C3%A9%20%22v2%22.pdf"
        );
    }

    #[test]
    fn malformed_types_become_octet_stream() {
        assert_eq!(served_content_type(Some("image/png")), "image/png");
        assert_eq!(
            served_content_type(Some("nonsense")),
            "application/octet-stream"
        );
        assert_eq!(
            served_content_type(Some("text/plain\r\nX-Evil: 1")),
            "application/octet-stream"
        );
        assert_eq!(served_content_type(None), "application/octet-stream");
    }
}
