//! HTTP/1.1 request heads written and response heads read (RFC 9112), for the direct client.

use std::mem::MaybeUninit;

use bytes::{Bytes, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Uri, Version};

use crate::headers::X_ENVOY_ATTEMPT_COUNT;

/// Response header fields accepted at most (hyper's default).
const MAX_HEADERS: usize = 100;

/// How a response body is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Framing {
    /// No body (HEAD, 1xx, 204, 304).
    Empty,
    /// `Content-Length` bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Everything until the server closes the connection.
    UntilClose,
}

/// A response head, parsed.
#[derive(Debug)]
pub(super) struct ResponseHead {
    /// Status code.
    pub status: StatusCode,
    /// HTTP/1.0 or HTTP/1.1.
    pub version: Version,
    /// Header fields; values share the received bytes.
    pub headers: HeaderMap,
    /// How the body is delimited.
    pub framing: Framing,
    /// The connection can carry another request after this response.
    pub keep_alive: bool,
}

/// A response head the client cannot accept.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HeadError {
    /// Not HTTP/1.x syntax.
    #[error("invalid response head: {0}")]
    Syntax(#[from] httparse::Error),
    /// A status outside 100-999 or a header name or value `http` rejects.
    #[error("invalid response head: {0}")]
    Field(String),
    /// `Content-Length` values that are not one number.
    #[error("invalid content-length in response")]
    ContentLength,
    /// `101 Switching Protocols` to a request that asked for no upgrade.
    #[error("unexpected 101 Switching Protocols")]
    UnexpectedSwitch,
}

/// A bodiless request head to write.
pub(crate) struct Outgoing<'a> {
    /// Method.
    pub method: &'a Method,
    /// Target: its path and query are written (origin-form).
    pub uri: &'a Uri,
    /// Header fields, written as they are.
    pub headers: &'a HeaderMap,
    /// `x-envoy-attempt-count` to write instead of the one in `headers`.
    pub attempt: Option<&'a HeaderValue>,
    /// `Host` to write when `headers` has none.
    pub host: &'a str,
}

impl<'a> Outgoing<'a> {
    /// The head of `req`, with `host` for a missing `Host`.
    pub(crate) fn of<B>(req: &'a Request<B>, host: &'a str) -> Self {
        Outgoing {
            method: req.method(),
            uri: req.uri(),
            headers: req.headers(),
            attempt: None,
            host,
        }
    }
}

