//! Non-forwarding actions: redirects and direct responses.

use base64::Engine as _;
use sluice_model::{HttpDirectResponse, HttpRedirect};

use crate::route_table::{DirectResponse, Redirect, RouteAction};

/// Compiles an `HTTPDirectResponse` (validation already checked status and body).
pub(crate) fn direct_response(d: &HttpDirectResponse) -> RouteAction {
    let body = match &d.body {
        Some(b) => match (&b.string, &b.bytes) {
            (Some(s), _) => s.clone().into_bytes(),
            (None, Some(b64)) => base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap_or_default(),
            _ => Vec::new(),
        },
        None => Vec::new(),
    };
    RouteAction::DirectResponse(Box::new(DirectResponse {
        status: d.status.and_then(|s| u16::try_from(s).ok()).unwrap_or(200),
        body,
    }))
}

/// Compiles an `HTTPRedirect` (default code 301).
pub(crate) fn redirect(r: &HttpRedirect) -> RouteAction {
    RouteAction::Redirect(Box::new(Redirect {
        uri: r.uri.clone().filter(|u| !u.is_empty()),
        prefix_rewrite: r.prefix_rewrite.clone(),
        authority: r.authority.clone().filter(|a| !a.is_empty()),
        scheme: r.scheme.clone().filter(|s| !s.is_empty()),
        port: r.port.and_then(|p| u16::try_from(p).ok()),
        port_from_request: r.derive_port.as_deref() == Some("FROM_REQUEST_PORT"),
        code: r
            .redirect_code
            .and_then(|c| u16::try_from(c).ok())
            .unwrap_or(301),
    }))
}
