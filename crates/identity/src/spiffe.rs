//! SPIFFE workload ids, Istio's shape: `spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`.

use std::fmt;
use std::str::FromStr;

use crate::IdentityError;

/// The URI scheme prefix of every SPIFFE id.
pub const SCHEME: &str = "spiffe://";

/// A workload's identity: its Kubernetes service account within a trust domain.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpiffeId {
    /// Trust domain (MeshConfig `trustDomain`, `cluster.local` by default).
    pub trust_domain: String,
    /// Namespace of the service account.
    pub namespace: String,
    /// Service account name.
    pub service_account: String,
}

impl SpiffeId {
    /// The id of `service_account` in `namespace`; `@` in the trust domain becomes `.` as in Istio.
    pub fn new(trust_domain: &str, namespace: &str, service_account: &str) -> Self {
        SpiffeId {
            trust_domain: normalize_trust_domain(trust_domain),
            namespace: namespace.to_string(),
            service_account: service_account.to_string(),
        }
    }

    /// The form policies use, without the scheme: `td/ns/N/sa/S`.
    pub fn principal(&self) -> String {
        format!(
            "{}/ns/{}/sa/{}",
            self.trust_domain, self.namespace, self.service_account
        )
    }
}

/// Istio replaces `@` with `.` in trust domains (they may be written as e-mail-like names).
fn normalize_trust_domain(td: &str) -> String {
    td.replace('@', ".")
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SCHEME}{}", self.principal())
    }
}

impl FromStr for SpiffeId {
    type Err = IdentityError;

    fn from_str(uri: &str) -> Result<Self, Self::Err> {
        let err = |reason| IdentityError::SpiffeId {
            uri: uri.to_string(),
            reason,
        };
        let rest = match uri.get(..SCHEME.len()) {
            Some(scheme) if scheme.eq_ignore_ascii_case(SCHEME) => &uri[SCHEME.len()..],
            _ => return Err(err("it does not start with spiffe://")),
        };
        let parts: Vec<&str> = rest.split('/').collect();
        let [td, ns_key, ns, sa_key, sa] = parts.as_slice() else {
            return Err(err(
                "expected exactly the segments <td>/ns/<namespace>/sa/<name>",
            ));
        };
        if *ns_key != "ns" || *sa_key != "sa" {
            return Err(err(
                "expected exactly the segments <td>/ns/<namespace>/sa/<name>",
            ));
        }
        if td.is_empty() || ns.is_empty() || sa.is_empty() {
            return Err(err(
                "trust domain, namespace and service account must not be empty",
            ));
        }
        let bad = |s: &str| s.chars().any(|c| c.is_whitespace() || c == '?' || c == '#');
        if bad(td) || bad(ns) || bad(sa) {
            return Err(err("whitespace, `?` and `#` are not allowed"));
        }
        Ok(SpiffeId::new(td, ns, sa))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn displays_and_parses_istio_ids() {
        let id = SpiffeId::new("cluster.local", "default", "sleep");
        assert_eq!(id.to_string(), "spiffe://cluster.local/ns/default/sa/sleep");
        assert_eq!(id.principal(), "cluster.local/ns/default/sa/sleep");
        assert_eq!(id.to_string().parse::<SpiffeId>().unwrap(), id);
        let gw: SpiffeId =
            "spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account"
                .parse()
                .unwrap();
        assert_eq!(gw.namespace, "istio-system");
        assert_eq!(gw.service_account, "istio-ingressgateway-service-account");
    }

    #[test]
    fn at_in_trust_domain_becomes_dot() {
        let id: SpiffeId = "spiffe://foo@bar.com/ns/a/sa/b".parse().unwrap();
        assert_eq!(id.trust_domain, "foo.bar.com");
        assert_eq!(
            SpiffeId::new("td@x", "a", "b").to_string(),
            "spiffe://td.x/ns/a/sa/b"
        );
    }

    #[test]
    fn rejects_other_shapes() {
        for bad in [
            "cluster.local/ns/a/sa/b",
            "https://cluster.local/ns/a/sa/b",
            "spiffe://cluster.local/ns/a",
            "spiffe://cluster.local/ns/a/sa/b/extra",
            "spiffe://cluster.local/namespace/a/sa/b",
            "spiffe:///ns/a/sa/b",
            "spiffe://td/ns//sa/b",
            "spiffe://td/ns/a b/sa/b",
        ] {
            let e = bad.parse::<SpiffeId>().unwrap_err();
            assert!(matches!(e, IdentityError::SpiffeId { .. }), "{bad}: {e}");
        }
    }
}
