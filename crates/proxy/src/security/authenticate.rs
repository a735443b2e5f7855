//! Request authentication (RequestAuthentication's JWT rules): the authenticator for the
//! snapshot in force, rebuilt when a reload brings new rules, with JWKS keys fetched and
//! cached outside the request path (`sluice_authn`).

use std::sync::Arc;

use arc_swap::ArcSwapOption;
use http::Request;
use hyper::body::Incoming;
use sluice_authn::{
    AuthnOutcome, ClaimToHeader, JwksCache, JwksSource, JwtAuthenticator, JwtHeader, JwtRule,
};
use sluice_config::authz::{JwtRuleSpec, Security, VerifiedJwt};
use sluice_config::Snapshot;

use super::authorize::Denial;

/// The authenticator of one compiled security config.
struct Built {
    /// The config it was built for (held so that its address cannot be reused).
    security: Arc<Security>,
    authenticator: JwtAuthenticator,
}

/// JWT verification state shared by every request: the key cache and the current rules.
#[derive(Default)]
pub struct Authn {
    keys: Arc<JwksCache>,
    built: ArcSwapOption<Built>,
}

impl std::fmt::Debug for Authn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authn").finish_non_exhaustive()
    }
}

/// The authentication crate's rule for a compiled `jwtRules` entry.
fn rule(spec: &JwtRuleSpec) -> JwtRule {
    let jwks = match (&spec.jwks, &spec.jwks_uri) {
        (Some(inline), _) => JwksSource::Inline(inline.clone()),
        (None, Some(uri)) => JwksSource::Uri(uri.clone()),
        (None, None) => JwksSource::Discovery,
    };
    JwtRule {
        audiences: spec.audiences.clone(),
        from_headers: spec
            .from_headers
            .iter()
            .map(|h| JwtHeader {
                name: h.name.clone(),
                prefix: h.prefix.clone().unwrap_or_default(),
            })
            .collect(),
        from_params: spec.from_params.clone(),
        from_cookies: spec.from_cookies.clone(),
        output_payload_to_header: spec.output_payload_to_header.clone(),
        forward_original_token: spec.forward_original_token,
        output_claim_to_headers: spec
            .output_claim_to_headers
            .iter()
            .map(|c| ClaimToHeader {
                header: c.header.clone(),
                claim: c.claim.clone(),
            })
            .collect(),
        timeout: spec.timeout,
        space_delimited_claims: spec.space_delimited_claims.clone(),
        ..JwtRule::new(spec.issuer.clone(), jwks)
    }
}

impl Authn {
    /// The key cache (its sources' status, readiness).
    pub fn keys(&self) -> &Arc<JwksCache> {
        &self.keys
    }

    /// Builds the authenticator for a new snapshot's rules now, so that remote keys start
    /// loading before the first request needs them.
    pub fn prepare(&self, snapshot: &Snapshot) {
        let _ = self.for_snapshot(snapshot);
    }

    fn for_snapshot(&self, snapshot: &Snapshot) -> Option<Arc<Built>> {
        let security = &snapshot.security;
        if security.jwt_rules.is_empty() {
            return None;
        }
        if let Some(b) = self.built.load_full() {
            if Arc::ptr_eq(&b.security, security) {
                return Some(b);
            }
        }
        let rules = security.jwt_rules.iter().map(rule).collect();
        let built = Arc::new(Built {
            security: security.clone(),
            authenticator: JwtAuthenticator::new(rules, self.keys.clone()),
        });
        self.built.store(Some(built.clone()));
        Some(built)
    }

    /// Verifies the request's tokens: a valid one leaves its claims in the request's
    /// extensions ([`VerifiedJwt`]) and the rules' outputs in its headers; an invalid one is
    /// refused (`401`, or `403` for an audience not allowed); no token passes.
    pub(crate) fn authenticate(
        &self,
        snapshot: &Snapshot,
        req: Request<Incoming>,
    ) -> Result<Request<Incoming>, Box<Denial>> {
        let Some(built) = self.for_snapshot(snapshot) else {
            return Ok(req);
        };
        let (mut parts, body) = req.into_parts();
        match built.authenticator.authenticate(&mut parts) {
            AuthnOutcome::NoToken => {}
            AuthnOutcome::Verified(token) => {
                parts.extensions.insert(VerifiedJwt {
                    principal: token.principal,
                    claims: token.claims,
                });
            }
            AuthnOutcome::Rejected(r) => {
                tracing::debug!(details = %r.details, "request refused by JWT authentication");
                return Err(Denial::jwt(r.status, r.body, r.www_authenticate));
            }
        }
        Ok(Request::from_parts(parts, body))
    }
}