/// Writes the request head into `out`, as HTTP/1.1 in origin-form.
///
/// The request carries no body: a method that normally has one gets `content-length: 0`, as
/// Envoy sends it, so that servers insisting on a length accept it.
pub(super) fn encode_request(req: &Outgoing<'_>, out: &mut Vec<u8>) {
    fn field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    out.clear();
    out.extend_from_slice(req.method.as_str().as_bytes());
    out.push(b' ');
    match req.uri.path_and_query().map(|p| p.as_str()) {
        Some(target) if !target.is_empty() => out.extend_from_slice(target.as_bytes()),
        _ => out.push(b'/'),
    }
    out.extend_from_slice(b" HTTP/1.1\r\n");
    if !req.headers.contains_key(HOST) {
        field(out, b"host", req.host.as_bytes());
    }
    for (name, value) in req.headers {
        if req.attempt.is_some() && name == X_ENVOY_ATTEMPT_COUNT {
            continue;
        }
        field(out, name.as_str().as_bytes(), value.as_bytes());
    }
    if let Some(attempt) = req.attempt {
        field(
            out,
            X_ENVOY_ATTEMPT_COUNT.as_str().as_bytes(),
            attempt.as_bytes(),
        );
    }
    if matches!(*req.method, Method::POST | Method::PUT | Method::PATCH)
        && !req.headers.contains_key(CONTENT_LENGTH)
    {
        out.extend_from_slice(b"content-length: 0\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Where a header field's value lies in the received bytes (a head is at most `MAX_HEAD`
/// bytes, well within `u32`).
type Span = (u32, u32);

/// Header fields whose spans fit in a stack array; a response with more spills to the heap.
/// A small array, because zeroing one for `MAX_HEADERS` costs more than the whole parse.
const INLINE_SPANS: usize = 24;

/// What one parse of the received bytes found.
#[derive(Debug)]
pub(super) enum Parsed {
    /// More bytes are needed.
    Partial,
    /// An informational (1xx) response, consumed from the buffer: the final one follows.
    Informational,
    /// The final response head, consumed from the buffer.
    Final(ResponseHead),
}

/// Parses the response head at the start of `buf`, consuming it when complete.
pub(super) fn parse_response(
    buf: &mut BytesMut,
    head_request: bool,
    names: &mut NameCache,
) -> Result<Parsed, HeadError> {
    let mut fields = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let base = buf.as_ptr() as usize;
    let mut resp = httparse::Response::new(&mut []);
    let len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut resp,
        buf,
        &mut fields,
    )? {
        httparse::Status::Partial => return Ok(Parsed::Partial),
        httparse::Status::Complete(len) => len,
    };
    let code = resp.code.unwrap_or_default();
    let version = match resp.version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    let mut coded = false;
    let mut lengths = None;
    let mut chunked = false;
    let mut close = version == Version::HTTP_10;
    let count = resp.headers.len();
    let mut inline = [(0, 0); INLINE_SPANS];
    let mut spilled = Vec::new();
    let spans: &mut [Span] = match inline.get_mut(..count) {
        Some(spans) => spans,
        None => {
            spilled.resize(count, (0, 0));
            &mut spilled
        }
    };
    for (i, (span, field)) in spans.iter_mut().zip(resp.headers.iter()).enumerate() {
        let start = field.value.as_ptr() as usize - base;
        *span = (start as u32, (start + field.value.len()) as u32);
        // Framing fields are recognised by their parsed names: comparing standard names is an
        // integer comparison, where matching the raw spelling would fold case byte by byte.
        let name = names.resolve(i, field.name.as_bytes())?;
        if name == CONTENT_LENGTH {
            lengths = Some(content_length(field.value, lengths)?);
        } else if name == TRANSFER_ENCODING {
            // Only a final `chunked` coding delimits the body; any other reads until close.
            chunked = last_token(field.value).is_some_and(|t| t.eq_ignore_ascii_case(b"chunked"));
            coded = true;
        } else if name == CONNECTION {
            for token in field.value.split(|b| *b == b',') {
                let token = token.trim_ascii();
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") && version == Version::HTTP_10 {
                    close = false;
                }
            }
        }
    }
    let status = StatusCode::from_u16(code).map_err(|e| HeadError::Field(e.to_string()))?;
    if status == StatusCode::SWITCHING_PROTOCOLS {
        return Err(HeadError::UnexpectedSwitch);
    }
    let head = buf.split_to(len).freeze();
    if status.is_informational() {
        return Ok(Parsed::Informational);
    }
    let framing =
        if head_request || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
            Framing::Empty
        } else if coded {
            // A length next to a transfer coding is a smuggling vector: the connection is not reused.
            if lengths.is_some() {
                close = true;
            }
            if chunked {
                Framing::Chunked
            } else {
                Framing::UntilClose
            }
        } else {
            match lengths {
                Some(n) => Framing::Length(n),
                None => Framing::UntilClose,
            }
        };
    if framing == Framing::UntilClose {
        close = true;
    }
    let mut headers = HeaderMap::with_capacity(count);
    for (i, &(start, end)) in spans.iter().enumerate() {
        let value = HeaderValue::from_maybe_shared(head.slice(start as usize..end as usize))
            .map_err(|e| HeadError::Field(e.to_string()))?;
        headers.append(names.get(i)?, value);
    }
    Ok(Parsed::Final(ResponseHead {
        status,
        version,
        headers,
        framing,
        keep_alive: !close,
    }))
}

/// The header names of a connection's previous response, by position, with the spelling they
/// arrived in.
///
/// A server sends the same fields, spelled the same way, in the same order response after
/// response; an exact match of the spelling reuses the parsed name, which skips parsing, case
/// folding and, for non-standard names, an allocation per field. At most `MAX_HEADERS` entries.
#[derive(Debug, Default)]
pub(super) struct NameCache(Vec<(Box<[u8]>, HeaderName)>);

