//! The answer of `/_matrix/federation/v1/media/download` (spec: Server-Server API, "Content
//! Repository"), read as it arrives: `multipart/mixed`, a JSON part (metadata, reserved) and
//! then either the file, with its own `Content-Type` and `Content-Disposition`, or a
//! `Location` to fetch it from. The file part is handed on as a stream, so that a remote file
//! goes to the media store without being held in memory.

use bytes::{Buf, Bytes, BytesMut};
use futures::{Stream, StreamExt, stream::BoxStream};
use http::HeaderMap;

/// The most the answer may hold before the file part's first byte (the JSON part and the
/// part headers).
const MAX_PREAMBLE: usize = 64 * 1024;

/// The second part of a media answer.
pub enum MediaPart {
    File {
        headers: HeaderMap,
        body: BoxStream<'static, Result<Bytes, String>>,
    },
    Location(String),
}

/// The `boundary` parameter of a `multipart/*` content type.
pub fn boundary_of(content_type: &str) -> Option<String> {
    let (kind, params) = content_type.split_once(';')?;
    if !kind.trim().to_ascii_lowercase().starts_with("multipart/") {
        return None;
    }
    params.split(';').find_map(|param| {
        let (name, value) = param.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| value.trim().trim_matches('"').to_owned())
            .filter(|boundary| !boundary.is_empty())
    })
}

/// Reads up to the file part of a media answer with `boundary`.
pub async fn media_part<S>(boundary: &str, mut body: S) -> Result<MediaPart, String>
where
    S: Stream<Item = Result<Bytes, String>> + Unpin + Send + 'static,
{
    let opening = format!("--{boundary}");
    let delimiter = format!("\r\n--{boundary}");
    let mut buffer = BytesMut::new();
    // Everything up to the end of the second part's headers: the opening boundary, the JSON
    // part's headers and body, the delimiter, the file part's headers.
    let headers_end = loop {
        if let Some(end) = file_part_start(&buffer, &opening, &delimiter)? {
            break end;
        }
        if buffer.len() > MAX_PREAMBLE {
            return Err(format!(
                "the media answer holds more than {MAX_PREAMBLE} bytes before the file"
            ));
        }
        match body.next().await {
            Some(chunk) => buffer.extend_from_slice(&chunk?),
            None => return Err("the media answer ended before its file part".to_owned()),
        }
    };
    let (headers_start, headers_stop, body_start) = headers_end;
    let headers = parse_headers(&buffer[headers_start..headers_stop])?;
    if let Some(location) = headers.get(http::header::LOCATION) {
        let location = location
            .to_str()
            .map_err(|_| "the Location header is not text".to_owned())?;
        return Ok(MediaPart::Location(location.to_owned()));
    }
    buffer.advance(body_start);
    Ok(MediaPart::File {
        headers,
        body: until_delimiter(buffer, body, delimiter.into_bytes()),
    })
}

/// Where the file part's headers start and end and where its body starts, once the buffer
/// holds them.
fn file_part_start(
    buffer: &[u8],
    opening: &str,
    delimiter: &str,
) -> Result<Option<(usize, usize, usize)>, String> {
    let Some(first) = find(buffer, opening.as_bytes(), 0) else {
        return Ok(None);
    };
    let Some(second) = find(buffer, delimiter.as_bytes(), first + opening.len()) else {
        return Ok(None);
    };
    let after = second + delimiter.len();
    if buffer.len() < after + 2 {
        return Ok(None);
    }
    if &buffer[after..after + 2] == b"--" {
        return Err("the media answer has no file part".to_owned());
    }
    let headers_start = after + 2;
    if buffer.len() < headers_start + 2 {
        return Ok(None);
    }
    if &buffer[headers_start..headers_start + 2] == b"\r\n" {
        // A part without headers.
        return Ok(Some((headers_start, headers_start, headers_start + 2)));
    }
    Ok(find(buffer, b"\r\n\r\n", headers_start).map(|end| (headers_start, end, end + 4)))
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    haystack
        .get(from..)?
        .windows(needle.len())
        .position(|window| window == needle)
        .map(|at| at + from)
}

