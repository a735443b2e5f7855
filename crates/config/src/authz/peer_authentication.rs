//! PeerAuthentication: the mTLS mode of this workload's inbound ports, and the namespace-level
//! modes auto-mTLS consults for a destination service.

use std::collections::BTreeMap;

use serde::Serialize;
use sluice_model::{PeerAuthentication, Resource, Spec};

use super::attachment::is_namespace_wide;
use crate::labels::selector_matches;
use crate::proxy::ProxyConfig;

/// How a port accepts connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum MtlsMode {
    /// mTLS only.
    Strict,
    /// mTLS or plain text.
    Permissive,
    /// Plain text only.
    Disable,
}

impl MtlsMode {
    /// Reads a mode; `UNSET` and absent inherit (`None`), as do values validation refuses.
    pub fn parse(v: Option<&str>) -> Option<MtlsMode> {
        match v? {
            "STRICT" => Some(MtlsMode::Strict),
            "PERMISSIVE" => Some(MtlsMode::Permissive),
            "DISABLE" => Some(MtlsMode::Disable),
            _ => None,
        }
    }
}

/// The PeerAuthentication modes compiled for this proxy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeerAuthn {
    /// Mode of the mesh-wide policy (root namespace, no selector).
    mesh: Option<MtlsMode>,
    /// Mode of each namespace-wide policy, by namespace.
    namespaces: BTreeMap<String, MtlsMode>,
    /// This workload's mode before port-level settings.
    workload: MtlsMode,
    /// Port-level modes of the workload policy.
    ports: BTreeMap<u16, MtlsMode>,
}

impl Default for PeerAuthn {
    fn default() -> Self {
        PeerAuthn {
            mesh: None,
            namespaces: BTreeMap::new(),
            workload: MtlsMode::Permissive,
            ports: BTreeMap::new(),
        }
    }
}

impl PeerAuthn {
    /// Compiles the PeerAuthentications of `ordered` (Istio's precedence order: oldest first)
    /// for `proxy`.
    pub fn compile(ordered: &[&Resource], proxy: &ProxyConfig) -> PeerAuthn {
        let pas = ordered.iter().filter_map(|r| match &r.spec {
            Spec::PeerAuthentication(pa) => Some((*r, pa)),
            _ => None,
        });
        let mut namespace_wide: BTreeMap<&str, Option<MtlsMode>> = BTreeMap::new();
        let mut workload: Option<&PeerAuthentication> = None;
        for (r, pa) in pas {
            let ns = r.metadata.namespace.as_str();
            if is_namespace_wide(pa.selector.as_ref()) {
                // The oldest one wins; later ones are ignored.
                namespace_wide
                    .entry(ns)
                    .or_insert_with(|| MtlsMode::parse(mode_of(pa)));
            } else if workload.is_none()
                && ns == proxy.namespace
                && pa
                    .selector
                    .as_ref()
                    .is_some_and(|s| selector_matches(&s.match_labels, &proxy.labels))
            {
                workload = Some(pa);
            }
        }
        let mesh = namespace_wide
            .get(proxy.root_namespace.as_str())
            .copied()
            .flatten();
        let namespaces: BTreeMap<String, MtlsMode> = namespace_wide
            .iter()
            .filter_map(|(ns, m)| m.map(|m| (ns.to_string(), m)))
            .collect();
        let mut mode = mesh.unwrap_or(MtlsMode::Permissive);
        if let Some(m) = namespaces.get(&proxy.namespace) {
            mode = *m;
        }
        let mut ports = BTreeMap::new();
        if let Some(pa) = workload {
            if let Some(m) = MtlsMode::parse(mode_of(pa)) {
                mode = m;
            }
            for (port, m) in &pa.port_level_mtls {
                if let (Ok(port), Some(m)) =
                    (port.parse::<u16>(), MtlsMode::parse(m.mode.as_deref()))
                {
                    ports.insert(port, m);
                }
            }
        }
        PeerAuthn {
            mesh,
            namespaces,
            workload: mode,
            ports,
        }
    }

    /// The mode of this workload's (container) `port`.
    pub fn mtls_mode(&self, port: u16) -> MtlsMode {
        self.ports.get(&port).copied().unwrap_or(self.workload)
    }

    /// The ports that have a mode of their own (`portLevelMtls`).
    pub fn port_level(&self) -> impl Iterator<Item = (u16, MtlsMode)> + '_ {
        self.ports.iter().map(|(p, m)| (*p, *m))
    }

    /// The namespace-level mode of `ns` (else the mesh's, else PERMISSIVE): what auto-mTLS
    /// consults for a service in `ns`; workload and port policies are not consulted.
    pub fn namespace_mode(&self, ns: &str) -> MtlsMode {
        self.namespaces
            .get(ns)
            .copied()
            .or(self.mesh)
            .unwrap_or(MtlsMode::Permissive)
    }
}

fn mode_of(pa: &PeerAuthentication) -> Option<&str> {
    pa.mtls.as_ref().and_then(|m| m.mode.as_deref())
}
