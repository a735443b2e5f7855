//! Peer identities (`spiffe://<td>/ns/<ns>/sa/<sa>`) and JWT principals (`<iss>/<sub>`) as
//! AuthorizationPolicy fields name them.

use regex::Regex;

use super::attributes::VerifiedJwt;
use super::value_match::ValueMatch;

/// The scheme the proxy adds to identities written in policies.
pub const SPIFFE: &str = "spiffe://";

/// The trust domain that always stands for "this mesh" in policies.
const CLUSTER_LOCAL: &str = "cluster.local";

/// The mesh's trust domain and its aliases.
#[derive(Debug, Clone)]
pub struct TrustBundle<'a> {
    /// The local trust domain first, then the aliases.
    pub domains: Vec<&'a str>,
}

impl TrustBundle<'_> {
    /// Rewrites a policy principal over the local trust domain and its aliases: a principal
    /// naming the local domain, an alias or `cluster.local` means "this mesh", whichever of
    /// its domains the peer's certificate carries. Foreign domains stay as written.
    pub fn expand(&self, principal: &str) -> Vec<String> {
        if principal.starts_with('*') {
            return vec![principal.to_string()];
        }
        let parts: Vec<&str> = principal.split("/ns/").collect();
        let [td, rest] = parts[..] else {
            return vec![principal.to_string()];
        };
        let local = td == CLUSTER_LOCAL || self.domains.iter().any(|d| domain_matches(d, td));
        if !local {
            return vec![principal.to_string()];
        }
        let mut out: Vec<String> = Vec::new();
        for d in &self.domains {
            let p = format!("{d}/ns/{rest}");
            if !out.contains(&p) {
                out.push(p);
            }
        }
        out
    }
}

/// Alias lists may use `*` at either end.
fn domain_matches(pattern: &str, td: &str) -> bool {
    ValueMatch::parse(pattern, false).matches(td)
}

/// A compiled `principals` value.
#[derive(Debug, Clone)]
pub struct PrincipalMatch(ValueMatch);

impl PrincipalMatch {
    /// Compiles one (already expanded) value.
    pub fn new(v: &str) -> Self {
        PrincipalMatch(ValueMatch::with_scheme(v, SPIFFE))
    }

    /// Whether the peer's identity matches; plain text never does.
    pub fn matches(&self, peer: Option<&str>) -> bool {
        peer.is_some_and(|p| self.0.matches_with_scheme(p, SPIFFE))
    }
}

/// Builds an identity regex from a policy value where `*` stands for anything.
fn glob(v: &str) -> String {
    v.split('*')
        .map(regex::escape)
        .collect::<Vec<_>>()
        .join(".*")
}

/// A compiled `namespaces` value: `/ns/<value>/` inside the identity.
pub fn namespace_regex(v: &str) -> Result<Regex, String> {
    Regex::new(&format!("^.*/ns/{}/.*$", glob(v))).map_err(|e| e.to_string())
}

/// A compiled `serviceAccounts` value (`<ns>/<sa>` or `<sa>` in the policy's namespace).
pub fn service_account_regex(v: &str, policy_namespace: &str) -> Result<Regex, String> {
    let (ns, sa) = v.split_once('/').unwrap_or((policy_namespace, v));
    Regex::new(&format!(
        "^spiffe://.+/ns/{}/(.+/|)sa/{}(/.+)?$",
        regex::escape(ns),
        regex::escape(sa)
    ))
    .map_err(|e| e.to_string())
}

/// The trust domain of a peer identity.
pub fn trust_domain_of(peer: &str) -> Option<&str> {
    peer.strip_prefix(SPIFFE)?.split('/').next()
}

/// A compiled `requestPrincipals` value, matched on `iss` and `sub` separately (split at the
/// last `/`), as Envoy's JWT metadata holds them.
#[derive(Debug, Clone)]
pub enum RequestPrincipalMatch {
    /// `*`: a token with non-empty `iss` and `sub`.
    Any,
    /// Issuer and subject forms.
    Parts {
        /// Issuer form (absent: any issuer).
        iss: Option<ValueMatch>,
        /// Subject form (absent: any subject, `sub` not required).
        sub: Option<ValueMatch>,
    },
}

