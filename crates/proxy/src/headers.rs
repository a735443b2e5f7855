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
///
/// At the edge (a gateway: Istio sets `use_remote_address` there and, with Envoy's default empty
/// `internal_address_config`, every client is external) the client is not trusted: its
/// `x-envoy-*` headers are removed (it could otherwise set retries or timeouts for the hops
/// behind the gateway), `x-forwarded-proto` is the connection's scheme whatever it claimed, and
/// `x-request-id` is always a new one (Istio leaves `preserve_external_request_id` off).
/// Sidecars keep Envoy's internal-request semantics: values already present are kept.
pub fn add_forwarding(headers: &mut HeaderMap, peer: IpAddr, edge: bool, scheme: &str) {
    if edge {
        strip_envoy_headers(headers);
        // A unix domain socket client has no IP: Envoy appends nothing for a pipe address.
        if !sluice_config::pipe::is_pipe(peer) {
            let xff = match headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
                Some(existing) if !existing.is_empty() => format!("{existing}, {peer}"),
                _ => peer.to_string(),
            };
            if let Ok(v) = HeaderValue::from_str(&xff) {
                headers.insert(X_FORWARDED_FOR, v);
            }
        }
        if let Some(v) = scheme_value(scheme) {
            headers.insert(X_FORWARDED_PROTO, v);
        }
        headers.insert(X_REQUEST_ID, new_request_id());
        return;
    }
    // One lookup each (`entry`), not a `contains_key` and an `insert`.
    if let Entry::Vacant(slot) = headers.entry(X_FORWARDED_PROTO) {
        if let Some(v) = scheme_value(scheme) {
            slot.insert(v);
        }
    }
    if let Entry::Vacant(slot) = headers.entry(X_REQUEST_ID) {
        slot.insert(new_request_id());
    }
}

/// The `x-forwarded-proto` value for a scheme.
fn scheme_value(scheme: &str) -> Option<HeaderValue> {
    // Static values: no allocation, and cloning them per retry attempt is free.
    match scheme {
        "http" => Some(HeaderValue::from_static("http")),
        "https" => Some(HeaderValue::from_static("https")),
        other => HeaderValue::from_str(other).ok(),
    }
}

/// A fresh UUID v4 request id.
fn new_request_id() -> HeaderValue {
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let id = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buf);
    // A hyphenated UUID is always a valid header value.
    HeaderValue::from_str(id).unwrap_or(HeaderValue::from_static("-"))
}

/// Removes the client's `x-envoy-*` headers (Envoy's `cleanInternalHeaders` for external
/// requests, widened to the whole prefix: sluice sets its own after this).
fn strip_envoy_headers(headers: &mut HeaderMap) {
    let is_envoy = |n: &HeaderName| n.as_str().starts_with("x-envoy-");
    // Clients almost never send any: one pass over the names, no allocation, in that case.
    if !headers.keys().any(is_envoy) {
        return;
    }
    let names: Vec<HeaderName> = headers.keys().filter(|n| is_envoy(n)).cloned().collect();
    for n in names {
        headers.remove(n);
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
        // A unix domain socket client has no IP: the header is left as the client sent it.
        let pipe = sluice_config::pipe::UNIX_PEER.ip();
        let mut u = HeaderMap::new();
        add_forwarding(&mut u, pipe, true, "http");
        assert!(u.get("x-forwarded-for").is_none());
        u.insert("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
        add_forwarding(&mut u, pipe, true, "http");
        assert_eq!(u["x-forwarded-for"], "10.0.0.1");
    }

    #[test]
    fn the_edge_distrusts_the_client_and_sidecars_keep_its_values() {
        let client = || {
            let mut h = HeaderMap::new();
            h.insert("x-envoy-retry-on", HeaderValue::from_static("5xx"));
            h.insert(
                "x-envoy-upstream-rq-timeout-ms",
                HeaderValue::from_static("1"),
            );
            h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
            h.insert("x-request-id", HeaderValue::from_static("chosen-by-client"));
            h.insert("x-other", HeaderValue::from_static("kept"));
            h
        };
        let peer = "192.0.2.1".parse().unwrap();
        let mut edge = client();
        add_forwarding(&mut edge, peer, true, "http");
        assert!(
            edge.keys().all(|n| !n.as_str().starts_with("x-envoy-")),
            "{edge:?}"
        );
        assert_eq!(edge["x-forwarded-proto"], "http");
        assert_ne!(edge["x-request-id"], "chosen-by-client");
        assert_eq!(edge["x-request-id"].len(), 36);
        assert_eq!(edge["x-other"], "kept");
        let mut sidecar = client();
        add_forwarding(&mut sidecar, peer, false, "http");
        assert_eq!(sidecar["x-envoy-retry-on"], "5xx");
        assert_eq!(sidecar["x-forwarded-proto"], "https");
        assert_eq!(sidecar["x-request-id"], "chosen-by-client");
    }
}
