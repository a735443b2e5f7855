//! RequestAuthentication: the JWT rules that apply to this proxy, merged and sorted by issuer,
//! as plain validated data for the JWT verification stage.

use std::time::Duration;

use serde::Serialize;
use sluice_model::{JwtRule, Resource, Spec};

use super::attachment::policy_applies;
use crate::duration::parse_istio_duration;
use crate::proxy::ProxyConfig;

/// JWKS fetch timeout when a rule sets none.
pub const DEFAULT_JWKS_TIMEOUT: Duration = Duration::from_secs(5);

/// A header a token is read from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JwtHeaderSpec {
    /// Header name.
    pub name: String,
    /// Case-sensitive value prefix (`Bearer `); a value without it holds no token.
    pub prefix: Option<String>,
}

/// A claim copied into a request header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClaimToHeaderSpec {
    /// Header to set.
    pub header: String,
    /// Claim, nested with `.`.
    pub claim: String,
}

/// One accepted issuer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JwtRuleSpec {
    /// Expected `iss` (may be empty when `jwks_uri` is set).
    pub issuer: String,
    /// Accepted `aud` values; empty means no audience check.
    pub audiences: Vec<String>,
    /// Inline JWKS (JSON text).
    pub jwks: Option<String>,
    /// Where the JWKS is fetched; with neither this nor `jwks`, OIDC discovery from the issuer.
    pub jwks_uri: Option<String>,
    /// Headers holding the token (empty with the other two: `Authorization: Bearer`).
    pub from_headers: Vec<JwtHeaderSpec>,
    /// Query parameters holding the token.
    pub from_params: Vec<String>,
    /// Cookies holding the token.
    pub from_cookies: Vec<String>,
    /// Header receiving the verified payload (base64url JSON).
    pub output_payload_to_header: Option<String>,
    /// Keep the token in the forwarded request.
    pub forward_original_token: bool,
    /// Claims copied into headers.
    pub output_claim_to_headers: Vec<ClaimToHeaderSpec>,
    /// JWKS fetch timeout.
    pub timeout: Duration,
    /// Claims split on spaces besides `scope` and `permission`.
    pub space_delimited_claims: Vec<String>,
}

impl JwtRuleSpec {
    /// Converts a validated rule.
    pub fn from_rule(r: &JwtRule) -> JwtRuleSpec {
        JwtRuleSpec {
            issuer: r.issuer.clone(),
            audiences: r.audiences.clone(),
            jwks: r.jwks.clone().filter(|j| !j.is_empty()),
            jwks_uri: r.jwks_uri.clone().filter(|u| !u.is_empty()),
            from_headers: r
                .from_headers
                .iter()
                .map(|h| JwtHeaderSpec {
                    name: h.name.clone(),
                    prefix: h.prefix.clone(),
                })
                .collect(),
            from_params: r.from_params.clone(),
            from_cookies: r.from_cookies.clone(),
            output_payload_to_header: r.output_payload_to_header.clone(),
            forward_original_token: r.forward_original_token.unwrap_or(false),
            output_claim_to_headers: r
                .output_claim_to_headers
                .iter()
                .map(|c| ClaimToHeaderSpec {
                    header: c.header.clone(),
                    claim: c.claim.clone(),
                })
                .collect(),
            timeout: r
                .timeout
                .as_deref()
                .and_then(|t| parse_istio_duration(t).ok())
                .unwrap_or(DEFAULT_JWKS_TIMEOUT),
            space_delimited_claims: r.space_delimited_claims.clone(),
        }
    }
}

/// The JWT rules of every RequestAuthentication that applies to `proxy`, sorted by issuer
/// (stable: equal issuers keep precedence order).
pub fn jwt_rules(ordered: &[&Resource], proxy: &ProxyConfig) -> Vec<JwtRuleSpec> {
    let mut rules: Vec<JwtRuleSpec> = ordered
        .iter()
        .filter_map(|r| match &r.spec {
            Spec::RequestAuthentication(ra) => Some((*r, ra)),
            _ => None,
        })
        .filter(|(r, ra)| {
            let targeted = ra.target_ref.is_some() || !ra.target_refs.is_empty();
            policy_applies(&r.metadata, ra.selector.as_ref(), targeted, proxy)
        })
        .flat_map(|(_, ra)| ra.jwt_rules.iter().map(JwtRuleSpec::from_rule))
        .collect();
    rules.sort_by(|a, b| a.issuer.cmp(&b.issuer));
    rules
}
