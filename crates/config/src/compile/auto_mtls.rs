//! Istio's mutual TLS towards a cluster (`ISTIO_MUTUAL`, explicit or automatic): a
//! DestinationRule `tls` decides when it is set; otherwise a mesh-internal service whose
//! endpoints all carry `security.istio.io/tlsMode: istio` is reached with mesh mTLS, unless
//! the PeerAuthentication of the service's namespace (or the mesh) disables it.

use std::sync::Arc;

use crate::authz::{MtlsMode, PeerAuthn};
use crate::proxy::ProxyConfig;
use crate::registry::{Endpoint, Service};
use crate::tls::{CaSource, CertificateSource, ClientTls};

/// The label injection (or a WorkloadEntry) puts on endpoints that speak mesh mTLS.
pub const TLS_MODE_LABEL: &str = "security.istio.io/tlsMode";

/// What the DestinationRule of a cluster says about TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DrTls {
    /// No `tls`: automatic mTLS decides.
    Absent,
    /// `SIMPLE`, `MUTUAL` or `DISABLE`: used as it is, never mesh mTLS.
    Other,
    /// `ISTIO_MUTUAL`, with its `sni` and `subjectAltNames`.
    IstioMutual {
        /// `tls.sni`.
        sni: Option<String>,
        /// `tls.subjectAltNames` (replace the endpoints' identities).
        subject_alt_names: Vec<String>,
    },
}

/// The cluster being built.
pub(crate) struct Target<'a> {
    pub(crate) service: &'a Service,
    pub(crate) port: u16,
    pub(crate) subset: Option<&'a str>,
    pub(crate) endpoints: &'a [Arc<Endpoint>],
    pub(crate) h2: bool,
}

/// Istio's SNI towards a mesh service: `outbound_.<port>_.<subset>_.<host>`.
pub fn mesh_sni(port: u16, subset: Option<&str>, host: &str) -> String {
    format!("outbound_.{port}_.{}_.{host}", subset.unwrap_or(""))
}

/// The mesh client TLS of a cluster, or `None` for plaintext (or the DestinationRule's own TLS).
pub(crate) fn mesh_client_tls(
    dr: &DrTls,
    t: &Target<'_>,
    proxy: &ProxyConfig,
    peers: &PeerAuthn,
) -> Option<Arc<ClientTls>> {
    let (sni, sans) = match dr {
        DrTls::Other => return None,
        DrTls::IstioMutual {
            sni,
            subject_alt_names,
        } => (sni.clone(), subject_alt_names.clone()),
        DrTls::Absent => {
            let meshed = !t.endpoints.is_empty()
                && t.endpoints
                    .iter()
                    .all(|e| e.labels.get(TLS_MODE_LABEL).map(String::as_str) == Some("istio"));
            let disabled = peers.namespace_mode(&t.service.namespace) == MtlsMode::Disable;
            if !t.service.mesh_internal || !meshed || disabled {
                return None;
            }
            (None, Vec::new())
        }
    };
    let subject_alt_names = if sans.is_empty() {
        identities(t, proxy)
    } else {
        sans
    };
    Some(Arc::new(ClientTls {
        certificate: Some(CertificateSource::Mesh),
        ca: CaSource::Mesh,
        sni: sni
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| mesh_sni(t.port, t.subset, &t.service.hostname)),
        subject_alt_names,
        insecure_skip_verify: false,
        ca_crl: None,
        h2: t.h2,
    }))
}

/// The SPIFFE identities the service's endpoints run as (their service accounts) plus the
/// ServiceEntry's `subjectAltNames`; empty means the chain alone is checked.
fn identities(t: &Target<'_>, proxy: &ProxyConfig) -> Vec<String> {
    let mut out: Vec<String> = t.service.subject_alt_names.clone();
    for e in t.endpoints {
        let Some(sa) = e.service_account.as_deref() else {
            continue;
        };
        // Endpoints live in their service's namespace (a ServiceEntry selects only its own
        // namespace's WorkloadEntries), and so do their service accounts.
        let ns = &t.service.namespace;
        let id = format!("spiffe://{}/ns/{ns}/sa/{sa}", proxy.trust_domain);
        if !out.contains(&id) {
            out.push(id);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sni_names_port_subset_and_host() {
        assert_eq!(
            mesh_sni(9080, None, "reviews.default.svc.cluster.local"),
            "outbound_.9080_._.reviews.default.svc.cluster.local"
        );
        assert_eq!(
            mesh_sni(9080, Some("v2"), "reviews.default.svc.cluster.local"),
            "outbound_.9080_.v2_.reviews.default.svc.cluster.local"
        );
    }

    /// Endpoints that speak mesh mTLS get it automatically only when the service is inside
    /// the mesh: `MESH_EXTERNAL` (a ServiceEntry's default) is never auto-mTLS'd.
    #[test]
    fn only_mesh_internal_services_get_automatic_mtls() {
        let tls_of = |location: &str| {
            let yaml = format!(
                "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: ext}}\nspec:\n  hosts: [ext.example.com]\n{location}  ports: [{{number: 80, name: http, protocol: HTTP}}]\n  resolution: STATIC\n  endpoints: [{{address: 10.0.0.1, labels: {{security.istio.io/tlsMode: istio}}}}]\n"
            );
            let parsed = sluice_model::parse_text(&yaml, None);
            let compiled = crate::compile::compile(
                &parsed.resources,
                &ProxyConfig::default(),
                &sluice_lb::StateStore::new(),
            );
            compiled
                .clusters
                .get("outbound|80||ext.example.com")
                .map(|c| c.policy.tls.is_some())
        };
        assert_eq!(tls_of("  location: MESH_INTERNAL\n"), Some(true));
        assert_eq!(tls_of("  location: MESH_EXTERNAL\n"), Some(false));
        assert_eq!(tls_of(""), Some(false));
    }
}
