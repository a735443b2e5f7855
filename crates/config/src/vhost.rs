//! Virtual hosts and the Host/:authority lookup table (exact, then longest wildcard suffix, then `*`).

use std::collections::HashMap;
use std::sync::Arc;

use serde::Serialize;

use crate::host::strip_port;
use crate::route_table::Route;

/// A set of domains sharing one ordered route list.
#[derive(Debug, Clone, Serialize)]
pub struct VirtualHost {
    /// Name (`<host>:<port>`).
    pub name: String,
    /// Domains served (exact names, `*.suffix`, `*`).
    pub domains: Vec<String>,
    /// Ordered rules; the first match wins.
    pub routes: Vec<Route>,
}

/// Lookup from a request's Host to a virtual host.
#[derive(Debug, Clone, Default, Serialize)]
pub struct VirtualHostTable {
    /// Virtual hosts in declaration order.
    pub vhosts: Vec<Arc<VirtualHost>>,
    #[serde(skip)]
    // Looked up on every request: a fast hash, not SipHash (host names are not secret).
    exact: HashMap<String, usize, foldhash::fast::RandomState>,
    #[serde(skip)]
    suffixes: Vec<(String, usize)>,
    #[serde(skip)]
    any: Option<usize>,
}

impl VirtualHostTable {
    /// Indexes virtual hosts; a domain claimed twice goes to the first.
    pub fn new(vhosts: Vec<Arc<VirtualHost>>) -> Self {
        let mut t = VirtualHostTable {
            vhosts,
            ..Default::default()
        };
        for (i, vh) in t.vhosts.iter().enumerate() {
            for d in &vh.domains {
                let d = d.to_ascii_lowercase();
                if d == "*" {
                    t.any.get_or_insert(i);
                } else if let Some(suffix) = d.strip_prefix('*') {
                    if !t.suffixes.iter().any(|(s, _)| s == suffix) {
                        t.suffixes.push((suffix.to_string(), i));
                    }
                } else {
                    t.exact.entry(d).or_insert(i);
                }
            }
        }
        t.suffixes.sort_by_key(|s| std::cmp::Reverse(s.0.len()));
        t
    }

    /// The virtual host for a Host header value (the port is ignored, case-insensitive).
    pub fn find(&self, authority: &str) -> Option<&Arc<VirtualHost>> {
        let host = strip_port(authority).trim_end_matches('.');
        let idx = match self.exact.get(host) {
            Some(&i) => Some(i),
            None => {
                let lower = host.to_ascii_lowercase();
                self.exact.get(&lower).copied().or_else(|| {
                    self.suffixes
                        .iter()
                        .find(|(s, _)| lower.len() > s.len() && lower.ends_with(s.as_str()))
                        .map(|&(_, i)| i)
                        .or(self.any)
                })
            }
        };
        idx.and_then(|i| self.vhosts.get(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vh(name: &str, domains: &[&str]) -> Arc<VirtualHost> {
        Arc::new(VirtualHost {
            name: name.into(),
            domains: domains.iter().map(|d| d.to_string()).collect(),
            routes: vec![],
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
}
