//! Name lookup as Envoy does it for virtual hosts and TLS server names: the exact name, then the
//! longest `*.suffix` wildcard, then `*`.

use std::collections::HashMap;

/// Index from names (exact, `*.suffix`, `*`) to positions in a list.
#[derive(Debug, Clone, Default)]
pub struct DomainIndex {
    // Looked up on every request: a fast hash, not SipHash (host names are not secret).
    // Boxed names and 32-bit positions: 24-byte slots, not 32 (a table per listener holds
    // every service's names, 3 MB at 10,000 services).
    exact: HashMap<Box<str>, u32, foldhash::fast::RandomState>,
    /// `.suffix` (the `*` stripped), longest first once [`DomainIndex::finish`] ran.
    suffixes: Vec<(String, usize)>,
    any: Option<usize>,
}

impl DomainIndex {
    /// Adds `name` for position `i`; a name added twice keeps its first position.
    pub fn insert(&mut self, name: &str, i: usize) {
        let d = name.to_ascii_lowercase();
        if d == "*" {
            self.any.get_or_insert(i);
        } else if let Some(suffix) = d.strip_prefix('*') {
            if !self.suffixes.iter().any(|(s, _)| s == suffix) {
                self.suffixes.push((suffix.to_string(), i));
            }
        } else {
            // Positions past 32 bits are not indexed exactly (no list is that long).
            if let Ok(i) = u32::try_from(i) {
                self.exact.entry(d.into_boxed_str()).or_insert(i);
            }
        }
    }

    /// Orders the wildcards longest first; call once after the last insert.
    pub fn finish(&mut self) {
        self.suffixes.sort_by_key(|s| std::cmp::Reverse(s.0.len()));
    }

    /// Whether `name` is already claimed exactly as written (`*` and wildcards included).
    pub fn claims(&self, name: &str) -> bool {
        let d = name.to_ascii_lowercase();
        if d == "*" {
            self.any.is_some()
        } else if let Some(suffix) = d.strip_prefix('*') {
            self.suffixes.iter().any(|(s, _)| s == suffix)
        } else {
            self.exact.contains_key(d.as_str())
        }
    }

    /// The position for `host` (no port, no trailing dot), case-insensitive.
    pub fn find(&self, host: &str) -> Option<usize> {
        if let Some(&i) = self.exact.get(host) {
            return Some(i as usize);
        }
        let lower = host.to_ascii_lowercase();
        self.exact
            .get(lower.as_str())
            .map(|&i| i as usize)
            .or_else(|| {
                self.suffixes
                    .iter()
                    .find(|(s, _)| lower.len() > s.len() && lower.ends_with(s.as_str()))
                    .map(|&(_, i)| i)
                    .or(self.any)
            })
    }

    /// The position of `*` alone (what a request without a name gets).
    pub fn any(&self) -> Option<usize> {
        self.any
    }
}