impl NameCache {
    /// The name of the `i`-th field, spelled `raw`; afterwards [`NameCache::get`] returns it.
    fn resolve(&mut self, i: usize, raw: &[u8]) -> Result<&HeaderName, HeadError> {
        let hit = self
            .0
            .get(i)
            .is_some_and(|(spelling, _)| **spelling == *raw);
        if !hit {
            let name = HeaderName::from_bytes(raw).map_err(|e| HeadError::Field(e.to_string()))?;
            let entry = (Box::from(raw), name);
            match self.0.get_mut(i) {
                Some(slot) => *slot = entry,
                // Positions are filled in order, so `i` is the next one.
                None => self.0.push(entry),
            }
        }
        self.0.get(i).map(|(_, name)| name).ok_or_else(skipped)
    }

    /// The name resolved for the `i`-th field of the current head.
    fn get(&self, i: usize) -> Result<HeaderName, HeadError> {
        self.0
            .get(i)
            .map(|(_, name)| name.clone())
            .ok_or_else(skipped)
    }
}

/// A position with no resolved name: a field was skipped, which `parse_response` never does.
fn skipped() -> HeadError {
    HeadError::Field("header field resolved out of order".into())
}

/// Folds one `Content-Length` field into the length seen so far: every value must be the same
/// number (RFC 9110 §8.6).
fn content_length(value: &[u8], seen: Option<u64>) -> Result<u64, HeadError> {
    let mut length = seen;
    for part in value.split(|b| *b == b',') {
        let digits = part.trim_ascii();
        if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
            return Err(HeadError::ContentLength);
        }
        let n = digits
            .iter()
            .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
        if length.is_some_and(|l| l != n) {
            return Err(HeadError::ContentLength);
        }
        length = Some(n);
    }
    length.ok_or(HeadError::ContentLength)
}

/// The last comma-separated token of a field value.
fn last_token(value: &[u8]) -> Option<&[u8]> {
    value
        .rsplit(|b| *b == b',')
        .map(<[u8]>::trim_ascii)
        .find(|t| !t.is_empty())
}

