//! A Sidecar's `egress` listeners: which services and VirtualServices a sidecar proxy sees.

use std::net::IpAddr;

use sluice_model::Sidecar;

use crate::host::covers;

/// The namespace part of an egress host.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Namespaces {
    /// `*`: every namespace.
    Any,
    /// `~`: none (the listener imports nothing).
    Nothing,
    /// A namespace by name (`.` is resolved to the Sidecar's own).
    Named(String),
}

/// One `namespace/dnsName` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
struct EgressHost {
    namespaces: Namespaces,
    /// Lowercase DNS name, possibly a wildcard (`*`, `*.example.com`).
    host: String,
}

impl EgressHost {
    fn parse(entry: &str, sidecar_ns: &str) -> Option<EgressHost> {
        let (ns, host) = entry.split_once('/')?;
        let namespaces = match ns {
            "*" => Namespaces::Any,
            "~" => Namespaces::Nothing,
            "." => Namespaces::Named(sidecar_ns.to_string()),
            other => Namespaces::Named(other.to_string()),
        };
        Some(EgressHost {
            namespaces,
            host: host.trim_end_matches('.').to_ascii_lowercase(),
        })
    }

    /// Whether this entry imports `host` (a concrete or wildcard name) of namespace `ns`.
    fn admits(&self, ns: &str, host: &str) -> bool {
        let ns_ok = match &self.namespaces {
            Namespaces::Any => true,
            Namespaces::Nothing => false,
            Namespaces::Named(n) => n == ns,
        };
        // Either side may be a wildcard: `*/*.example.com` imports `api.example.com`, and an
        // egress host `api.example.com` imports a ServiceEntry for `*.example.com`.
        ns_ok && (covers(&self.host, host) || covers(host, &self.host))
    }
}

/// One egress listener: its hosts and, if set, the one port it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EgressListener {
    /// Its index in `spec.egress`.
    pub(crate) index: usize,
    pub(crate) port: Option<u16>,
    hosts: Vec<EgressHost>,
    /// `bind`, when it is an IP address (a `unix://` bind is `unix`).
    pub(crate) bind: Option<IpAddr>,
    /// `captureMode: NONE`: the listener is bound even on a proxy that intercepts.
    pub(crate) capture_none: bool,
    /// The socket path of a `bind: unix://PATH` (port 0).
    pub(crate) unix: Option<String>,
    /// Its port's protocol speaks HTTP (a unix domain socket listener then routes by Host).
    pub(crate) http: bool,
    /// Its port's protocol.
    pub(crate) protocol: Option<crate::protocol::Protocol>,
}

impl EgressListener {
    /// Whether it imports service `host` of namespace `ns` (on any port).
    pub(crate) fn admits(&self, ns: &str, host: &str) -> bool {
        self.hosts.iter().any(|h| h.admits(ns, host))
    }
}

/// The egress scope of a Sidecar: what its egress listeners import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressScope {
    listeners: Vec<EgressListener>,
}

impl EgressScope {
    /// The scope of `sidecar` (of namespace `sidecar_ns`), or `None` when it has no `egress`
    /// (Istio then imports everything exported to the namespace).
    pub fn of(sidecar: &Sidecar, sidecar_ns: &str) -> Option<EgressScope> {
        if sidecar.egress.is_empty() {
            return None;
        }
        let listeners = sidecar
            .egress
            .iter()
            .enumerate()
            .map(|(index, e)| EgressListener {
                index,
                port: e
                    .port
                    .as_ref()
                    .and_then(|p| u16::try_from(p.number).ok())
                    .filter(|n| *n > 0),
                hosts: e
                    .hosts
                    .iter()
                    .filter_map(|h| EgressHost::parse(h, sidecar_ns))
                    .collect(),
                bind: e.bind.as_deref().and_then(|b| b.parse().ok()),
                capture_none: e.capture_mode.as_deref() == Some("NONE"),
                unix: e
                    .bind
                    .as_deref()
                    .and_then(|b| b.strip_prefix("unix://"))
                    .filter(|p| !p.is_empty())
                    .map(str::to_string),
                http: e
                    .port
                    .as_ref()
                    .and_then(|p| crate::protocol::Protocol::parse(&p.protocol))
                    .is_some_and(|p| p.is_http() && p != crate::protocol::Protocol::Unspecified),
                protocol: e
                    .port
                    .as_ref()
                    .and_then(|p| crate::protocol::Protocol::parse(&p.protocol)),
            })
            .collect();
        Some(EgressScope { listeners })
    }

    /// Its listeners on unix domain sockets.
    pub(crate) fn unix_listeners(&self) -> impl Iterator<Item = &EgressListener> {
        self.listeners.iter().filter(|l| l.unix.is_some())
    }

    /// Whether any listener imports service `host` of namespace `ns`, on some port.
    pub fn admits_host(&self, ns: &str, host: &str) -> bool {
        self.listeners
            .iter()
            .any(|l| l.hosts.iter().any(|h| h.admits(ns, host)))
    }

    /// Whether service `host` of namespace `ns` is imported on `port`: by a listener without a
    /// port, or by the listener of that port.
    pub fn admits_port(&self, ns: &str, host: &str, port: u16) -> bool {
        self.listeners
            .iter()
            .any(|l| l.port.is_none_or(|p| p == port) && l.hosts.iter().any(|h| h.admits(ns, host)))
    }

