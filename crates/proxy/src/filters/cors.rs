//! CORS (Envoy's CORS filter): answer matching preflights locally, decorate actual responses.

use http::header::{HeaderMap, HeaderValue};
use http::{Method, Response, StatusCode};
use sluice_config::policy::CorsPolicy;

use crate::body::Body;

/// What to do with a request under a CORS policy.
#[derive(Debug)]
pub enum CorsOutcome {
    /// Not a CORS request, or an unmatched preflight to forward: proceed normally.
    Forward,
    /// A CORS request from an allowed origin: proceed and decorate the response.
    Allowed(HeaderValue),
    /// Answer locally (a preflight).
    Respond(Response<Body>),
}

fn origin_allowed(policy: &CorsPolicy, origin: &str) -> bool {
    policy.allow_origins.iter().any(|m| match m {
        sluice_config::matcher::StrMatch::Exact(e) if e == "*" => true,
        m => m.matches(origin, false),
    })
}

fn insert(h: &mut HeaderMap, name: &'static str, v: &str) {
    if let Ok(v) = HeaderValue::from_str(v) {
        h.insert(name, v);
    }
}

/// Classifies a request.
pub fn check(policy: &CorsPolicy, method: &Method, headers: &HeaderMap) -> CorsOutcome {
    let Some(origin) = headers.get(http::header::ORIGIN) else {
        return CorsOutcome::Forward;
    };
    let preflight = method == Method::OPTIONS
        && headers.contains_key(http::header::ACCESS_CONTROL_REQUEST_METHOD);
    let allowed = origin.to_str().is_ok_and(|o| origin_allowed(policy, o));
    match (preflight, allowed) {
        (true, true) => {
            let mut r = Response::new(Body::empty());
            *r.status_mut() = StatusCode::OK;
            let h = r.headers_mut();
            h.insert(http::header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
            if let Some(m) = &policy.allow_methods {
                insert(h, "access-control-allow-methods", m);
            }
            if let Some(a) = &policy.allow_headers {
                insert(h, "access-control-allow-headers", a);
            }
            if let Some(age) = policy.max_age_secs {
                insert(h, "access-control-max-age", &age.to_string());
            }
            if policy.allow_credentials {
                insert(h, "access-control-allow-credentials", "true");
            }
            CorsOutcome::Respond(r)
        }
        (true, false) if !policy.forward_unmatched_preflights => {
            let mut r = Response::new(Body::empty());
            *r.status_mut() = StatusCode::OK;
            CorsOutcome::Respond(r)
        }
        (false, true) => CorsOutcome::Allowed(origin.clone()),
        _ => CorsOutcome::Forward,
    }
}

/// Adds the CORS headers of an allowed actual request to its response.
pub fn decorate(policy: &CorsPolicy, origin: HeaderValue, headers: &mut HeaderMap) {
    headers.insert(http::header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    if let Some(e) = &policy.expose_headers {
        insert(headers, "access-control-expose-headers", e);
    }
    if policy.allow_credentials {
        insert(headers, "access-control-allow-credentials", "true");
    }
}