/// Parses a trailer section (`name: value` lines ending in an empty line) into fields.
pub(super) fn parse_trailers(block: &Bytes) -> Result<HeaderMap, HeadError> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let parsed = match httparse::parse_headers(block, &mut fields)? {
        httparse::Status::Complete((_, parsed)) => parsed,
        httparse::Status::Partial => return Err(HeadError::Syntax(httparse::Error::Token)),
    };
    let mut map = HeaderMap::with_capacity(parsed.len());
    for field in parsed {
        let name = HeaderName::from_bytes(field.name.as_bytes())
            .map_err(|e| HeadError::Field(e.to_string()))?;
        let value = HeaderValue::from_maybe_shared(block.slice_ref(field.value))
            .map_err(|e| HeadError::Field(e.to_string()))?;
        map.append(name, value);
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str, head_request: bool) -> (Result<Parsed, HeadError>, BytesMut) {
        let mut buf = BytesMut::from(raw);
        (
            parse_response(&mut buf, head_request, &mut NameCache::default()),
            buf,
        )
    }

    fn head(raw: &str) -> ResponseHead {
        match parse(raw, false).0 {
            Ok(Parsed::Final(h)) => h,
            other => panic!("{raw:?}: {other:?}"),
        }
    }

    #[test]
    fn request_head_is_origin_form_with_fields_as_given() {
        let req = Request::builder()
            .uri("/a?b=c")
            .header("host", "app")
            .header("x-a", "1")
            .header("x-a", "2")
            .body(())
            .unwrap();
        let mut out = Vec::new();
        encode_request(&Outgoing::of(&req, "10.0.0.1:80"), &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "GET /a?b=c HTTP/1.1\r\nhost: app\r\nx-a: 1\r\nx-a: 2\r\n\r\n"
        );
    }

    #[test]
    fn bodiless_post_says_its_length() {
        let req = Request::post("http://app/x").body(()).unwrap();
        let mut out = Vec::new();
        encode_request(&Outgoing::of(&req, "10.0.0.1:80"), &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "POST /x HTTP/1.1\r\nhost: 10.0.0.1:80\r\ncontent-length: 0\r\n\r\n"
        );
    }

    #[test]
    fn a_retry_says_its_attempt() {
        let req = Request::get("/")
            .header("x-envoy-attempt-count", "1")
            .header("host", "app")
            .body(())
            .unwrap();
        let attempt = HeaderValue::from_static("2");
        let mut out = Vec::new();
        encode_request(
            &Outgoing {
                attempt: Some(&attempt),
                ..Outgoing::of(&req, "x")
            },
            &mut out,
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "GET / HTTP/1.1\r\nhost: app\r\nx-envoy-attempt-count: 2\r\n\r\n"
        );
    }

    #[test]
    fn framing_follows_rfc_9112() {
        let cases = [
            (
                "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n",
                Framing::Length(5),
                true,
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\n",
                Framing::Length(5),
                true,
            ),
            (
                "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
                Framing::Chunked,
                true,
            ),
            (
                "HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n",
                Framing::Chunked,
                true,
            ),
            (
                "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked, gzip\r\n\r\n",
                Framing::UntilClose,
                false,
            ),
            (
                "HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n",
                Framing::Chunked,
                false,
            ),
            ("HTTP/1.1 200 OK\r\n\r\n", Framing::UntilClose, false),
            (
                "HTTP/1.1 204 No Content\r\ncontent-length: 5\r\n\r\n",
                Framing::Empty,
                true,
            ),
            ("HTTP/1.1 304 Not Modified\r\n\r\n", Framing::Empty, true),
            (
                "HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                Framing::Length(0),
                false,
            ),
            (
                "HTTP/1.0 200 OK\r\ncontent-length: 1\r\n\r\n",
                Framing::Length(1),
                false,
            ),
            (
                "HTTP/1.0 200 OK\r\ncontent-length: 1\r\nconnection: Keep-Alive\r\n\r\n",
                Framing::Length(1),
                true,
            ),
        ];
        for (raw, framing, keep_alive) in cases {
            let h = head(raw);
            assert_eq!((h.framing, h.keep_alive), (framing, keep_alive), "{raw:?}");
        }
    }

    #[test]
    fn head_request_has_no_body_whatever_the_length() {
        match parse("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n", true).0 {
            Ok(Parsed::Final(h)) => {
                assert_eq!(h.framing, Framing::Empty);
                assert_eq!(h.headers["content-length"], "5");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn head_is_consumed_and_body_bytes_stay() {
        let (parsed, buf) = parse(
            "HTTP/1.1 201 Created\r\nx-v: a b\r\ncontent-length: 2\r\n\r\nok",
            false,
        );
        match parsed {
            Ok(Parsed::Final(h)) => {
                assert_eq!(h.status, StatusCode::CREATED);
                assert_eq!(h.headers["x-v"], "a b");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(&buf[..], b"ok");
    }

    #[test]
    fn partial_informational_and_bad_heads() {
        assert!(matches!(
            parse("HTTP/1.1 200 OK\r\ncontent-le", false).0,
            Ok(Parsed::Partial)
        ));
        let (parsed, buf) = parse("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n", false);
        assert!(matches!(parsed, Ok(Parsed::Informational)));
        assert_eq!(&buf[..], b"HTTP/1.1 200 OK\r\n");
        for bad in [
            "HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: \r\n\r\n",
            "HTTP/1.1 101 Switching Protocols\r\n\r\n",
            "HTTP/1.1 2000 OK\r\n\r\n",
            "SSH-2.0-OpenSSH\r\n\r\n",
        ] {
            assert!(parse(bad, false).0.is_err(), "{bad:?}");
        }
    }

    #[test]
    fn cached_names_match_whatever_the_case() {
        let mut names = NameCache::default();
        for raw in [
            "HTTP/1.1 200 OK\r\nX-Service: a\r\ncontent-length: 0\r\n\r\n",
            "HTTP/1.1 200 OK\r\nx-service: b\r\nContent-Length: 0\r\n\r\n",
            "HTTP/1.1 200 OK\r\nx-other: c\r\ncontent-length: 0\r\n\r\n",
        ] {
            let mut buf = BytesMut::from(raw);
            match parse_response(&mut buf, false, &mut names) {
                Ok(Parsed::Final(h)) => {
                    let fields: Vec<String> = h.headers.keys().map(|k| k.to_string()).collect();
                    assert_eq!(fields.len(), 2, "{raw:?}");
                    assert!(fields[0] == "x-service" || fields[0] == "x-other");
                    assert_eq!(fields[1], "content-length");
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(names.0[0].1.as_str(), "x-other");
    }

    #[test]
    fn trailers_parse() {
        let block = Bytes::from_static(b"grpc-status: 0\r\nx-t: 1\r\n\r\n");
        let t = parse_trailers(&block).unwrap();
        assert_eq!(t["grpc-status"], "0");
        assert_eq!(t["x-t"], "1");
    }
}
