//! Virtual hosts and the Host/:authority lookup table (exact, then longest wildcard suffix, then `*`).

use std::sync::Arc;

use serde::Serialize;

use crate::domain_index::DomainIndex;
use crate::host::strip_port;
use crate::route_table::Route;

/// A set of domains sharing one ordered route list.
#[derive(Debug, Clone, Serialize)]
pub struct VirtualHost {
    /// Name (`<host>:<port>`).
    pub name: String,
    /// Domains served (exact names, `*.suffix`, `*`).
    pub domains: Vec<String>,
    /// Ordered rules; the first match wins. Shared by the hosts a VirtualService binds on one
    /// gateway server, which compile to the same rules.
    pub routes: Arc<[Route]>,
    /// Plain-text requests are redirected to `https://` before routing (a Gateway HTTP
    /// server's `tls.httpsRedirect`, Envoy's `require_tls: ALL`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub require_tls: bool,
}

/// Lookup from a request's Host to a virtual host.
#[derive(Debug, Clone, Default, Serialize)]
pub struct VirtualHostTable {
    /// Virtual hosts in declaration order.
    pub vhosts: Vec<Arc<VirtualHost>>,
    /// Shared between tables whose virtual hosts answer the same domains in the same order.
    #[serde(skip)]
    index: Arc<DomainIndex>,
}

impl VirtualHostTable {
    /// Indexes virtual hosts; a domain claimed twice goes to the first.
    pub fn new(mut vhosts: Vec<Arc<VirtualHost>>) -> Self {
        // Built by collecting larger items in place, the list can hold several times its size.
        vhosts.shrink_to_fit();
        let mut index = DomainIndex::default();
        for (i, vh) in vhosts.iter().enumerate() {
            for d in &vh.domains {
                index.insert(d, i);
            }
        }
        index.finish();
        VirtualHostTable {
            vhosts,
            index: Arc::new(index),
        }
    }

    /// [`new`](Self::new), taking `previous`'s index when `vhosts` answer the same domains in
    /// the same order (an edited route keeps its host's domains): indexing every domain again
    /// would cost as much as the whole table on each edit.
    pub fn updating(previous: &VirtualHostTable, mut vhosts: Vec<Arc<VirtualHost>>) -> Self {
        let same_domains = previous.vhosts.len() == vhosts.len()
            && previous
                .vhosts
                .iter()
                .zip(&vhosts)
                .all(|(a, b)| Arc::ptr_eq(a, b) || a.domains == b.domains);
        if !same_domains {
            return Self::new(vhosts);
        }
        vhosts.shrink_to_fit();
        VirtualHostTable {
            vhosts,
            index: Arc::clone(&previous.index),
        }
    }

    /// The virtual host for a Host header value (the port is ignored, case-insensitive).
    pub fn find(&self, authority: &str) -> Option<&Arc<VirtualHost>> {
        let host = strip_port(authority).trim_end_matches('.');
        self.index.find(host).and_then(|i| self.vhosts.get(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vh(name: &str, domains: &[&str]) -> Arc<VirtualHost> {
        Arc::new(VirtualHost {
            name: name.into(),
            domains: domains.iter().map(|d| d.to_string()).collect(),
            routes: Arc::new([]),
            require_tls: false,
        })
    }

    #[test]
    fn lookup_order() {
        let t = VirtualHostTable::new(vec![
            vh("exact", &["a.example.com"]),
            vh("short", &["*.example.com"]),
            vh("long", &["*.b.example.com"]),
            vh("any", &["*"]),
        ]);
        let name = |h: &str| t.find(h).map(|v| v.name.clone());
        assert_eq!(name("a.example.com:8080").as_deref(), Some("exact"));
        assert_eq!(name("A.Example.COM").as_deref(), Some("exact"));
        assert_eq!(name("x.b.example.com").as_deref(), Some("long"));
        assert_eq!(name("x.example.com").as_deref(), Some("short"));
        assert_eq!(name("example.com").as_deref(), Some("any"));
        assert_eq!(name("other").as_deref(), Some("any"));
        let t2 = VirtualHostTable::new(vec![vh("exact", &["a"])]);
        assert!(t2.find("b").is_none());
    }

    #[test]
    fn an_update_with_the_same_domains_shares_the_index_and_finds_the_new_hosts() {
        let old = VirtualHostTable::new(vec![vh("a", &["a.example.com"]), vh("b", &["*.b.com"])]);
        let edited = vec![Arc::clone(&old.vhosts[0]), vh("b2", &["*.b.com"])];
        let t = VirtualHostTable::updating(&old, edited);
        assert!(Arc::ptr_eq(&t.index, &old.index));
        assert_eq!(t.find("x.b.com").map(|v| v.name.as_str()), Some("b2"));
        assert_eq!(t.find("a.example.com").map(|v| v.name.as_str()), Some("a"));
        // Other domains, or another order: indexed afresh.
        for vhosts in [
            vec![vh("a", &["a.example.com"]), vh("c", &["c.com"])],
            vec![vh("b", &["*.b.com"]), vh("a", &["a.example.com"])],
            vec![vh("a", &["a.example.com"])],
        ] {
            let fresh = VirtualHostTable::new(vhosts.clone());
            let t = VirtualHostTable::updating(&old, vhosts);
            assert!(!Arc::ptr_eq(&t.index, &old.index));
            for host in ["a.example.com", "x.b.com", "c.com"] {
                assert_eq!(
                    t.find(host).map(|v| v.name.clone()),
                    fresh.find(host).map(|v| v.name.clone()),
                    "{host}"
                );
            }
        }
    }
}