impl RequestPrincipalMatch {
    /// Compiles one value.
    pub fn new(v: &str) -> Self {
        if v == "*" {
            return RequestPrincipalMatch::Any;
        }
        match v.rsplit_once('/') {
            // Only a leading `*` (issuer suffix) and a trailing `*` (subject prefix) are
            // operators; anything else is literal.
            Some((iss, sub)) => RequestPrincipalMatch::Parts {
                iss: Some(match iss.strip_prefix('*') {
                    Some(suffix) => ValueMatch::Suffix(suffix.to_string()),
                    None => ValueMatch::Exact(iss.to_string()),
                }),
                sub: Some(match sub.strip_suffix('*') {
                    Some("") => ValueMatch::Present,
                    Some(prefix) => ValueMatch::Prefix(prefix.to_string()),
                    None => ValueMatch::Exact(sub.to_string()),
                }),
            },
            None => match ValueMatch::parse(v, false) {
                ValueMatch::Suffix(s) => RequestPrincipalMatch::Parts {
                    iss: None,
                    sub: Some(ValueMatch::Suffix(s)),
                },
                other => RequestPrincipalMatch::Parts {
                    iss: Some(other),
                    sub: None,
                },
            },
        }
    }

    /// Whether the verified token matches; no token never does.
    pub fn matches(&self, jwt: Option<&VerifiedJwt>) -> bool {
        let Some(jwt) = jwt else { return false };
        let (iss, sub) = (jwt.issuer(), jwt.subject());
        match self {
            RequestPrincipalMatch::Any => {
                iss.is_some_and(|i| !i.is_empty()) && sub.is_some_and(|s| !s.is_empty())
            }
            RequestPrincipalMatch::Parts { iss: im, sub: sm } => {
                let iss_ok = im
                    .as_ref()
                    .is_none_or(|m| iss.is_some_and(|i| m.matches(i)));
                let sub_ok = sm
                    .as_ref()
                    .is_none_or(|m| sub.is_some_and(|s| m.matches(s)));
                iss_ok && sub_ok
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn local_principals_expand_over_aliases() {
        let b = TrustBundle {
            domains: vec!["new.td", "old.td"],
        };
        assert_eq!(
            b.expand("cluster.local/ns/foo/sa/bar"),
            ["new.td/ns/foo/sa/bar", "old.td/ns/foo/sa/bar"]
        );
        assert_eq!(b.expand("old.td/ns/foo/sa/bar").len(), 2);
        assert_eq!(
            b.expand("other.td/ns/foo/sa/bar"),
            ["other.td/ns/foo/sa/bar"]
        );
        assert_eq!(b.expand("*/ns/foo/sa/bar"), ["*/ns/foo/sa/bar"]);
    }

    #[test]
    fn request_principal_forms() {
        let jwt = VerifiedJwt {
            principal: Some("https://idp.example.org/alice".into()),
            claims: json!({"iss": "https://idp.example.org", "sub": "alice"}),
        };
        let no_sub = VerifiedJwt {
            principal: None,
            claims: json!({"iss": "https://idp.example.org"}),
        };
        let cases = [
            ("*", true, false),
            ("https://idp.example.org/alice", true, false),
            ("https://idp.example.org/*", true, false),
            ("https://idp.example.org/al*", true, false),
            ("*example.org/alice", true, false),
            ("https:*", true, true),
            // With a `/`, the trailing `*` applies to the subject.
            ("https://idp*", false, false),
            ("*lice", true, false),
            ("https://other/alice", false, false),
        ];
        for (v, want, want_no_sub) in cases {
            let m = RequestPrincipalMatch::new(v);
            assert_eq!(m.matches(Some(&jwt)), want, "{v}");
            assert_eq!(m.matches(Some(&no_sub)), want_no_sub, "{v} without sub");
            assert!(!m.matches(None), "{v} without a token");
        }
    }
}
