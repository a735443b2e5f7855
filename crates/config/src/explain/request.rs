//! An explanation asked for by method, URL and headers (from the CLI or the admin API), on the
//! listener that would have accepted the request.

use http::{HeaderMap, HeaderName, HeaderValue};

use super::{explain, Explanation};
use crate::listener::{Listener, ListenerRole};
use crate::matcher::RequestInfo;
use crate::snapshot::Snapshot;

/// What to explain.
#[derive(Debug, Clone, Default)]
pub struct ExplainRequest {
    /// HTTP method.
    pub method: String,
    /// `http://host[:port]/path?query`.
    pub url: String,
    /// `Name: value` headers; `Host` overrides the URL's host.
    pub headers: Vec<String>,
    /// Explain on this Gateway's listeners (`namespace/name`); mesh listeners otherwise.
    pub gateway: Option<String>,
}

/// Why a request cannot be explained.
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    /// The URL does not parse.
    #[error("invalid URL `{0}`")]
    Url(String),
    /// A header is not `Name: value`.
    #[error("header `{0}` must be `Name: value`")]
    Header(String),
    /// Nothing listens on the URL's port for the asked role.
    #[error("no {role} listener on port {port}; listeners: {listeners}{hint}")]
    NoListener {
        /// `gateway` or `mesh`.
        role: &'static str,
        /// The URL's port.
        port: u16,
        /// Every listener address of the snapshot.
        listeners: String,
        /// What to try instead (the port to add, `--gateway`), with a leading `; `.
        hint: String,
    },
}

fn parse_headers(lines: &[String]) -> Result<HeaderMap, ExplainError> {
    let mut headers = HeaderMap::new();
    for h in lines {
        let bad = || ExplainError::Header(h.clone());
        let (k, v) = h.split_once(':').ok_or_else(bad)?;
        headers.append(
            HeaderName::from_bytes(k.trim().as_bytes()).map_err(|_| bad())?,
            HeaderValue::from_str(v.trim()).map_err(|_| bad())?,
        );
    }
    Ok(headers)
}

/// The listener a request to `port` reaches: the Gateway's when one is named, else a mesh
/// listener, else (a gateway-only proxy) any listener on the port. A listener bound to the
/// URL's IP wins over a wildcard one.
fn pick_listener<'a>(
    snapshot: &'a Snapshot,
    port: u16,
    host_ip: Option<std::net::IpAddr>,
    gateway: Option<&str>,
) -> Option<&'a Listener> {
    let on_port = || {
        snapshot
            .listeners
            .iter()
            .map(|l| &**l)
            .filter(move |l| l.port() == port)
    };
    let best = |it: &mut dyn Iterator<Item = &'a Listener>| {
        it.max_by_key(|l| Some(l.address.ip()) == host_ip)
    };
    match gateway {
        Some(k) => best(&mut on_port().filter(|l| {
            matches!(&l.role, ListenerRole::Gateway { gateways } if gateways.iter().any(|g| g == k))
        })),
        None => best(&mut on_port().filter(|l| matches!(l.role, ListenerRole::Mesh)))
            .or_else(|| best(&mut on_port())),
    }
}

/// Explains `req` against `snapshot` with the proxy's own routing function.
/// Suggestions when no listener serves a URL: the service's port when the URL has none, or
/// `--gateway` when a Gateway serves that port.
fn no_listener_hint(snapshot: &Snapshot, uri: &http::Uri, port: u16, gateway: bool) -> String {
    let mut hints = Vec::new();
    if uri.port_u16().is_none() {
        let host = uri.host().unwrap_or("");
        let ports: Vec<u16> = snapshot
            .listeners
            .iter()
            .filter(|l| l.virtual_host(host).is_some())
            .map(|l| l.port())
            .collect();
        if let Some(p) = ports.first() {
            hints.push(format!(
                "the URL has no port (80 assumed): try http://{host}:{p}{}",
                uri.path_and_query().map_or("/", |x| x.as_str())
            ));
        }
    }
    if !gateway {
        let gateways: Vec<String> = snapshot
            .resources
            .iter()
            .filter_map(|r| match &r.spec {
                sluice_model::Spec::Gateway(gw)
                    if gw
                        .servers
                        .iter()
                        .any(|s| s.port.as_ref().is_some_and(|p| p.number == u32::from(port))) =>
                {
                    Some(format!("{}/{}", r.metadata.namespace, r.metadata.name))
                }
                _ => None,
            })
            .collect();
        if let Some(g) = gateways.first() {
            hints.push(format!(
                "Gateway {g} serves port {port}: add `--gateway {g}` to explain for the gateway"
            ));
        }
    }
    hints.iter().map(|h| format!("; {h}")).collect()
}

pub fn explain_request(
    snapshot: &Snapshot,
    req: &ExplainRequest,
) -> Result<Explanation, ExplainError> {
    let uri: http::Uri = req
        .url
        .parse()
        .map_err(|_| ExplainError::Url(req.url.clone()))?;
    let port = uri.port_u16().unwrap_or(80);
    let headers = parse_headers(&req.headers)?;
    let authority = headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| uri.authority().map(|x| x.to_string()))
        .unwrap_or_default();
    let host_ip = uri.host().and_then(|h| h.parse().ok());
    let listener =
        pick_listener(snapshot, port, host_ip, req.gateway.as_deref()).ok_or_else(|| {
            ExplainError::NoListener {
                role: if req.gateway.is_some() {
                    "gateway"
                } else {
                    "mesh"
                },
                port,
                listeners: snapshot
                    .listeners
                    .iter()
                    .map(|l| l.address.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                hint: no_listener_hint(snapshot, &uri, port, req.gateway.is_some()),
            }
        })?;
    let info = RequestInfo {
        method: &req.method,
        scheme: uri.scheme_str().unwrap_or("http"),
        authority: &authority,
        path_and_query: uri.path_and_query().map_or("/", |p| p.as_str()),
        headers: &headers,
        extensions: None,
    };
    Ok(explain(listener, &info))
}
