//! Trace context in HTTP headers: W3C `traceparent` and Zipkin B3 (single `b3` header and the
//! `x-b3-*` family), read from the downstream request and written on the upstream one.
//!
//! Envoy continues whichever format arrives; apps that only forward `x-b3-*` (bookinfo) and apps
//! that only forward `traceparent` must both see the proxy's span as their parent, so the upstream
//! request gets `traceparent` plus the B3 form that came in (multi-header when none did).

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};

/// `traceparent` (W3C Trace Context).
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
/// `b3` (B3 single header).
pub const B3: HeaderName = HeaderName::from_static("b3");
/// `x-b3-traceid`.
pub const X_B3_TRACEID: HeaderName = HeaderName::from_static("x-b3-traceid");
/// `x-b3-spanid`.
pub const X_B3_SPANID: HeaderName = HeaderName::from_static("x-b3-spanid");
/// `x-b3-parentspanid`.
pub const X_B3_PARENTSPANID: HeaderName = HeaderName::from_static("x-b3-parentspanid");
/// `x-b3-sampled`.
pub const X_B3_SAMPLED: HeaderName = HeaderName::from_static("x-b3-sampled");
/// `x-b3-flags` (`1` = debug, which implies sampled).
pub const X_B3_FLAGS: HeaderName = HeaderName::from_static("x-b3-flags");

/// Which header format carried the incoming context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `traceparent`.
    W3c,
    /// `b3`.
    B3Single,
    /// `x-b3-traceid` and friends.
    B3Multi,
}

/// A trace context read from request headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Incoming {
    /// 128-bit trace id (64-bit B3 ids are zero-extended on the left).
    pub trace_id: u128,
    /// The caller's span id, the parent of the proxy's span.
    pub span_id: u64,
    /// The caller's sampling decision; `None` defers it to this proxy.
    pub sampled: Option<bool>,
    /// Header format it came in.
    pub format: Format,
}

/// What to write upstream: the trace, the proxy's span and the decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outgoing {
    /// Trace id.
    pub trace_id: u128,
    /// The proxy's span id (the upstream's parent).
    pub span_id: u64,
    /// The proxy's own parent, when it continued a trace.
    pub parent_span_id: Option<u64>,
    /// Sampling decision.
    pub sampled: bool,
    /// B3 form to write besides `traceparent` (`B3Multi` when the request carried none).
    pub b3: Format,
    /// The request carried trace headers, which are replaced (when it carried none, there is
    /// nothing to remove).
    pub replaces_incoming: bool,
}

/// A B3 sampling-only header (`b3: 0`) or no context at all gives `None` for ids; the decision
/// alone is still returned so a caller's "don't sample" is honoured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extracted {
    /// No trace headers.
    None,
    /// Only a sampling decision (`b3: 0|1|d`, or `x-b3-sampled` without ids).
    DecisionOnly(bool, Format),
    /// A full context.
    Context(Incoming),
}

/// Reads the trace context of a request: `traceparent` first, then `b3`, then `x-b3-*`.
/// Malformed headers are ignored, as Envoy does (a new trace starts).
pub fn extract(headers: &HeaderMap) -> Extracted {
    if !carries_trace_headers(headers) {
        return Extracted::None;
    }
    if let Some(ctx) = header(headers, &TRACEPARENT).and_then(parse_traceparent) {
        return Extracted::Context(ctx);
    }
    if let Some(v) = header(headers, &B3) {
        if let Some(e) = parse_b3_single(v) {
            return e;
        }
    }
    parse_b3_multi(headers)
}

/// Whether any trace header (valid or not) is present.
///
/// Most requests carry none: one pass over the few names present is cheaper than the six hashed
/// lookups of [`extract`].
pub fn carries_trace_headers(headers: &HeaderMap) -> bool {
    headers.keys().any(|k| {
        let k = k.as_str();
        k.starts_with("x-b3-") || k == "b3" || k == "traceparent"
    })
}

fn header<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

fn hex_u128(s: &str) -> Option<u128> {
    // Both B3 lengths; W3C checks its own exact length.
    if (s.len() != 32 && s.len() != 16) || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u128::from_str_radix(s, 16).ok().filter(|v| *v != 0)
}

