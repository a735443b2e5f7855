//! Who may use the admin API: the requests it refuses before routing.
//!
//! The admin port serves the whole config (`/config_dump`) without authentication, trusting that
//! only local processes reach a loopback socket. A web page can still reach it through the
//! visitor's browser by DNS rebinding (its own name made to resolve to 127.0.0.1); such requests
//! carry the page's name in Host, so on a loopback bind only loopback names and IP literals are
//! accepted. The API reads, so methods other than GET and HEAD are refused too, but for
//! `POST /api/reload`, which re-reads the config the proxy already watches, and the canary
//! commands (`POST /api/canaries/NAME/ACTION`), refused when a page of another origin sends them.

use std::net::{IpAddr, SocketAddr};

use http::header::{ALLOW, HOST};
use http::{HeaderValue, Method, Request, Response, StatusCode};

use crate::{text, AdminBody};

/// The admin server's request checks, fixed by the address it is bound to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Guard {
    /// Bound to a non-loopback address: reached by name on purpose, so any Host is fine.
    any_host: bool,
}

impl Guard {
    /// Checks for a server bound to `bound`.
    pub(crate) fn new(bound: SocketAddr) -> Guard {
        Guard {
            any_host: !bound.ip().is_loopback(),
        }
    }

    /// The refusal for `req`, or `None` when it may be served.
    pub(crate) fn refuse<B>(&self, req: &Request<B>) -> Option<Response<AdminBody>> {
        if !self.any_host {
            // HTTP/2 carries the name in `:authority`, HTTP/1.1 in Host. A request with
            // neither comes from no browser.
            let host = req
                .uri()
                .authority()
                .map(|a| a.as_str())
                .or_else(|| req.headers().get(HOST).and_then(|h| h.to_str().ok()));
            if let Some(host) = host.filter(|h| !is_local_name(h)) {
                return Some(text(
                    StatusCode::FORBIDDEN,
                    format!("admin API: Host `{host}` is not allowed on a loopback admin address: use localhost or an IP address (or bind --admin to a non-loopback address)\n"),
                ));
            }
        }
        // The actions: `POST /api/reload` re-reads the config the proxy already watches;
        // `POST /api/canaries/NAME/ACTION` steers a canary, which moves traffic, so a browser
        // page of another origin (a form posted cross-site carries `Origin`) may not.
        let post = *req.method() == Method::POST;
        let reload = post && req.uri().path() == "/api/reload";
        let canary = post && req.uri().path().starts_with("/api/canaries/");
        if canary {
            let origin = req.headers().get("origin").and_then(|o| o.to_str().ok());
            let local = |o: &str| {
                let host = o.split_once("://").map_or(o, |(_, h)| h);
                is_local_name(host)
            };
            if let Some(o) = origin.filter(|o| !local(o)) {
                return Some(text(
                    StatusCode::FORBIDDEN,
                    format!("admin API: canary commands from origin `{o}` are refused\n"),
                ));
            }
        }
        if !reload && !canary && !matches!(*req.method(), Method::GET | Method::HEAD) {
            let mut r = text(
                StatusCode::METHOD_NOT_ALLOWED,
                "admin API: read-only, use GET\n",
            );
            r.headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
            return Some(r);
        }
        None
    }
}

/// Whether a Host value (port optional) names this machine's loopback or an IP address: no
/// rebinding page can put either in a browser's Host header for its own origin.
fn is_local_name(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        // `[v6]` or `[v6]:port`.
        Some(rest) => rest.split_once(']').map_or("", |(ip, _)| ip),
        None => host.rsplit_once(':').map_or(host, |(name, port)| {
            if port.bytes().all(|b| b.is_ascii_digit()) {
                name
            } else {
                host
            }
        }),
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<IpAddr>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_names_and_ip_literals_with_any_port() {
        for ok in [
            "localhost",
            "LOCALHOST:15000",
            "127.0.0.1",
            "127.0.0.1:15000",
            "10.1.2.3:15000",
            "[::1]",
            "[::1]:15000",
        ] {
            assert!(is_local_name(ok), "{ok}");
        }
        for bad in [
            "admin",
            "evil.example",
            "evil.example:15000",
            "localhost.evil.example",
            "127.0.0.1.nip.io",
            "[::1",
            "",
        ] {
            assert!(!is_local_name(bad), "{bad}");
        }
    }
}
