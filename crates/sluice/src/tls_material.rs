//! Certificate files named by Gateways and DestinationRules, read where the proxy reads them: a
//! missing or unusable file is an error at load and in `sluice analyze`, at the YAML position
//! of the field that names it, instead of a handshake failure later.

use sluice_config::compile::gateway_tls::{resolve_path, secret_name};
use sluice_config::tls::{CaSource, CertificateSource};
use sluice_model::{codes, ClientTlsSettings, Diagnostic, Resource, Severity, Spec};
use sluice_proxy::tls::{CertError, CertStore};

/// What to check in one `tls` block.
struct Check<'a> {
    r: &'a Resource,
    base: String,
    /// `serverCertificate` or `clientCertificate`.
    cert_field: &'static str,
    certificate: Option<(&'a str, &'a str)>,
    ca: Option<&'a str>,
    /// `caCrl`.
    crl: Option<&'a str>,
    credential: Option<&'a str>,
}

impl Check<'_> {
    fn run(&self, store: &CertStore, kubernetes: bool, out: &mut Vec<Diagnostic>) {
        let r = self.r;
        if let Some((cert, key)) = self.certificate {
            let key_path = resolve_path(r, key);
            let src = CertificateSource::Files {
                certificate: resolve_path(r, cert),
                private_key: key_path.clone(),
            };
            if let Err(e) = store.certified_key(&src) {
                // Point at the field naming the file at fault.
                let field = match &e {
                    CertError::Read { path, .. } if *path == key_path => "privateKey",
                    CertError::Invalid { what, .. } if *what == "private key" => "privateKey",
                    _ => self.cert_field,
                };
                out.push(r.diag(
                    Severity::Error,
                    codes::TLS_MATERIAL,
                    format!("{}.{field}", self.base),
                    format!("{e}; TLS with it fails until it is fixed"),
                ));
            }
        }
        if let Some(ca) = self.ca {
            let src = CaSource::File {
                path: resolve_path(r, ca),
            };
            if let Err(e) = store.roots(&src) {
                out.push(r.diag(
                    Severity::Error,
                    codes::TLS_MATERIAL,
                    format!("{}.caCertificates", self.base),
                    e.to_string(),
                ));
            }
        }
        if let Some(crl) = self.crl {
            if let Err(e) = store.crls(&resolve_path(r, crl)) {
                out.push(r.diag(
                    Severity::Error,
                    codes::TLS_MATERIAL,
                    format!("{}.caCrl", self.base),
                    format!("{e}; TLS with it fails until it is fixed"),
                ));
            }
        }
        if let (Some(name), false) = (self.credential, kubernetes) {
            out.push(r.diag(
                Severity::Warning,
                codes::TLS_MATERIAL,
                format!("{}.credentialName", self.base),
                format!(
                    "credentialName {} names a Kubernetes Secret, which only `sluice run --kubernetes` reads; in file mode use the certificate file fields",
                    secret_name(name)
                ),
            ));
        }
    }
}

fn client_check<'a>(r: &'a Resource, base: String, t: &'a ClientTlsSettings) -> Option<Check<'a>> {
    let mode = t.mode.as_deref().unwrap_or("DISABLE");
    if mode != "SIMPLE" && mode != "MUTUAL" {
        return None;
    }
    Some(Check {
        r,
        base,
        cert_field: "clientCertificate",
        certificate: match (mode, &t.client_certificate, &t.private_key) {
            ("MUTUAL", Some(c), Some(k)) => Some((c.as_str(), k.as_str())),
            _ => None,
        },
        ca: t.ca_certificates.as_deref().filter(|c| !c.is_empty()),
        crl: t.ca_crl.as_deref().filter(|c| !c.is_empty()),
        credential: t.credential_name.as_deref().filter(|c| !c.is_empty()),
    })
}

/// Diagnostics for every certificate, key and CA file the objects name (`kubernetes`: Secrets
/// can be read, so `credentialName` is not flagged).
pub fn diagnostics<R: std::borrow::Borrow<Resource>>(
    resources: &[R],
    store: &CertStore,
    kubernetes: bool,
) -> Vec<Diagnostic> {
    let mut checks = Vec::new();
    for r in resources.iter().map(std::borrow::Borrow::borrow) {
        match &r.spec {
            Spec::Gateway(gw) => {
                for (i, s) in gw.servers.iter().enumerate() {
                    let Some(t) = &s.tls else { continue };
                    if !matches!(
                        t.mode.as_deref(),
                        Some("SIMPLE" | "MUTUAL" | "OPTIONAL_MUTUAL")
                    ) {
                        continue;
                    }
                    checks.push(Check {
                        r,
                        base: format!("spec.servers[{i}].tls"),
                        cert_field: "serverCertificate",
                        certificate: t
                            .server_certificate
                            .as_deref()
                            .zip(t.private_key.as_deref()),
                        ca: t.ca_certificates.as_deref().filter(|c| !c.is_empty()),
                        crl: t
                            .ca_crl
                            .as_deref()
                            .filter(|c| !c.is_empty() && t.mode.as_deref() != Some("SIMPLE")),
                        credential: t.credential_name.as_deref().filter(|c| !c.is_empty()),
                    });
                }
            }
            Spec::DestinationRule(dr) => {
                let policies = dr
                    .traffic_policy
                    .iter()
                    .map(|tp| ("spec.trafficPolicy".to_string(), tp))
                    .chain(dr.subsets.iter().enumerate().filter_map(|(i, s)| {
                        s.traffic_policy
                            .as_ref()
                            .map(|tp| (format!("spec.subsets[{i}].trafficPolicy"), tp))
                    }));
                for (base, tp) in policies {
                    if let Some(t) = &tp.tls {
                        checks.extend(client_check(r, format!("{base}.tls"), t));
                    }
                    for (k, p) in tp.port_level_settings.iter().enumerate() {
                        if let Some(t) = &p.tls {
                            checks.extend(client_check(
                                r,
                                format!("{base}.portLevelSettings[{k}].tls"),
                                t,
                            ));
                        }
                    }
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    for c in checks {
        c.run(store, kubernetes, &mut out);
    }
    out
}