fn parse_headers(block: &[u8]) -> Result<HeaderMap, String> {
    let text = std::str::from_utf8(block)
        .map_err(|_| "the file part's headers are not text".to_owned())?;
    let mut headers = HeaderMap::new();
    for line in text.split("\r\n").filter(|line| !line.is_empty()) {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("a malformed part header: {line}"))?;
        let name = http::HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| format!("a malformed part header name: {name}"))?;
        let value = http::HeaderValue::from_str(value.trim())
            .map_err(|_| format!("a malformed value of part header {name}"))?;
        headers.append(name, value);
    }
    Ok(headers)
}

/// The bytes of `body` (after those already in `buffer`) up to `delimiter`, which must come.
fn until_delimiter<S>(
    buffer: BytesMut,
    body: S,
    delimiter: Vec<u8>,
) -> BoxStream<'static, Result<Bytes, String>>
where
    S: Stream<Item = Result<Bytes, String>> + Unpin + Send + 'static,
{
    struct Scan<S> {
        buffer: BytesMut,
        body: S,
        delimiter: Vec<u8>,
        done: bool,
    }
    let scan = Scan {
        buffer,
        body,
        delimiter,
        done: false,
    };
    futures::stream::unfold(scan, |mut scan| async move {
        loop {
            if scan.done {
                return None;
            }
            // Whatever cannot be the start of a delimiter can go.
            let ready = match delimiter_in(&scan.buffer, &scan.delimiter) {
                Search::Found(at) => {
                    scan.done = true;
                    let last = scan.buffer.split_to(at).freeze();
                    return Some((Ok(last), scan));
                }
                Search::Unsure(at) => at,
                Search::Absent => scan.buffer.len(),
            };
            if ready > 0 {
                let ready = scan.buffer.split_to(ready).freeze();
                return Some((Ok(ready), scan));
            }
            match scan.body.next().await {
                Some(Ok(chunk)) => scan.buffer.extend_from_slice(&chunk),
                Some(Err(e)) => {
                    scan.done = true;
                    return Some((Err(e), scan));
                }
                None => {
                    scan.done = true;
                    // A closing delimiter without its `--` (ruma writes it so) ends the file
                    // just as well at the end of the answer.
                    if let Some(at) = scan.buffer.len().checked_sub(scan.delimiter.len())
                        && scan.buffer[at..] == scan.delimiter[..]
                    {
                        let last = scan.buffer.split_to(at).freeze();
                        return Some((Ok(last), scan));
                    }
                    return Some((
                        Err("the media answer ended before its closing boundary".to_owned()),
                        scan,
                    ));
                }
            }
        }
    })
    .boxed()
}

/// Where a delimiter is in a part's bytes.
enum Search {
    /// At this offset: the delimiter, then `--` or a line break (RFC 2046, section 5.1.1).
    Found(usize),
    /// Perhaps at this offset: the bytes after it have not all arrived.
    Unsure(usize),
    Absent,
}

