//! The CA's wire format: `POST /v1/certificate` with a JSON body, like Istio's
//! `IstioCertificateService/CreateCertificate` (same fields, JSON instead of gRPC).

use serde::{Deserialize, Serialize};

/// The path certificates are requested on.
pub const CERTIFICATE_PATH: &str = "/v1/certificate";
/// The audience a caller's projected service account token must carry.
pub const TOKEN_AUDIENCE: &str = "istio-ca";

/// A certificate request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificateRequest {
    /// PEM certificate signing request; only its public key is used.
    pub csr: String,
    /// Requested lifetime in seconds (the CA's default when absent; clamped to its maximum).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validity_duration: Option<u64>,
}

/// A certificate reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificateResponse {
    /// PEM certificates: the leaf, the signing certificate, ..., the root.
    pub cert_chain: Vec<String>,
    /// PEM roots to trust.
    pub root_certs: Vec<String>,
}

/// An error reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorResponse {
    /// What went wrong.
    pub error: String,
}

/// A Kubernetes service account, as authenticated from a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceAccount {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl ServiceAccount {
    /// Reads a TokenReview user name, `system:serviceaccount:<namespace>:<name>`; other users
    /// (people, nodes) are not workloads.
    pub fn from_username(username: &str) -> Option<Self> {
        let rest = username.strip_prefix("system:serviceaccount:")?;
        let (namespace, name) = rest.split_once(':')?;
        if namespace.is_empty() || name.is_empty() || name.contains(':') {
            return None;
        }
        Some(ServiceAccount {
            namespace: namespace.to_string(),
            name: name.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn service_account_user_names() {
        assert_eq!(
            ServiceAccount::from_username("system:serviceaccount:default:sleep"),
            Some(ServiceAccount {
                namespace: "default".into(),
                name: "sleep".into()
            })
        );
        for other in [
            "kubernetes-admin",
            "system:node:worker-1",
            "system:serviceaccount:default",
            "system:serviceaccount::sleep",
            "system:serviceaccount:a:b:c",
        ] {
            assert_eq!(ServiceAccount::from_username(other), None, "{other}");
        }
    }

    #[test]
    fn json_field_names_follow_istio() {
        let r: CertificateRequest =
            serde_json::from_str(r#"{"csr":"x","validityDuration":60}"#).unwrap();
        assert_eq!(r.validity_duration, Some(60));
        let s = serde_json::to_string(&CertificateResponse {
            cert_chain: vec!["a".into()],
            root_certs: vec!["r".into()],
        })
        .unwrap();
        assert_eq!(s, r#"{"certChain":["a"],"rootCerts":["r"]}"#);
    }
}
