//! Compiles the security config of this proxy: authorization policies, peer authentication,
//! JWT rules and the Sidecar's ingress listeners.

use std::net::IpAddr;
use std::sync::Arc;

use sluice_model::{codes, Resource, Severity, Sidecar, Spec};

use super::cluster_policy::pool_limits;
use super::Compiler;
use crate::authz::attachment::is_namespace_wide;
use crate::authz::jwt_rules::jwt_rules;
use crate::authz::security::authz_policies;
use crate::authz::sidecar_ingress::{select_sidecar, DefaultEndpoint, SidecarIngress};
use crate::authz::{PeerAuthn, Security};
use crate::labels::selector_matches;

impl Compiler<'_> {
    /// The security config of this proxy.
    pub(crate) fn compile_security(&mut self) -> Arc<Security> {
        let ordered = self.ordered.clone();
        self.warn_sidecar_conflicts(&ordered);
        self.warn_peer_authentication_conflicts(&ordered);
        let (sidecar_ingress, inbound_pool) = match select_sidecar(&ordered, self.proxy) {
            Some((r, sc)) => (
                self.sidecar_ingress(r, sc),
                sc.inbound_connection_pool
                    .as_ref()
                    .map(|cp| pool_limits(Some(cp))),
            ),
            None => (Vec::new(), None),
        };
        Arc::new(Security {
            authz: authz_policies(&ordered, self.proxy),
            peer_authentication: PeerAuthn::compile(&ordered, self.proxy),
            jwt_rules: jwt_rules(&ordered, self.proxy),
            sidecar_ingress,
            inbound_pool,
        })
    }

    fn sidecar_ingress(&mut self, r: &Resource, sc: &Sidecar) -> Vec<SidecarIngress> {
        let mut out = Vec::new();
        for (i, l) in sc.ingress.iter().enumerate() {
            let field = format!("spec.ingress[{i}]");
            let Some(port) = l.port.as_ref() else {
                continue;
            };
            let Ok(number) = u16::try_from(port.number) else {
                continue;
            };
            let default_endpoint = match l.default_endpoint.as_deref() {
                None | Some("") => None,
                Some(v) => match DefaultEndpoint::parse(v) {
                    Ok(e) => Some(e),
                    Err(e) => {
                        self.diagnostics.push(r.diag(
                            Severity::Warning,
                            codes::SIDECAR_ENDPOINT_UNSUPPORTED,
                            format!("{field}.defaultEndpoint"),
                            format!("{e}; port {number} is not served"),
                        ));
                        continue;
                    }
                },
            };
            let tls = l.tls.as_ref().and_then(|t| {
                let mode = t.mode.as_deref()?;
                matches!(mode, "SIMPLE" | "MUTUAL").then(|| self.server_tls(r, &field, t, mode))
            });
            out.push(SidecarIngress {
                port: number,
                protocol: port.protocol.to_ascii_uppercase(),
                name: port.name.clone(),
                bind: l.bind.as_deref().and_then(|b| b.parse::<IpAddr>().ok()),
                default_endpoint,
                tls,
                connection_pool: l.connection_pool.as_ref().map(|cp| pool_limits(Some(cp))),
            });
        }
        out
    }

    /// Istio uses one Sidecar per workload: the oldest wins and the others are reported.
    fn warn_sidecar_conflicts(&mut self, ordered: &[&Resource]) {
        let ns = self.proxy.namespace.as_str();
        let mut selector_less = 0;
        let mut selecting = 0;
        for r in ordered.iter().filter(|r| r.metadata.namespace == ns) {
            let Spec::Sidecar(sc) = &r.spec else { continue };
            let (code, count, what) = match &sc.workload_selector {
                None => (
                    codes::MULTIPLE_SIDECARS_WITHOUT_SELECTOR,
                    &mut selector_less,
                    "another Sidecar without a workloadSelector",
                ),
                Some(w) if selector_matches(&w.labels, &self.proxy.labels) => (
                    codes::CONFLICTING_SIDECAR_SELECTORS,
                    &mut selecting,
                    "another Sidecar selecting this workload",
                ),
                Some(_) => continue,
            };
            *count += 1;
            if *count > 1 {
                self.diagnostics.push(r.diag(
                    Severity::Warning,
                    code,
                    "spec.workloadSelector",
                    format!("ignored: {what} in namespace {ns} is older and applies"),
                ));
            }
        }
    }

    /// Only the oldest namespace-wide PeerAuthentication of a namespace, and the oldest one
    /// selecting this workload, take effect.
    fn warn_peer_authentication_conflicts(&mut self, ordered: &[&Resource]) {
        let mut seen_namespace_wide: Vec<&str> = Vec::new();
        let mut seen_workload = false;
        for r in ordered {
            let Spec::PeerAuthentication(pa) = &r.spec else {
                continue;
            };
            let ns = r.metadata.namespace.as_str();
            let what = if is_namespace_wide(pa.selector.as_ref()) {
                if !seen_namespace_wide.contains(&ns) {
                    seen_namespace_wide.push(ns);
                    continue;
                }
                format!("an older namespace-wide PeerAuthentication in namespace {ns} applies")
            } else if ns == self.proxy.namespace
                && pa
                    .selector
                    .as_ref()
                    .is_some_and(|s| selector_matches(&s.match_labels, &self.proxy.labels))
            {
                if !seen_workload {
                    seen_workload = true;
                    continue;
                }
                "an older PeerAuthentication selecting this workload applies".to_string()
            } else {
                continue;
            };
            self.diagnostics.push(r.diag(
                Severity::Warning,
                codes::PEER_AUTHENTICATION_SHADOWED,
                "spec",
                format!("ignored: {what}"),
            ));
        }
    }
}