fn hex_u64(s: &str) -> Option<u64> {
    if s.len() != 16 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(s, 16).ok().filter(|v| *v != 0)
}

fn parse_traceparent(v: &str) -> Option<Incoming> {
    let mut parts = v.split('-');
    let version = parts.next()?;
    let trace = parts.next()?;
    let span = parts.next()?;
    let flags = parts.next()?;
    // Version 00 has exactly four fields; later versions may append more.
    if version.len() != 2 || version.eq_ignore_ascii_case("ff") || trace.len() != 32 {
        return None;
    }
    if version == "00" && parts.next().is_some() {
        return None;
    }
    let _ = u8::from_str_radix(version, 16).ok()?;
    let flags = (flags.len() == 2).then(|| u8::from_str_radix(flags, 16).ok())??;
    Some(Incoming {
        trace_id: hex_u128(trace)?,
        span_id: hex_u64(span)?,
        sampled: Some(flags & 1 == 1),
        format: Format::W3c,
    })
}

fn parse_sampled(s: &str) -> Option<bool> {
    match s {
        "1" | "d" | "true" => Some(true),
        "0" | "false" => Some(false),
        _ => None,
    }
}

fn parse_b3_single(v: &str) -> Option<Extracted> {
    let parts: Vec<&str> = v.split('-').collect();
    match parts.as_slice() {
        [decision] => parse_sampled(decision).map(|s| Extracted::DecisionOnly(s, Format::B3Single)),
        [trace, span, rest @ ..] if rest.len() <= 2 => {
            let sampled = match rest.first() {
                Some(s) => Some(parse_sampled(s)?),
                None => None,
            };
            if let Some(parent) = rest.get(1) {
                hex_u64(parent)?;
            }
            Some(Extracted::Context(Incoming {
                trace_id: hex_u128(trace)?,
                span_id: hex_u64(span)?,
                sampled,
                format: Format::B3Single,
            }))
        }
        _ => None,
    }
}

fn parse_b3_multi(headers: &HeaderMap) -> Extracted {
    let debug = header(headers, &X_B3_FLAGS) == Some("1");
    let sampled = header(headers, &X_B3_SAMPLED).and_then(parse_sampled);
    let sampled = if debug { Some(true) } else { sampled };
    let ids = header(headers, &X_B3_TRACEID)
        .and_then(hex_u128)
        .zip(header(headers, &X_B3_SPANID).and_then(hex_u64));
    match (ids, sampled) {
        (Some((trace_id, span_id)), sampled) => Extracted::Context(Incoming {
            trace_id,
            span_id,
            sampled,
            format: Format::B3Multi,
        }),
        (None, Some(s)) => Extracted::DecisionOnly(s, Format::B3Multi),
        (None, None) => Extracted::None,
    }
}

