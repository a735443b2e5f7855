//! Field paths and the map from path to source position kept for every parsed document.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::hash::BuildHasher as _;
use std::sync::Arc;

use crate::diagnostic::Location;

/// Source positions of every node of one document, by the hash of each node's field path
/// (`spec.http[0].route`), sorted. The parser hashes each path in one buffer as it goes: a
/// string per node, kept in a map until the object was decoded, was a tenth of loading a
/// 10,000-service tree.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpanMap {
    positions: Vec<(u64, Location)>,
    /// For each position, the `N` of the top-level `items[N]` it lies under ([`NO_ITEM`] for
    /// none); empty when no position does (every document but a `kind: List`).
    items: Vec<u32>,
}

/// A position under no top-level `items[N]`.
pub(crate) const NO_ITEM: u32 = u32::MAX;

impl SpanMap {
    /// Positions as recorded (path hash, position, item): sorted by hash, the first recorded
    /// for a path kept.
    pub(crate) fn from_recorded(mut recorded: Vec<(u64, Location, u32)>) -> SpanMap {
        // Stable: the first recorded for a path wins, as in any map of paths.
        recorded.sort_by_key(|(k, ..)| *k);
        recorded.dedup_by_key(|(k, ..)| *k);
        let items = if recorded.iter().any(|(.., i)| *i != NO_ITEM) {
            recorded.iter().map(|(.., i)| *i).collect()
        } else {
            Vec::new()
        };
        SpanMap {
            positions: recorded.into_iter().map(|(k, l, _)| (k, l)).collect(),
            items,
        }
    }

    /// Records the position of the node at `path` (a path recorded already keeps its first).
    pub fn insert(&mut self, path: String, location: Location) {
        let h = path_hash(&path);
        if let Err(i) = self.positions.binary_search_by_key(&h, |(k, _)| *k) {
            self.positions.insert(i, (h, location));
            if !self.items.is_empty() {
                self.items.insert(i, NO_ITEM);
            }
        }
    }

    /// The position of `path`, or of its nearest ancestor that has one.
    pub fn locate(&self, path: &str) -> Option<Location> {
        let mut p = path;
        loop {
            if let Some(l) = self.at_hash(path_hash(p)) {
                return Some(l);
            }
            p = parent(p)?;
        }
    }

    /// The positions of each item of a top-level `items` sequence (a List's), by index, with
    /// the positions of `items` and of the document copied into each so that lookups fall back
    /// alike. One pass: a copy of the whole map per item made loading a List quadratic.
    pub(crate) fn split_items(&self) -> HashMap<u32, SpanMap> {
        let mut out: HashMap<u32, SpanMap> = HashMap::new();
        for (&item, &entry) in self.items.iter().zip(&self.positions) {
            if item != NO_ITEM {
                out.entry(item).or_default().positions.push(entry);
            }
        }
        for ancestor in ["items", ""] {
            if let Some(l) = self.locate_exact(ancestor) {
                for part in out.values_mut() {
                    part.insert(ancestor.to_string(), l);
                }
            }
        }
        out
    }
}

/// The positions kept with a parsed object, by a hash of the path: the paths themselves as
/// strings cost more than the object they locate (75 MB of the 220 MB 10,000 generated services
/// took). A collision, one in 2^64 per pair of paths, would misplace a diagnostic, nothing more.
/// Cheap to clone: the positions are shared.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Spans {
    positions: Positions,
}

/// Sorted by path hash. Most objects keep 32 bits of each hash and each line as an offset from
/// the object's first, 8 bytes a node instead of 16 (spans were the largest single part of a
/// parsed config); an object where two paths share those 32 bits, or a line or column does not
/// fit 16, keeps the whole hash and position, so no object loses the 64-bit guarantee.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Positions {
    Narrow {
        /// The line the offsets count from.
        first_line: u32,
        nodes: Arc<[Narrow]>,
    },
    Wide(Arc<[(u64, Location)]>),
    /// An object inside a document (an item of a `kind: List`): the positions of its part of
    /// the document, by their paths in the document, and its own path there.
    Rooted(Arc<(Arc<SpanMap>, Box<str>)>),
}

impl Default for Positions {
    fn default() -> Self {
        Positions::Narrow {
            first_line: 0,
            nodes: Arc::new([]),
        }
    }
}

/// One node's position under the high 32 bits of its path's hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Narrow {
    hash: u32,
    /// Lines after the object's first.
    line: u16,
    column: u16,
}

/// The high half of a path hash: in the same order as the whole hashes.
fn high(hash: u64) -> u32 {
    (hash >> 32) as u32
}