fn delimiter_in(buffer: &[u8], delimiter: &[u8]) -> Search {
    let mut from = 0;
    while let Some(at) = find(buffer, delimiter, from) {
        let after = at + delimiter.len();
        match buffer.get(after..after + 2) {
            None => return Search::Unsure(at),
            Some(b"--" | b"\r\n") => return Search::Found(at),
            // The delimiter's bytes followed by others are content.
            Some(_) => from = at + 1,
        }
    }
    // A delimiter may begin in the last bytes and end in the next chunk.
    match (buffer.len().saturating_sub(delimiter.len())..buffer.len())
        .find(|&at| delimiter.starts_with(&buffer[at..]))
    {
        Some(at) => Search::Unsure(at),
        None => Search::Absent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(file_part: &[u8]) -> Vec<u8> {
        let mut body = b"--XyZ\r\nContent-Type: application/json\r\n\r\n{}\r\n--XyZ\r\n".to_vec();
        body.extend_from_slice(file_part);
        body.extend_from_slice(b"\r\n--XyZ--\r\n");
        body
    }

    /// The answer cut into chunks of `size` bytes.
    fn chunked(bytes: &[u8], size: usize) -> BoxStream<'static, Result<Bytes, String>> {
        let chunks: Vec<Result<Bytes, String>> = bytes
            .chunks(size)
            .map(|chunk| Ok(Bytes::copy_from_slice(chunk)))
            .collect();
        futures::stream::iter(chunks).boxed()
    }

    async fn file_of(stream: BoxStream<'static, Result<Bytes, String>>) -> (HeaderMap, Vec<u8>) {
        match media_part("XyZ", stream).await.unwrap() {
            MediaPart::File { headers, mut body } => {
                let mut bytes = Vec::new();
                while let Some(chunk) = body.next().await {
                    bytes.extend_from_slice(&chunk.unwrap());
                }
                (headers, bytes)
            }
            MediaPart::Location(url) => panic!("a Location: {url}"),
        }
    }

    #[tokio::test]
    async fn the_file_part_streams_whole_however_the_answer_is_cut() {
        // The file holds a near-delimiter and CRLFs, which must pass through.
        let file = b"\x89PNG\r\n\r\n--XyZ is not here\r\n--Xy\r\n-end".to_vec();
        let mut part =
            b"Content-Type: image/png\r\nContent-Disposition: inline; filename=\"a.png\"\r\n\r\n"
                .to_vec();
        part.extend_from_slice(&file);
        let whole = answer(&part);
        for size in 1..=whole.len() {
            let (headers, bytes) = file_of(chunked(&whole, size)).await;
            assert_eq!(bytes, file, "chunks of {size}");
            assert_eq!(headers["content-type"], "image/png");
            assert_eq!(headers["content-disposition"], "inline; filename=\"a.png\"");
        }
    }

    #[tokio::test]
    async fn a_closing_delimiter_without_dashes_ends_the_answer() {
        // As ruma (and so Tessera) writes it: the last delimiter has no `--` after it.
        let mut whole =
            b"\r\n--XyZ\r\nContent-Type: application/json\r\n\r\n{}\r\n--XyZ\r\n".to_vec();
        whole.extend_from_slice(b"Content-Type: text/plain\r\n\r\nthe file\r\n--XyZ");
        for size in 1..=whole.len() {
            let (_, bytes) = file_of(chunked(&whole, size)).await;
            assert_eq!(bytes, b"the file", "chunks of {size}");
        }
    }

    #[tokio::test]
    async fn a_file_part_without_headers_is_read() {
        let (headers, bytes) = file_of(chunked(&answer(b"\r\nraw bytes"), 3)).await;
        assert!(headers.is_empty());
        assert_eq!(bytes, b"raw bytes");
    }

    #[tokio::test]
    async fn a_location_part_is_returned_as_such() {
        let whole = answer(b"Location: https://cdn.example.org/a.png\r\n\r\n");
        match media_part("XyZ", chunked(&whole, 7)).await.unwrap() {
            MediaPart::Location(url) => assert_eq!(url, "https://cdn.example.org/a.png"),
            MediaPart::File { .. } => panic!("a file"),
        }
    }

    #[tokio::test]
    async fn truncated_or_malformed_answers_are_errors() {
        let cut = answer(b"Content-Type: image/png\r\n\r\nhalf a file");
        let cut = &cut[..cut.len() - 12];
        let MediaPart::File { mut body, .. } = media_part("XyZ", chunked(cut, 5)).await.unwrap()
        else {
            panic!("a file part");
        };
        let mut failed = false;
        while let Some(chunk) = body.next().await {
            failed |= chunk.is_err();
        }
        assert!(failed, "a file without its closing boundary is an error");

        let no_file = b"--XyZ\r\nContent-Type: application/json\r\n\r\n{}\r\n--XyZ--\r\n";
        assert!(media_part("XyZ", chunked(no_file, 4)).await.is_err());
        assert!(
            media_part("XyZ", chunked(b"not multipart at all", 4))
                .await
                .is_err()
        );
        let endless = vec![b'x'; MAX_PREAMBLE + 10];
        assert!(media_part("XyZ", chunked(&endless, 1024)).await.is_err());
    }

    #[test]
    fn boundaries_are_read_from_the_content_type() {
        assert_eq!(
            boundary_of("multipart/mixed; boundary=abc").as_deref(),
            Some("abc")
        );
        assert_eq!(
            boundary_of("Multipart/Mixed; charset=x; Boundary=\"q r\"").as_deref(),
            Some("q r")
        );
        assert_eq!(boundary_of("image/png"), None);
        assert_eq!(boundary_of("multipart/mixed"), None);
        assert_eq!(boundary_of("multipart/mixed; boundary="), None);
    }
}