    /// The listener that serves service `host` of namespace `ns` on `port`, as Istio picks it:
    /// the one for that port, else the one without a port.
    pub(crate) fn listener_for(&self, ns: &str, host: &str, port: u16) -> Option<&EgressListener> {
        let admits = |l: &&EgressListener| l.hosts.iter().any(|h| h.admits(ns, host));
        self.listeners
            .iter()
            .filter(|l| l.port == Some(port))
            .find(admits)
            .or_else(|| {
                // A unix domain socket listener (port 0) is its own, not the catch-all.
                self.listeners
                    .iter()
                    .filter(|l| l.port.is_none() && l.unix.is_none())
                    .find(admits)
            })
    }

    /// Whether a VirtualService of namespace `ns` with these (fully qualified) hosts is
    /// imported: any of its hosts matches an entry for its own namespace.
    pub fn admits_virtual_service<'h>(
        &self,
        ns: &str,
        mut hosts: impl Iterator<Item = &'h str>,
    ) -> bool {
        hosts.any(|h| self.admits_host(ns, h))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(hosts: &[&str], port: Option<u32>) -> EgressScope {
        let mut listener = serde_json::json!({ "hosts": hosts });
        if let Some(p) = port {
            listener["port"] = serde_json::json!({"number": p, "name": "p", "protocol": "HTTP"});
        }
        let sc: Sidecar =
            serde_json::from_value(serde_json::json!({ "egress": [listener] })).unwrap();
        EgressScope::of(&sc, "a").unwrap()
    }

    #[test]
    fn every_host_selector_form_imports_what_istio_imports() {
        // (egress hosts, service namespace, service host, imported)
        let table: &[(&[&str], &str, &str, bool)] = &[
            (&["./*"], "a", "r.a.svc.cluster.local", true),
            (&["./*"], "b", "r.b.svc.cluster.local", false),
            (&["*/*"], "b", "r.b.svc.cluster.local", true),
            (&["b/*"], "b", "r.b.svc.cluster.local", true),
            (&["b/*"], "c", "r.c.svc.cluster.local", false),
            (&["~/*"], "a", "r.a.svc.cluster.local", false),
            (
                &["b/r.b.svc.cluster.local"],
                "b",
                "r.b.svc.cluster.local",
                true,
            ),
            (
                &["b/r.b.svc.cluster.local"],
                "b",
                "s.b.svc.cluster.local",
                false,
            ),
            (
                &["./r.b.svc.cluster.local"],
                "b",
                "r.b.svc.cluster.local",
                false,
            ),
            (
                &["*/r.b.svc.cluster.local"],
                "b",
                "r.b.svc.cluster.local",
                true,
            ),
            (&["*/*.example.com"], "x", "api.example.com", true),
            (&["*/*.example.com"], "x", "example.com", false),
            (&["*/*.example.com"], "x", "api.example.org", false),
            (&["*/api.example.com"], "x", "*.example.com", true),
            (&["*/API.Example.com."], "x", "api.example.com", true),
            (
                &["./*", "istio-system/*"],
                "istio-system",
                "m.istio-system.svc.cluster.local",
                true,
            ),
            (
                &["./*", "istio-system/*"],
                "c",
                "m.c.svc.cluster.local",
                false,
            ),
        ];
        for (hosts, ns, host, want) in table {
            assert_eq!(
                scope(hosts, None).admits_host(ns, host),
                *want,
                "egress {hosts:?}, service {ns}/{host}"
            );
        }
    }

    #[test]
    fn a_listener_port_imports_its_hosts_on_that_port_only() {
        let s = scope(&["*/*"], Some(9080));
        assert!(s.admits_port("b", "r.b.svc.cluster.local", 9080));
        assert!(!s.admits_port("b", "r.b.svc.cluster.local", 80));
        let any = scope(&["*/*"], None);
        assert!(any.admits_port("b", "r.b.svc.cluster.local", 80));
    }

    #[test]
    fn a_virtual_service_is_imported_by_its_own_namespace_and_hosts() {
        let s = scope(&["./*", "b/r.b.svc.cluster.local"], None);
        let hosts = ["r.b.svc.cluster.local"];
        // Its namespace is the VirtualService's, not the destination's.
        assert!(s.admits_virtual_service("b", hosts.iter().copied()));
        assert!(s.admits_virtual_service("a", hosts.iter().copied()));
        assert!(!s.admits_virtual_service("c", hosts.iter().copied()));
    }

    #[test]
    fn the_listener_of_a_port_is_the_one_naming_it_else_the_catch_all() {
        let sc: Sidecar = serde_json::from_value(serde_json::json!({ "egress": [
            {"port": {"number": 9080, "name": "http", "protocol": "HTTP"}, "bind": "127.0.0.2", "hosts": ["*/*"]},
            {"captureMode": "NONE", "hosts": ["./*"]},
        ]}))
        .unwrap();
        let s = EgressScope::of(&sc, "a").unwrap();
        let on = |port| s.listener_for("a", "r.a.svc.cluster.local", port);
        assert_eq!(on(9080).and_then(|l| l.bind), "127.0.0.2".parse().ok());
        assert!(on(80).is_some_and(|l| l.capture_none && l.bind.is_none()));
        assert!(s.listener_for("b", "r.b.svc.cluster.local", 80).is_none());
    }

    #[test]
    fn a_sidecar_without_egress_has_no_egress_scope() {
        assert_eq!(EgressScope::of(&Sidecar::default(), "a"), None);
    }
}
