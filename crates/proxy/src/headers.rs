//! Header handling on the way upstream: hop-by-hop removal and Envoy's forwarding headers.

use std::net::IpAddr;

use http::header::{Entry, HeaderMap, HeaderName, HeaderValue};

use http::header::{
    CONNECTION, PROXY_AUTHENTICATE, PROXY_AUTHORIZATION, TE, TRAILER, TRANSFER_ENCODING, UPGRADE,
};

// Header names are pre-parsed: looking a header up by `&str` parses and hashes the name each time.
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
/// `x-forwarded-for`.
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `x-forwarded-proto`.
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// `x-request-id`.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// `x-envoy-attempt-count`.
pub const X_ENVOY_ATTEMPT_COUNT: HeaderName = HeaderName::from_static("x-envoy-attempt-count");

/// Headers that describe one connection and must not be forwarded (RFC 9110 §7.6.1).
///
/// A `static`, not a `const`: a const array of `HeaderName`s is built and dropped at every use.
static HOP_BY_HOP: [HeaderName; 9] = [
    CONNECTION,
    KEEP_ALIVE,
    PROXY_CONNECTION,
    PROXY_AUTHENTICATE,
    PROXY_AUTHORIZATION,
    TE,
    TRAILER,
    UPGRADE,
    TRANSFER_ENCODING,
];

/// Whether `name` is one of [`HOP_BY_HOP`]; their lengths rule out most names before any
/// comparison.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(name.as_str().len(), 2 | 7 | 10 | 16..=19) && HOP_BY_HOP.contains(name)
}

/// Removes hop-by-hop headers, including any named in `Connection`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry none: one pass over the names is cheaper than nine hashed removals
    // (and names listed in `Connection` matter only when `Connection` itself is present).
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for n in named {
        headers.remove(n);
    }
    for n in &HOP_BY_HOP {
        headers.remove(n);
    }
}

/// Adds Envoy's request headers: `x-forwarded-for` (edge only), `x-forwarded-proto`, `x-request-id`.
pub fn add_forwarding(headers: &mut HeaderMap, peer: IpAddr, edge: bool, scheme: &str) {
    if edge {
        let xff = match headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
            Some(existing) if !existing.is_empty() => format!("{existing}, {peer}"),
            _ => peer.to_string(),
        };
        if let Ok(v) = HeaderValue::from_str(&xff) {
            headers.insert(X_FORWARDED_FOR, v);
        }
    }
    // One lookup each (`entry`), not a `contains_key` and an `insert`.
    if let Entry::Vacant(slot) = headers.entry(X_FORWARDED_PROTO) {
        // Static values: no allocation, and cloning them per retry attempt is free.
        let v = match scheme {
            "http" => Ok(HeaderValue::from_static("http")),
            "https" => Ok(HeaderValue::from_static("https")),
            other => HeaderValue::from_str(other),
        };
        if let Ok(v) = v {
            slot.insert(v);
        }
    }
    if let Entry::Vacant(slot) = headers.entry(X_REQUEST_ID) {
        let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
        let id = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buf);
        if let Ok(v) = HeaderValue::from_str(id) {
            slot.insert(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_and_forwarding() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            HeaderValue::from_static("keep-alive, x-private"),
        );
        h.insert("x-private", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
        strip_hop_by_hop(&mut h);
        assert!(h.get("x-private").is_none() && h.get("connection").is_none());
        assert!(h.get("keep-alive").is_none());
        for name in &HOP_BY_HOP {
            assert!(is_hop_by_hop(name), "{name}");
            let mut one = HeaderMap::new();
            one.insert(name.clone(), HeaderValue::from_static("x"));
            strip_hop_by_hop(&mut one);
            assert!(one.is_empty(), "{name} was kept");
        }
        assert!(!is_hop_by_hop(&http::header::CONTENT_LENGTH));
        add_forwarding(&mut h, "127.0.0.9".parse().unwrap(), true, "http");
        assert_eq!(h["x-forwarded-for"], "10.0.0.1, 127.0.0.9");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-request-id"].len(), 36);
        let mut m = HeaderMap::new();
        add_forwarding(&mut m, "127.0.0.9".parse().unwrap(), false, "http");
        assert!(m.get("x-forwarded-for").is_none());
    }
}
