//! JWT claim routing: VirtualService `headers`/`withoutHeaders` keys
//! `@request.auth.claims.<c>[.<nested>]` and `@request.auth.claims[<c>][<nested>]` match the
//! verified token's claims, not a header (Istio compiles them to a match on `jwt_authn`
//! metadata).

use serde::Serialize;
use serde_json::Value;

use crate::authz::VerifiedJwt;
use crate::matcher::StrMatch;

const PREFIX: &str = "@request.auth.claims";

/// The claim path of a claim key (prefix case-insensitive); `None` for an ordinary header name
/// or a malformed key.
pub fn claim_path(key: &str) -> Option<Vec<String>> {
    let head = key.get(..PREFIX.len())?;
    if !head.eq_ignore_ascii_case(PREFIX) {
        return None;
    }
    let rest = &key[PREFIX.len()..];
    let path: Vec<String> = if let Some(dotted) = rest.strip_prefix('.') {
        dotted.split('.').map(str::to_string).collect()
    } else if rest.starts_with('[') {
        let mut out = Vec::new();
        let mut tail = rest;
        while !tail.is_empty() {
            let (inner, after) = tail.strip_prefix('[')?.split_once(']')?;
            out.push(inner.to_string());
            tail = after;
        }
        out
    } else {
        return None;
    };
    (!path.is_empty() && path.iter().all(|p| !p.is_empty())).then_some(path)
}

/// A compiled condition on a claim.
#[derive(Debug, Clone, Serialize)]
pub struct ClaimMatch {
    /// Claim path (`["groups"]`, `["account", "tier"]`).
    pub path: Vec<String>,
    /// Condition on the claim's value.
    pub value: StrMatch,
}

impl ClaimMatch {
    /// Whether the token carries the claim with a matching value: a string directly, a list of
    /// strings by any element, anything else never. No token never matches.
    pub fn matches(&self, jwt: Option<&VerifiedJwt>) -> bool {
        let Some(claim) = jwt.and_then(|j| j.claim(&self.path)) else {
            return false;
        };
        match claim {
            Value::String(s) => self.value.matches(s, false),
            Value::Array(items) => items
                .iter()
                .any(|i| i.as_str().is_some_and(|s| self.value.matches(s, false))),
            _ => false,
        }
    }

    /// The claim path as written in dot form, for messages.
    pub fn display_path(&self) -> String {
        format!("{PREFIX}.{}", self.path.join("."))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        assert_eq!(
            claim_path("@request.auth.claims.groups"),
            Some(vec!["groups".into()])
        );
        assert_eq!(
            claim_path("@Request.Auth.Claims.account.tier"),
            Some(vec!["account".into(), "tier".into()])
        );
        assert_eq!(
            claim_path("@request.auth.claims[https://x/roles][a.b]"),
            Some(vec!["https://x/roles".into(), "a.b".into()])
        );
        assert_eq!(claim_path("@request.auth.claims"), None);
        assert_eq!(claim_path("@request.auth.claims."), None);
        assert_eq!(claim_path("@request.auth.claims[a]x"), None);
        assert_eq!(claim_path("x-groups"), None);
    }
}
