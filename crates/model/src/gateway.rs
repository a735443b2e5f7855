//! `Gateway` (networking.istio.io v1alpha3 / v1beta1 / v1).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `Gateway.spec`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct Gateway {
    /// Labels of the gateway workloads (absent: every gateway).
    #[serde(default)]
    pub selector: Option<BTreeMap<String, String>>,
    /// Servers (ports and hosts).
    #[serde(default)]
    pub servers: Vec<Server>,
}

/// One gateway server.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Server {
    /// Port.
    #[serde(default)]
    pub port: Option<GatewayPort>,
    /// Bind address.
    #[serde(default)]
    pub bind: Option<String>,
    /// Hosts `[namespace/]dnsName`.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// TLS settings.
    #[serde(default)]
    pub tls: Option<ServerTlsSettings>,
    /// Default endpoint (sidecar ingress only).
    #[serde(default)]
    pub default_endpoint: Option<String>,
    /// Server name.
    #[serde(default)]
    pub name: Option<String>,
}

/// Gateway server port.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayPort {
    /// Port number.
    #[serde(default)]
    pub number: u32,
    /// Protocol.
    #[serde(default)]
    pub protocol: String,
    /// Port name.
    #[serde(default)]
    pub name: String,
    /// Rejected by Istio on gateways.
    #[serde(default)]
    pub target_port: Option<u32>,
}

/// `ServerTLSSettings`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerTlsSettings {
    /// Redirect HTTP to HTTPS.
    #[serde(default)]
    pub https_redirect: Option<bool>,
    /// Mode.
    #[serde(default)]
    pub mode: Option<String>,
    /// Certificate file.
    #[serde(default)]
    pub server_certificate: Option<String>,
    /// Key file.
    #[serde(default)]
    pub private_key: Option<String>,
    /// CA file.
    #[serde(default)]
    pub ca_certificates: Option<String>,
    /// CRL file.
    #[serde(default)]
    pub ca_crl: Option<String>,
    /// Secret name.
    #[serde(default)]
    pub credential_name: Option<String>,
    /// Secret names (RSA + ECDSA).
    #[serde(default)]
    pub credential_names: Vec<String>,
    /// Inline certificate files.
    #[serde(default)]
    pub tls_certificates: Vec<TlsCertificate>,
    /// CA secret name.
    #[serde(default)]
    pub ca_cert_credential_name: Option<String>,
    /// Accepted client SANs.
    #[serde(default)]
    pub subject_alt_names: Vec<String>,
    /// Accepted SPKI hashes.
    #[serde(default)]
    pub verify_certificate_spki: Vec<String>,
    /// Accepted certificate hashes.
    #[serde(default)]
    pub verify_certificate_hash: Vec<String>,
    /// Minimum TLS version.
    #[serde(default)]
    pub min_protocol_version: Option<String>,
    /// Maximum TLS version.
    #[serde(default)]
    pub max_protocol_version: Option<String>,
    /// Cipher suites.
    #[serde(default)]
    pub cipher_suites: Vec<String>,
    /// Skip client verification.
    #[serde(default)]
    pub insecure_skip_verify: Option<bool>,
}

/// One certificate pair.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TlsCertificate {
    /// Certificate file.
    #[serde(default)]
    pub server_certificate: Option<String>,
    /// Key file.
    #[serde(default)]
    pub private_key: Option<String>,
    /// CA file.
    #[serde(default)]
    pub ca_certificates: Option<String>,
}
