//! A Sidecar's `outboundTrafficPolicy.egressProxy` (with `ALLOW_ANY`): Istio replaces the
//! `PassthroughCluster` with the egress proxy's cluster, so traffic to destinations outside the
//! registry goes to that proxy instead of where the app was going.

use std::sync::Arc;

use sluice_model::{codes, ResourceRef, Severity};

use super::Compiler;
use crate::cluster::Cluster;
use crate::scope::EgressProxy;

impl Compiler<'_> {
    /// The cluster of `egress` (`outbound|<port>|<subset>|<host>`; without a port, the
    /// service's only one), or a warning naming what is missing (unknown traffic then passes
    /// through).
    pub(crate) fn egress_proxy_cluster(
        &mut self,
        egress: &EgressProxy,
        sidecar: &ResourceRef,
    ) -> Option<Arc<Cluster>> {
        let port = egress.port.or_else(|| {
            let svc = self.registry.get(&egress.host)?;
            match svc.ports.as_slice() {
                [only] => Some(only.number),
                _ => None,
            }
        });
        let found = port.and_then(|port| {
            let name = format!(
                "outbound|{port}|{}|{}",
                egress.subset.as_deref().unwrap_or(""),
                egress.host
            );
            self.clusters.get(&name).cloned()
        });
        if found.is_none() {
            let what = match port {
                Some(p) => format!("no cluster for {}:{p}", egress.host),
                None => format!(
                    "{} is unknown or has several ports and egressProxy names none",
                    egress.host
                ),
            };
            if let Some(r) = self.ordered.iter().find(|r| r.key() == *sidecar) {
                self.diagnostics.push(r.diag(
                    Severity::Warning,
                    codes::NOT_ENFORCED,
                    "spec.outboundTrafficPolicy.egressProxy",
                    format!("egressProxy: {what}; traffic to unknown destinations passes through instead"),
                ));
            }
        }
        found
    }
}
