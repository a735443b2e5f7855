//! PeerAuthentication and RequestAuthentication: the webhook's and CRD schema's rules
//! (spec §4 and §6).

use sluice_model::location::{push_index, push_key};
use sluice_model::{JwtRule, PeerAuthentication, RequestAuthentication};

use super::common::{check_duration, check_enum};
use super::headers::is_token;
use super::policy_target::{check_attachment, check_selector};
use super::Ctx;

const MTLS_MODES: [&str; 4] = ["UNSET", "DISABLE", "PERMISSIVE", "STRICT"];

/// Validates a PeerAuthentication.
pub(crate) fn validate_peer_authentication(ctx: &mut Ctx<'_>, pa: &PeerAuthentication) {
    check_selector(ctx, "spec.selector", pa.selector.as_ref());
    if let Some(m) = &pa.mtls {
        check_enum(
            ctx,
            "spec.mtls.mode",
            "mTLS mode",
            m.mode.as_deref(),
            &MTLS_MODES,
        );
    }
    if pa.port_level_mtls.is_empty() {
        return;
    }
    if pa
        .selector
        .as_ref()
        .is_none_or(|s| s.match_labels.is_empty())
    {
        ctx.error(
            "spec.portLevelMtls",
            "portLevelMtls needs a selector with at least one label",
        );
    }
    for (port, m) in &pa.port_level_mtls {
        let field = push_key("spec.portLevelMtls", port);
        match port.parse::<u32>() {
            Ok(p) if (1..=65535).contains(&p) => {}
            _ => ctx.error(
                &field,
                format!("port `{port}` must be a number from 1 to 65535"),
            ),
        }
        check_enum(
            ctx,
            &push_key(&field, "mode"),
            "mTLS mode",
            m.mode.as_deref(),
            &MTLS_MODES,
        );
    }
}

/// Istio allows at most this many JWT rules per object.
const MAX_JWT_RULES: usize = 4096;

/// Validates a RequestAuthentication.
pub(crate) fn validate_request_authentication(ctx: &mut Ctx<'_>, ra: &RequestAuthentication) {
    check_attachment(
        ctx,
        ra.selector.as_ref(),
        ra.target_ref.as_ref(),
        &ra.target_refs,
    );
    if ra.jwt_rules.len() > MAX_JWT_RULES {
        ctx.error(
            "spec.jwtRules",
            format!("at most {MAX_JWT_RULES} JWT rules are allowed"),
        );
    }
    for (i, r) in ra.jwt_rules.iter().enumerate() {
        check_jwt_rule(ctx, &push_index("spec.jwtRules", i), r);
    }
}

fn check_jwt_rule(ctx: &mut Ctx<'_>, field: &str, r: &JwtRule) {
    let jwks_uri = r.jwks_uri.as_deref().filter(|u| !u.is_empty());
    if r.issuer.is_empty() && jwks_uri.is_none() {
        ctx.error(
            push_key(field, "issuer"),
            "a JWT rule needs an `issuer` or a `jwksUri`",
        );
    }
    for (i, a) in r.audiences.iter().enumerate() {
        if a.is_empty() {
            ctx.error(
                push_index(&push_key(field, "audiences"), i),
                "empty audience is not allowed",
            );
        }
    }
    if let Some(uri) = jwks_uri {
        if let Some(p) = jwks_uri_problem(uri) {
            ctx.error(push_key(field, "jwksUri"), p);
        }
        if r.jwks.as_deref().is_some_and(|j| !j.is_empty()) {
            ctx.error(
                push_key(field, "jwks"),
                "`jwks` and `jwksUri` cannot both be set",
            );
        }
    }
    if let Some(jwks) = r.jwks.as_deref().filter(|j| !j.is_empty()) {
        check_jwks(ctx, &push_key(field, "jwks"), jwks);
    }
    for (i, h) in r.from_headers.iter().enumerate() {
        let f = push_key(&push_index(&push_key(field, "fromHeaders"), i), "name");
        if h.name.is_empty() {
            ctx.error(&f, "header `name` is required");
        } else if !is_token(&h.name) {
            ctx.error(&f, format!("invalid header name `{}`", h.name));
        }
    }
    for (list, name) in [
        (&r.from_params, "fromParams"),
        (&r.from_cookies, "fromCookies"),
    ] {
        for (i, v) in list.iter().enumerate() {
            if v.is_empty() {
                ctx.error(
                    push_index(&push_key(field, name), i),
                    "empty value is not allowed",
                );
            }
        }
    }
    if let Some(h) = r.output_payload_to_header.as_deref() {
        if !h.is_empty() && !is_token(h) {
            ctx.error(
                push_key(field, "outputPayloadToHeader"),
                format!("invalid header name `{h}`"),
            );
        }
    }
    for (i, c) in r.output_claim_to_headers.iter().enumerate() {
        let f = push_index(&push_key(field, "outputClaimToHeaders"), i);
        let header_ok = !c.header.is_empty()
            && c.header
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !header_ok {
            ctx.error(
                push_key(&f, "header"),
                format!("header `{}` must match ^[-_A-Za-z0-9]+$", c.header),
            );
        }
        if c.claim.is_empty() {
            ctx.error(push_key(&f, "claim"), "`claim` is required");
        }
    }
    check_duration(
        ctx,
        &push_key(field, "timeout"),
        "JWKS fetch timeout",
        r.timeout.as_deref(),
    );
    if r.space_delimited_claims.len() > 64 {
        ctx.error(
            push_key(field, "spaceDelimitedClaims"),
            "at most 64 space-delimited claims are allowed",
        );
    }
}

fn jwks_uri_problem(uri: &str) -> Option<String> {
    if uri.len() > 2048 {
        return Some("jwksUri is longer than 2048 characters".into());
    }
    match uri.parse::<http::Uri>() {
        Ok(u) if matches!(u.scheme_str(), Some("http" | "https")) && u.authority().is_some() => {
            None
        }
        _ => Some(format!("jwksUri `{uri}` must be an http or https URL")),
    }
}

fn check_jwks(ctx: &mut Ctx<'_>, field: &str, jwks: &str) {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(jwks) else {
        ctx.error(field, "`jwks` is not a JSON key set");
        return;
    };
    let keys = v.get("keys").and_then(|k| k.as_array());
    let Some(keys) = keys else {
        ctx.error(field, "`jwks` needs a `keys` list");
        return;
    };
    if keys.iter().any(|k| k.get("d").is_some()) {
        ctx.warn(
            field,
            "`jwks` holds a private key (`d`): publish only public keys",
        );
    }
}
