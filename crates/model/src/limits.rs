//! Caps on what one config file may cost to load: its size, its documents, its nesting, and how
//! far YAML aliases may expand it.
//!
//! Without them a 619-byte file of nested anchors (9 levels of 10 aliases: 10⁹ nodes) took
//! every byte of memory the loader could get, even under a kind sluice skips, because aliases
//! are expanded before the kind is known. A file over a cap is rejected as a whole with a
//! diagnostic naming the file and line; the rest of the config, or the last good config, stays.

/// Largest config file read, in bytes.
///
/// The Kubernetes API server refuses objects over ~1.5 MiB (etcd's request limit) and a
/// ConfigMap holds at most 1 MiB, so 8 MiB leaves room for a multi-document file of many
/// objects while keeping what one file can cost to parse in the hundreds of megabytes.
pub const MAX_FILE_BYTES: usize = 8 * 1024 * 1024;

/// Most YAML documents in one file.
///
/// An empty document costs a few bytes of text and a few hundred of memory; without a cap an
/// 8 MiB file of `---` lines would be two million of them.
pub const MAX_DOCUMENTS: usize = 10_000;

/// Deepest nesting of mappings and sequences.
///
/// Istio objects nest fewer than 15 levels. The cap is serde_json's own recursion limit (the
/// JSON path refuses deeper input already), and it keeps the recursive drop and deserialization
/// of the value tree far from the end of a thread's stack.
pub const MAX_DEPTH: usize = 128;

/// Most nodes YAML aliases may add to one file, counted over all its documents.
///
/// A fixed budget rather than one proportional to the file: what the file's own nodes cost is
/// already bounded by [`MAX_FILE_BYTES`], and a proportional budget would multiply that bound.
/// Hand-written config uses anchors to share a retry policy or a few headers a handful of
/// times (hundreds of nodes); a generated 100,000-route VirtualService written with aliases
/// would be a few hundred thousand. One million copies is a few hundred milliseconds and about
/// a hundred megabytes at worst, where the bomb above is 10⁹. Strings count one node per
/// [`STRING_BYTES_PER_NODE`] bytes, so that an alias of a long string is not a cheap copy.
pub const MAX_ALIAS_EXPANSION: usize = 1_000_000;

/// Bytes of a scalar or key counted as one more node of alias expansion (the size of a value).
pub const STRING_BYTES_PER_NODE: usize = 32;

/// What a scalar (or a mapping key) of `len` bytes counts for in the alias budget.
pub fn scalar_cost(len: usize) -> usize {
    1 + len / STRING_BYTES_PER_NODE
}
