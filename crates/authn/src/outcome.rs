//! What authentication decided for a request.

use http::header::HOST;
use http::request::Parts;
use http::StatusCode;
use serde_json::Value;

use crate::failure::JwtFailure;

/// Envoy truncates the request path in the `realm` to this many bytes.
const MAX_REALM_PATH: usize = 256;

/// The result of [`crate::JwtAuthenticator::authenticate`].
#[derive(Clone, Debug, PartialEq)]
pub enum AuthnOutcome {
    /// No token in any configured location (or a CORS preflight): the request passes with
    /// no request principal; only authorization can refuse it.
    NoToken,
    /// Every token present verified; the request was rewritten per the rules' outputs.
    Verified(VerifiedToken),
    /// A token was present and invalid: answer with this and do not forward.
    Rejected(Rejection),
}

/// Who a verified token says the caller is.
#[derive(Clone, Debug, PartialEq)]
pub struct VerifiedToken {
    /// `iss`, if the token has one.
    pub issuer: Option<String>,
    /// `sub`, if the token has one.
    pub subject: Option<String>,
    /// `<iss>/<sub>`, only when both are present (`request.auth.principal`).
    pub principal: Option<String>,
    /// `aud` as a list (`request.auth.audiences`).
    pub audiences: Vec<String>,
    /// `azp` (`request.auth.presenter`).
    pub presenter: Option<String>,
    /// The payload, with `scope`, `permission` and the rule's space-delimited claims split
    /// into lists (`request.auth.claims`).
    pub claims: Value,
}

/// A local reply refusing a request, as Envoy's jwt_authn sends it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// The reason.
    pub failure: JwtFailure,
    /// 401, or 403 for a disallowed audience.
    pub status: StatusCode,
    /// Response body: Envoy's text of the reason.
    pub body: String,
    /// `WWW-Authenticate` value: `Bearer realm="<scheme://host/path>", error="invalid_token"`.
    pub www_authenticate: String,
    /// Response code details: `jwt_authn_access_denied{Jwt_is_expired}`.
    pub details: String,
}

impl Rejection {
    /// The reply for `failure` to the request `parts` (read before any rewriting).
    pub fn new(failure: JwtFailure, parts: &Parts) -> Self {
        Self {
            failure,
            status: failure.status(),
            body: failure.to_string(),
            www_authenticate: format!(
                "Bearer realm=\"{}\", error=\"invalid_token\"",
                original_uri(parts)
            ),
            details: failure.details(),
        }
    }
}

/// `scheme://host/path?query` as Envoy rebuilds the original URI: the scheme is
/// `x-forwarded-proto` when set, the path is cut to 256 bytes.
fn original_uri(parts: &Parts) -> String {
    let scheme = parts
        .headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| parts.uri.scheme_str().map(str::to_owned))
        .unwrap_or_else(|| "http".to_owned());
    let host = parts
        .headers
        .get(HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| parts.uri.authority().map(|a| a.as_str().to_owned()))
        .unwrap_or_default();
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let mut cut = path.len().min(MAX_REALM_PATH);
    while !path.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{scheme}://{host}{}", &path[..cut])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(req: http::request::Builder) -> Parts {
        req.body(()).unwrap().into_parts().0
    }

    #[test]
    fn realm_uses_forwarded_proto_host_and_path() {
        let p = parts(
            http::Request::get("/orders?id=1")
                .header("host", "shop.example")
                .header("x-forwarded-proto", "https"),
        );
        let r = Rejection::new(JwtFailure::Expired, &p);
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert_eq!(r.body, "Jwt is expired");
        assert_eq!(
            r.www_authenticate,
            r#"Bearer realm="https://shop.example/orders?id=1", error="invalid_token""#
        );
        assert_eq!(r.details, "jwt_authn_access_denied{Jwt_is_expired}");
    }

    #[test]
    fn realm_falls_back_to_uri_and_truncates() {
        let long = format!("/{}", "a".repeat(300));
        let p = parts(http::Request::get(format!("http://h:8080{long}")));
        let r = Rejection::new(JwtFailure::AudienceNotAllowed, &p);
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        let expected = format!("http://h:8080{}", &long[..256]);
        assert_eq!(
            r.www_authenticate,
            format!("Bearer realm=\"{expected}\", error=\"invalid_token\"")
        );
    }
}
