//! The request-path check: find the tokens, verify each against its issuer's rule, and
//! either refuse the request or rewrite it per the rules' outputs.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::{ACCESS_CONTROL_REQUEST_METHOD, ORIGIN};
use http::request::Parts;
use http::Method;
use serde_json::Value;

use crate::cache::JwksCache;
use crate::claims;
use crate::extract::Extractor;
use crate::failure::JwtFailure;
use crate::outcome::{AuthnOutcome, Rejection, VerifiedToken};
use crate::outputs;
use crate::rule::JwtRule;
use crate::slot::{JwksSlot, KeysState};
use crate::token::ParsedJwt;

/// Envoy's default allowance for clocks that disagree, applied to `exp` and `nbf`.
pub const CLOCK_SKEW: Duration = Duration::from_secs(60);

struct CompiledRule {
    rule: JwtRule,
    keys: Arc<JwksSlot>,
    /// Accepted audiences, normalised as Envoy compares them.
    audiences: Vec<String>,
}

/// The JWT rules that apply to one workload or gateway, ready for requests.
pub struct JwtAuthenticator {
    rules: Vec<CompiledRule>,
    extractor: Extractor,
}

impl std::fmt::Debug for JwtAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let issuers: Vec<&str> = self.rules.iter().map(|r| r.rule.issuer.as_str()).collect();
        f.debug_struct("JwtAuthenticator")
            .field("issuers", &issuers)
            .finish()
    }
}

impl JwtAuthenticator {
    /// Compiles `rules`, taking their keys from `keys` (registering sources it lacks).
    pub fn new(rules: Vec<JwtRule>, keys: Arc<JwksCache>) -> Self {
        let mut extractor = Extractor::default();
        let mut compiled = Vec::with_capacity(rules.len());
        for (index, rule) in rules.into_iter().enumerate() {
            if rule.uses_default_locations() {
                extractor.add_defaults(index);
            }
            for header in &rule.from_headers {
                extractor.add_header(index, &header.name, &header.prefix);
            }
            for param in &rule.from_params {
                extractor.add_param(index, param);
            }
            for cookie in &rule.from_cookies {
                extractor.add_cookie(index, cookie);
            }
            compiled.push(CompiledRule {
                keys: keys.slot(&rule),
                audiences: rule
                    .audiences
                    .iter()
                    .map(|a| sanitize_audience(a))
                    .collect(),
                rule,
            });
        }
        Self {
            rules: compiled,
            extractor,
        }
    }

    /// True when there is no rule, so every request passes untouched.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The rules, in the order given.
    pub fn rules(&self) -> impl Iterator<Item = &JwtRule> {
        self.rules.iter().map(|r| &r.rule)
    }

    /// Authenticates the request now; see [`JwtAuthenticator::authenticate_at`].
    pub fn authenticate(&self, parts: &mut Parts) -> AuthnOutcome {
        self.authenticate_at(parts, SystemTime::now())
    }

    /// Authenticates the request as of `now`. Never waits: keys not fetched yet count as a
    /// failed fetch. On success the tokens are removed (unless forwarded) and the outputs
    /// are written into `parts`; on rejection `parts` is left as it was.
    pub fn authenticate_at(&self, parts: &mut Parts, now: SystemTime) -> AuthnOutcome {
        if self.rules.is_empty() || is_cors_preflight(parts) {
            return AuthnOutcome::NoToken;
        }
        let found = self.extractor.extract(parts);
        if found.is_empty() {
            return AuthnOutcome::NoToken;
        }
        let now = now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs());
        let mut verified = Vec::with_capacity(found.len());
        // Every token must be valid: a request with one good and one bad token would let
        // the backend read the bad one as if it had been checked.
        for token in &found {
            match self.verify(&token.token, token.rules, now) {
                Ok((rule, jwt)) => verified.push((rule, jwt, token.place)),
                Err(failure) => return AuthnOutcome::Rejected(Rejection::new(failure, parts)),
            }
        }
        let mut first = None;
        for (rule, jwt, place) in &verified {
            let rule = &self.rules[*rule].rule;
            if first.is_none() {
                first = Some(verified_token(rule, jwt));
            }
            outputs::apply(parts, rule, jwt, place);
        }
        match first {
            Some(token) => AuthnOutcome::Verified(token),
            None => AuthnOutcome::NoToken,
        }
    }

    /// Envoy's order: format, issuer, time, audience, then the signature.
    fn verify<'t>(
        &self,
        token: &'t str,
        candidates: &[usize],
        now: u64,
    ) -> Result<(usize, ParsedJwt<'t>), JwtFailure> {
        let jwt = ParsedJwt::parse(token)?;
        let iss = jwt.iss.as_deref().unwrap_or("");
        let index = candidates
            .iter()
            .copied()
            .find(|&i| self.rules[i].rule.issuer == iss)
            .or_else(|| {
                candidates
                    .iter()
                    .copied()
                    .find(|&i| self.rules[i].rule.issuer.is_empty())
            })
            .ok_or(JwtFailure::UnknownIssuer)?;
        let rule = &self.rules[index];
        jwt.check_time(now, CLOCK_SKEW.as_secs())?;
        if !rule.audiences.is_empty()
            && !jwt
                .audiences
                .iter()
                .any(|aud| rule.audiences.contains(&sanitize_audience(aud)))
        {
            return Err(JwtFailure::AudienceNotAllowed);
        }
        match &**rule.keys.load() {
            KeysState::Ready(keys) => keys.verify(&jwt)?,
            KeysState::Pending | KeysState::FetchFailed => return Err(JwtFailure::JwksFetchFailed),
        }
        Ok((index, jwt))
    }
}

fn verified_token(rule: &JwtRule, jwt: &ParsedJwt<'_>) -> VerifiedToken {
    let principal = match (&jwt.iss, &jwt.sub) {
        (Some(iss), Some(sub)) => Some(format!("{iss}/{sub}")),
        _ => None,
    };
    VerifiedToken {
        issuer: jwt.iss.clone(),
        subject: jwt.sub.clone(),
        principal,
        audiences: jwt.audiences.clone(),
        presenter: jwt
            .payload
            .get("azp")
            .and_then(Value::as_str)
            .map(str::to_owned),
        claims: claims::normalise(&jwt.payload, &rule.space_delimited_claims),
    }
}

/// A preflight carries no credentials; Envoy lets it through unchecked.
fn is_cors_preflight(parts: &Parts) -> bool {
    let present = |name| {
        parts
            .headers
            .get(name)
            .is_some_and(|v: &http::HeaderValue| !v.is_empty())
    };
    parts.method == Method::OPTIONS && present(ORIGIN) && present(ACCESS_CONTROL_REQUEST_METHOD)
}

/// Envoy compares audiences without an `http(s)://` scheme or a trailing slash.
fn sanitize_audience(aud: &str) -> String {
    let aud = aud
        .strip_prefix("https://")
        .or_else(|| aud.strip_prefix("http://"))
        .unwrap_or(aud);
    aud.strip_suffix('/').unwrap_or(aud).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audiences_compare_without_scheme_or_slash() {
        assert_eq!(sanitize_audience("https://shop.example/"), "shop.example");
        assert_eq!(sanitize_audience("http://a"), "a");
        assert_eq!(sanitize_audience("plain"), "plain");
    }
}