impl Spans {
    /// The position of `path`, or of its nearest ancestor that has one.
    pub fn locate(&self, path: &str) -> Option<Location> {
        if let Positions::Rooted(rooted) = &self.positions {
            let (doc, root) = &**rooted;
            let full = match (root.is_empty(), path.is_empty()) {
                (true, _) => path.to_string(),
                (false, true) => root.to_string(),
                (false, false) if path.starts_with('[') => format!("{root}{path}"),
                (false, false) => format!("{root}.{path}"),
            };
            // Not above the item: the rest of the document is not the object's.
            let mut p = full.as_str();
            loop {
                if let Some(l) = doc.locate_exact(p) {
                    return Some(l);
                }
                if p.len() <= root.len() {
                    return None;
                }
                p = parent(p)?;
            }
        }
        let mut p = path;
        loop {
            if let Some(l) = self.at_hash(path_hash(p)) {
                return Some(l);
            }
            p = parent(p)?;
        }
    }

    /// The positions of the object at `root` in a document (an item of a List), from `spans`
    /// keyed by paths in that document.
    pub fn rooted(spans: Arc<SpanMap>, root: &str) -> Spans {
        Spans {
            positions: Positions::Rooted(Arc::new((spans, root.into()))),
        }
    }

    /// The position recorded under a path hash.
    fn at_hash(&self, h: u64) -> Option<Location> {
        match &self.positions {
            Positions::Narrow { first_line, nodes } => {
                let i = nodes.binary_search_by_key(&high(h), |e| e.hash).ok()?;
                nodes.get(i).map(|e| Location {
                    line: first_line + u32::from(e.line),
                    column: u32::from(e.column),
                })
            }
            Positions::Wide(w) => {
                let i = w.binary_search_by_key(&h, |(k, _)| *k).ok()?;
                w.get(i).map(|(_, l)| *l)
            }
            Positions::Rooted(rooted) => rooted.0.at_hash(h),
        }
    }

    /// Spans from hashed positions, sorted and deduplicated by hash.
    fn from_hashed(positions: Vec<(u64, Location)>) -> Spans {
        let first_line = positions.iter().map(|(_, l)| l.line).min().unwrap_or(0);
        let narrow = |(h, l): &(u64, Location)| {
            Some(Narrow {
                hash: high(*h),
                line: u16::try_from(l.line - first_line).ok()?,
                column: u16::try_from(l.column).ok()?,
            })
        };
        let distinct = positions.windows(2).all(|w| match w {
            [(a, _), (b, _)] => high(*a) != high(*b),
            _ => true,
        });
        let nodes: Option<Arc<[Narrow]>> = if distinct {
            positions.iter().map(narrow).collect()
        } else {
            None
        };
        let positions = match nodes {
            Some(nodes) => Positions::Narrow { first_line, nodes },
            None => Positions::Wide(positions.into()),
        };
        Spans { positions }
    }
}

impl From<SpanMap> for Spans {
    fn from(map: SpanMap) -> Spans {
        Spans::from_hashed(map.positions)
    }
}

impl SpanMap {
    /// The position recorded for exactly `path`.
    fn locate_exact(&self, path: &str) -> Option<Location> {
        self.at_hash(path_hash(path))
    }

    fn at_hash(&self, h: u64) -> Option<Location> {
        let i = self.positions.binary_search_by_key(&h, |(k, _)| *k).ok()?;
        self.positions.get(i).map(|(_, l)| *l)
    }
}

/// A path's hash, the same in every process (spans are never persisted, but tests compare).
pub(crate) fn path_hash(path: &str) -> u64 {
    foldhash::quality::FixedState::with_seed(0x5e1c_e5a7).hash_one(path)
}

/// The parent of a field path: `a.b[2]` → `a.b`, `a.b` → `a`, `a` → ``, `` → none.
pub fn parent(path: &str) -> Option<&str> {
    if path.is_empty() {
        return None;
    }
    if path.ends_with("\"]") {
        if let Some(i) = path.rfind("[\"") {
            return Some(&path[..i]);
        }
    }
    let cut = path.rfind(['.', '[']).unwrap_or(0);
    Some(&path[..cut])
}

/// Appends a map key to a path, quoting keys that are not plain identifiers.
pub fn push_key(path: &str, key: &str) -> String {
    let mut out = String::with_capacity(path.len() + key.len() + 4);
    out.push_str(path);
    append_key(&mut out, key);
    out
}

/// Appends a sequence index to a path.
pub fn push_index(path: &str, index: usize) -> String {
    format!("{path}[{index}]")
}

/// [`push_key`] in place.
pub(crate) fn append_key(path: &mut String, key: &str) {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if plain {
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(key);
    } else {
        let _ = write!(path, "[{key:?}]");
    }
}