fn value(s: String) -> Option<HeaderValue> {
    HeaderValue::try_from(s).ok()
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Lowercase hex of `v` into `out` (its length sets the digits): `format!` is several times
/// slower, and this runs for every request while tracing is on. Two digits per byte of `v`
/// rather than a 128-bit shift per digit.
pub(crate) fn put_hex(out: &mut [u8], v: u128) {
    let bytes = v.to_be_bytes();
    if out.len().is_multiple_of(2) && out.len() <= 32 {
        let src = &bytes[16 - out.len() / 2..];
        for (pair, b) in out.chunks_exact_mut(2).zip(src) {
            pair[0] = HEX[usize::from(b >> 4)];
            pair[1] = HEX[usize::from(b & 0xf)];
        }
        return;
    }
    let mut v = v;
    for b in out.iter_mut().rev() {
        *b = HEX[(v & 0xf) as usize];
        v >>= 4;
    }
}

/// A header value that is a slice of `buf`.
fn slice_value(buf: &Bytes, range: std::ops::Range<usize>) -> Option<HeaderValue> {
    HeaderValue::from_maybe_shared(buf.slice(range)).ok()
}

/// Writes the proxy's span as the upstream's parent, replacing every incoming trace header.
pub fn inject(headers: &mut HeaderMap, out: &Outgoing) {
    if out.replaces_incoming {
        for name in [
            &B3,
            &X_B3_TRACEID,
            &X_B3_SPANID,
            &X_B3_PARENTSPANID,
            &X_B3_SAMPLED,
            &X_B3_FLAGS,
        ] {
            headers.remove(name);
        }
    }
    // Up to five headers are added: one table growth now instead of several.
    headers.reserve(5);
    let sampled = if out.sampled { b'1' } else { b'0' };
    // Every value is a slice of one buffer: one allocation instead of one per header, and the
    // values are shared rather than copied when the headers are cloned for each attempt.
    let mut buf = Vec::with_capacity(128);
    // 00-<32 hex>-<16 hex>-0<flag>
    let mut tp = *b"00-00000000000000000000000000000000-0000000000000000-00";
    put_hex(&mut tp[3..35], out.trace_id);
    put_hex(&mut tp[36..52], u128::from(out.span_id));
    tp[54] = sampled;
    buf.extend_from_slice(&tp);
    const TRACE_HEX: std::ops::Range<usize> = 3..35;
    const SPAN_HEX: std::ops::Range<usize> = 36..52;
    let extra = buf.len();
    match out.b3 {
        Format::B3Single => {
            // <32 hex>-<16 hex>-<sampled>[-<16 hex parent>]
            buf.extend_from_slice(&tp[TRACE_HEX]);
            buf.push(b'-');
            buf.extend_from_slice(&tp[SPAN_HEX]);
            buf.extend_from_slice(&[b'-', sampled]);
            if let Some(p) = out.parent_span_id {
                let mut hex = [b'-'; 17];
                put_hex(&mut hex[1..], u128::from(p));
                buf.extend_from_slice(&hex);
            }
        }
        Format::B3Multi | Format::W3c => {
            if let Some(p) = out.parent_span_id {
                let mut hex = [0u8; 16];
                put_hex(&mut hex, u128::from(p));
                buf.extend_from_slice(&hex);
            }
        }
    }
    let end = buf.len();
    let buf = Bytes::from(buf);
    if let Some(v) = slice_value(&buf, 0..extra) {
        headers.insert(TRACEPARENT, v);
    }
    match out.b3 {
        Format::B3Single => {
            if let Some(v) = slice_value(&buf, extra..end) {
                headers.insert(B3, v);
            }
        }
        Format::B3Multi | Format::W3c => {
            if let (Some(t), Some(s)) = (slice_value(&buf, TRACE_HEX), slice_value(&buf, SPAN_HEX))
            {
                headers.insert(X_B3_TRACEID, t);
                headers.insert(X_B3_SPANID, s);
            }
            if out.parent_span_id.is_some() {
                if let Some(v) = slice_value(&buf, extra..end) {
                    headers.insert(X_B3_PARENTSPANID, v);
                }
            }
            headers.insert(
                X_B3_SAMPLED,
                HeaderValue::from_static(if out.sampled { "1" } else { "0" }),
            );
        }
    }
}

/// Marks every trace header of a request "not sampled" (mirror copies are never traced, but
/// keep their ids so the copy can still be correlated with its original).
pub fn mark_unsampled(headers: &mut HeaderMap) {
    if let Some(v) = header(headers, &TRACEPARENT)
        .filter(|v| v.len() == 55)
        .map(|v| format!("{}00", &v[..53]))
        .and_then(value)
    {
        headers.insert(TRACEPARENT, v);
    }
    if let Some(v) = header(headers, &B3).map(unsampled_b3).and_then(value) {
        headers.insert(B3, v);
    }
    if headers.contains_key(X_B3_SAMPLED) || headers.contains_key(X_B3_TRACEID) {
        headers.insert(X_B3_SAMPLED, HeaderValue::from_static("0"));
    }
    headers.remove(X_B3_FLAGS);
}

fn unsampled_b3(v: &str) -> String {
    let mut parts: Vec<&str> = v.split('-').collect();
    match parts.len() {
        1 => "0".to_string(),
        2 => format!("{v}-0"),
        _ => {
            parts[2] = "0";
            parts.join("-")
        }
    }
}

/// The trace id of a request (for the access log when tracing is off).
pub fn trace_id_of(headers: &HeaderMap) -> Option<u128> {
    match extract(headers) {
        Extracted::Context(c) => Some(c.trace_id),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn reads_traceparent() {
        let h = headers(&[(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )]);
        assert_eq!(
            extract(&h),
            Extracted::Context(Incoming {
                trace_id: 0x4bf92f3577b34da6a3ce929d0e0e4736,
                span_id: 0x00f067aa0ba902b7,
                sampled: Some(true),
                format: Format::W3c,
            })
        );
    }

    #[test]
    fn rejects_bad_traceparent() {
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
        ] {
            assert_eq!(
                extract(&headers(&[("traceparent", bad)])),
                Extracted::None,
                "{bad}"
            );
        }
        // A later version may carry more fields.
        assert!(matches!(
            extract(&headers(&[(
                "traceparent",
                "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-what"
            )])),
            Extracted::Context(Incoming {
                sampled: Some(false),
                ..
            })
        ));
    }

    #[test]
    fn reads_b3_single_and_multi() {
        let single = headers(&[(
            "b3",
            "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90",
        )]);
        assert_eq!(
            extract(&single),
            Extracted::Context(Incoming {
                trace_id: 0x80f198ee56343ba864fe8b2a57d3eff7,
                span_id: 0xe457b5a2e4d86bd1,
                sampled: Some(true),
                format: Format::B3Single,
            })
        );
        assert_eq!(
            extract(&headers(&[("b3", "0")])),
            Extracted::DecisionOnly(false, Format::B3Single)
        );
        let multi = headers(&[
            ("x-b3-traceid", "463ac35c9f6413ad"),
            ("x-b3-spanid", "a2fb4a1d1a96d312"),
        ]);
        assert_eq!(
            extract(&multi),
            Extracted::Context(Incoming {
                trace_id: 0x463ac35c9f6413ad,
                span_id: 0xa2fb4a1d1a96d312,
                sampled: None,
                format: Format::B3Multi,
            })
        );
        let debug = headers(&[
            ("x-b3-traceid", "463ac35c9f6413ad463ac35c9f6413ad"),
            ("x-b3-spanid", "a2fb4a1d1a96d312"),
            ("x-b3-sampled", "0"),
            ("x-b3-flags", "1"),
        ]);
        assert!(matches!(
            extract(&debug),
            Extracted::Context(Incoming {
                sampled: Some(true),
                ..
            })
        ));
    }

    #[test]
    fn writes_both_formats() {
        let mut h = headers(&[("x-b3-flags", "1"), ("b3", "1")]);
        inject(
            &mut h,
            &Outgoing {
                trace_id: 0xabc,
                span_id: 0x12,
                parent_span_id: Some(0x34),
                sampled: true,
                b3: Format::B3Multi,
                replaces_incoming: true,
            },
        );
        assert_eq!(
            h["traceparent"],
            "00-00000000000000000000000000000abc-0000000000000012-01"
        );
        assert_eq!(h["x-b3-traceid"], "00000000000000000000000000000abc");
        assert_eq!(h["x-b3-spanid"], "0000000000000012");
        assert_eq!(h["x-b3-parentspanid"], "0000000000000034");
        assert_eq!(h["x-b3-sampled"], "1");
        assert!(h.get("b3").is_none() && h.get("x-b3-flags").is_none());

        let mut h = HeaderMap::new();
        inject(
            &mut h,
            &Outgoing {
                trace_id: 0xabc,
                span_id: 0x12,
                parent_span_id: None,
                sampled: false,
                b3: Format::B3Single,
                replaces_incoming: false,
            },
        );
        assert_eq!(
            h["b3"],
            "00000000000000000000000000000abc-0000000000000012-0"
        );
        assert!(h["traceparent"].to_str().unwrap().ends_with("-00"));
    }

    #[test]
    fn mirror_copies_are_unsampled() {
        let mut h = headers(&[
            (
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
            (
                "b3",
                "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90",
            ),
            ("x-b3-traceid", "463ac35c9f6413ad"),
            ("x-b3-sampled", "1"),
            ("x-b3-flags", "1"),
        ]);
        mark_unsampled(&mut h);
        assert_eq!(
            h["traceparent"],
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"
        );
        assert_eq!(
            h["b3"],
            "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-0-05e3ac9a4f6e3b90"
        );
        assert_eq!(h["x-b3-sampled"], "0");
        assert!(h.get("x-b3-flags").is_none());
    }
}
