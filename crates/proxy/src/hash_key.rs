//! Consistent-hash keys from requests: a header, a cookie (generated when absent and a TTL is
//! set, as Envoy does), the peer IP, or a query parameter.

use std::net::IpAddr;

use http::{HeaderMap, HeaderValue};
use sluice_config::policy::HashKey;
use sluice_lb::hash_key;

/// The hash of a request, and a cookie to set when one was generated.
#[derive(Debug, Default)]
pub struct RequestHash {
    /// The key's hash; `None` when the request has no such key (Envoy then picks at random).
    pub hash: Option<u64>,
    /// `Set-Cookie` to add to the response for a generated cookie.
    pub set_cookie: Option<HeaderValue>,
}

fn cookie_value<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"'))
}

fn query_value<'q>(path_and_query: &'q str, name: &str) -> Option<&'q str> {
    let (_, q) = path_and_query.split_once('?')?;
    q.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then_some(v)
    })
}

/// Computes the hash for `key`.
pub fn compute(
    key: &HashKey,
    headers: &HeaderMap,
    path_and_query: &str,
    peer: IpAddr,
) -> RequestHash {
    match key {
        HashKey::Header(name) => RequestHash {
            hash: headers.get(name.as_str()).map(|v| hash_key(v.as_bytes())),
            set_cookie: None,
        },
        // A unix domain socket client has no IP: no hash, so the pick is random, as Envoy's is.
        HashKey::SourceIp => RequestHash {
            hash: (!sluice_config::pipe::is_pipe(peer))
                .then(|| hash_key(peer.to_string().as_bytes())),
            set_cookie: None,
        },
        HashKey::QueryParameter(name) => RequestHash {
            hash: query_value(path_and_query, name).map(|v| hash_key(v.as_bytes())),
            set_cookie: None,
        },
        HashKey::Cookie {
            name,
            path,
            ttl,
            attributes,
        } => {
            if let Some(v) = cookie_value(headers, name) {
                return RequestHash {
                    hash: Some(hash_key(v.as_bytes())),
                    set_cookie: None,
                };
            }
            let Some(ttl) = ttl else {
                return RequestHash::default();
            };
            let value = format!("{:016x}", sluice_lb::fresh_seed());
            let mut cookie = format!("{name}=\"{value}\"");
            if let Some(p) = path {
                cookie.push_str(&format!("; Path={p}"));
            }
            if !ttl.is_zero() {
                cookie.push_str(&format!("; Max-Age={}", ttl.as_secs()));
            }
            // Envoy writes the attributes in order, before the `HttpOnly` it always adds.
            for (attr, value) in attributes {
                if attr.eq_ignore_ascii_case("HttpOnly") {
                    continue;
                }
                cookie.push_str("; ");
                cookie.push_str(attr);
                if let Some(v) = value {
                    cookie.push('=');
                    cookie.push_str(v);
                }
            }
            cookie.push_str("; HttpOnly");
            RequestHash {
                hash: Some(hash_key(value.as_bytes())),
                set_cookie: HeaderValue::from_str(&cookie).ok(),
            }
        }
    }
}

/// Fuzzing entry: the cookie and query-parameter parsers on arbitrary input; never panics.
#[cfg(feature = "fuzzing")]
pub fn fuzz_parsers(headers: &HeaderMap, path_and_query: &str, name: &str) -> usize {
    cookie_value(headers, name).map_or(0, str::len)
        + query_value(path_and_query, name).map_or(0, str::len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn keys() {
        let mut h = HeaderMap::new();
        h.insert("x-user", HeaderValue::from_static("alice"));
        h.insert("cookie", HeaderValue::from_static("a=1; session=\"abc\""));
        let ip: IpAddr = "127.0.0.9".parse().unwrap();
        let header = compute(&HashKey::Header("x-user".into()), &h, "/", ip);
        assert_eq!(header.hash, Some(hash_key(b"alice")));
        let cookie = compute(
            &HashKey::Cookie {
                name: "session".into(),
                path: None,
                ttl: None,
                attributes: Vec::new(),
            },
            &h,
            "/",
            ip,
        );
        assert_eq!(cookie.hash, Some(hash_key(b"abc")));
        let q = compute(&HashKey::QueryParameter("u".into()), &h, "/x?u=bob", ip);
        assert_eq!(q.hash, Some(hash_key(b"bob")));
        let gen = compute(
            &HashKey::Cookie {
                name: "user".into(),
                path: Some("/".into()),
                ttl: Some(Duration::from_secs(60)),
                attributes: vec![
                    ("SameSite".into(), Some("Strict".into())),
                    ("Secure".into(), None),
                ],
            },
            &HeaderMap::new(),
            "/",
            ip,
        );
        let set = gen.set_cookie.unwrap();
        assert!(set.to_str().unwrap().starts_with("user=\""));
        let set = set.to_str().unwrap();
        assert!(
            set.ends_with("; Path=/; Max-Age=60; SameSite=Strict; Secure; HttpOnly"),
            "{set}"
        );
        let none = compute(
            &HashKey::Header("x-none".into()),
            &HeaderMap::new(),
            "/",
            ip,
        );
        assert!(none.hash.is_none());
        let source = compute(&HashKey::SourceIp, &HeaderMap::new(), "/", ip);
        assert_eq!(source.hash, Some(hash_key(b"127.0.0.9")));
        // A unix domain socket client has no IP: no hash (a random pick, as in Envoy).
        let pipe = sluice_config::pipe::UNIX_PEER.ip();
        let unix = compute(&HashKey::SourceIp, &HeaderMap::new(), "/", pipe);
        assert!(unix.hash.is_none());
    }
}