/// [`push_index`] in place.
pub(crate) fn append_index(path: &mut String, index: usize) {
    let _ = write!(path, "[{index}]");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(push_key("spec", "http"), "spec.http");
        assert_eq!(push_index("spec.http", 2), "spec.http[2]");
        assert_eq!(push_key("spec.headers", "x.y"), "spec.headers[\"x.y\"]");
        assert_eq!(parent("spec.http[2].route"), Some("spec.http[2]"));
        assert_eq!(parent("spec.http[2]"), Some("spec.http"));
        assert_eq!(parent("spec"), Some(""));
        assert_eq!(parent(""), None);
    }

    /// Spans keep 32 bits of each hash and 16 of each line (after the object's first) and
    /// column, unless two paths share those 32 bits or a line or column is too far for 16;
    /// every position reads back either way.
    #[test]
    fn spans_narrow_unless_two_hashes_share_their_high_half() {
        let at = |line, column| Location { line, column };
        let kinds = |s: &Spans| matches!(s.positions, Positions::Narrow { .. });
        let distinct = Spans::from_hashed(vec![(1 << 32, at(1, 1)), (2 << 32, at(2, 70_000))]);
        assert!(!kinds(&distinct), "a column over 16 bits");
        assert_eq!(distinct.at_hash(2 << 32), Some(at(2, 70_000)));
        let long = Spans::from_hashed(vec![(1 << 32, at(3, 1)), (2 << 32, at(70_003, 2))]);
        assert!(!kinds(&long), "a line 70,000 after the first");
        assert_eq!(long.at_hash(2 << 32), Some(at(70_003, 2)));
        let far = Spans::from_hashed(vec![(1 << 32, at(900_000, 1)), (2 << 32, at(900_009, 2))]);
        assert!(kinds(&far), "lines far down a file, close together");
        assert_eq!(far.at_hash(2 << 32), Some(at(900_009, 2)));
        let narrow = Spans::from_hashed(vec![((1 << 32) | 5, at(1, 3)), (2 << 32, at(2, 9))]);
        assert!(kinds(&narrow));
        assert_eq!(narrow.at_hash((1 << 32) | 5), Some(at(1, 3)));
        assert_eq!(narrow.at_hash(2 << 32), Some(at(2, 9)));
        assert_eq!(narrow.at_hash(3 << 32), None);
        let shared = Spans::from_hashed(vec![((1 << 32) | 1, at(1, 1)), ((1 << 32) | 2, at(7, 2))]);
        assert!(!kinds(&shared), "two hashes with one high half");
        assert_eq!(shared.at_hash((1 << 32) | 1), Some(at(1, 1)));
        assert_eq!(shared.at_hash((1 << 32) | 2), Some(at(7, 2)));
        let mut m = SpanMap::default();
        m.insert("spec".into(), at(3, 1));
        m.insert("spec.hosts[0]".into(), at(4, 5));
        let spans = Spans::from(m);
        assert!(kinds(&spans));
        assert_eq!(spans.locate("spec.hosts[0]"), Some(at(4, 5)));
        assert_eq!(spans.locate("spec.hosts[1]"), Some(at(3, 1)));
        assert_eq!(std::mem::size_of::<Narrow>(), 8);
    }

    /// An item of a List locates its own paths in the shared document, falling back no further
    /// than the item itself.
    #[test]
    fn rooted_spans_locate_within_their_item() {
        let mut m = SpanMap::default();
        let at = |line| Location { line, column: 1 };
        m.insert("kind".into(), at(1));
        m.insert("items".into(), at(2));
        m.insert("items[0]".into(), at(3));
        m.insert("items[0].spec".into(), at(4));
        m.insert("items[1]".into(), at(5));
        m.insert("items[1].spec.hosts[0]".into(), at(6));
        let doc = Arc::new(m);
        let first = Spans::rooted(Arc::clone(&doc), "items[0]");
        let second = Spans::rooted(doc, "items[1]");
        assert_eq!(first.locate("spec.x").map(|l| l.line), Some(4));
        assert_eq!(first.locate("").map(|l| l.line), Some(3));
        assert_eq!(first.locate("kind").map(|l| l.line), Some(3));
        assert_eq!(second.locate("spec.hosts[0]").map(|l| l.line), Some(6));
        assert_eq!(second.locate("spec.hosts[1]").map(|l| l.line), Some(5));
    }

    #[test]
    fn frozen_spans_locate_like_the_map() {
        let mut m = SpanMap::default();
        m.insert("spec".into(), Location { line: 3, column: 1 });
        m.insert("spec.http".into(), Location { line: 4, column: 3 });
        m.insert("spec.http[1].route".into(), Location { line: 9, column: 5 });
        let frozen = Spans::from(m.clone());
        for path in [
            "spec.http[0].route",
            "spec.tcp",
            "spec.http[1].route[0]",
            "kind",
            "",
        ] {
            assert_eq!(frozen.locate(path), m.locate(path), "{path}");
        }
    }

    #[test]
    fn locate_falls_back_to_ancestor() {
        let mut m = SpanMap::default();
        m.insert("spec".into(), Location { line: 3, column: 1 });
        m.insert("spec.http".into(), Location { line: 4, column: 3 });
        assert_eq!(m.locate("spec.http[0].route").map(|l| l.line), Some(4));
        assert_eq!(m.locate("spec.tcp").map(|l| l.line), Some(3));
    }
}
