//! Files read before, by path and content digest: a reload parses again only the files whose
//! content changed (one edited object in a 10,000-service tree costs one file's parse, not the
//! whole tree's). The objects of unchanged files are taken from the active snapshot rather than
//! kept here a second time: at 10,000 services a second copy of every object is hundreds of MB.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use sluice_model::{Diagnostic, Parsed, Resource};
use twox_hash::XxHash3_128;

use crate::files::{discover, file_name, read_text, FileText};
use crate::parse_many::parse_all;

/// What the last [`FileCache::read_paths`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadStats {
    /// Files parsed (new, changed, or not reusable).
    pub parsed: usize,
    /// Files whose unchanged content was not parsed again.
    pub reused: usize,
}

/// A file as the last read found it.
#[derive(Debug, Clone, Copy)]
struct Seen {
    /// 128 bits of xxHash3 over the text: a changed file is never taken for an unchanged one
    /// short of a deliberate collision, and whoever can write config files needs none.
    digest: u128,
    /// How many objects it held.
    objects: usize,
}

/// What a read does with one file, decided before the changed ones are parsed together.
enum Planned<'p> {
    /// Unreadable or refused: its finding.
    Refused(Parsed),
    /// Unchanged: the previous read's objects.
    Reused(&'p [&'p Arc<Resource>]),
    /// Changed or new: parsed, then remembered by its digest.
    Parse(PathBuf, u128),
}

/// Objects read, shared: an unchanged file's objects are the very ones of the previous read.
#[derive(Debug, Default)]
pub struct SharedRead {
    /// Objects that were read.
    pub resources: Vec<Arc<Resource>>,
    /// Problems found while reading.
    pub diagnostics: Vec<Diagnostic>,
}

/// Digests of the files of the last read, to tell which ones changed.
#[derive(Debug, Default)]
pub struct FileCache {
    files: HashMap<PathBuf, Seen>,
    stats: ReadStats,
}

impl FileCache {
    /// An empty cache: the first read parses every file.
    pub fn new() -> FileCache {
        FileCache::default()
    }

    /// Reads every config file under `paths`, as [`crate::read_paths`] does. A file whose
    /// content is what the last read found, and which parsed without findings then, takes its
    /// objects from `previous`, the objects that read returned (the active snapshot's), instead
    /// of being parsed again: the same objects (`Arc`), not copies, so what depends on them only
    /// (validation, compiled routes) can be kept too.
    pub fn read_paths(&mut self, paths: &[PathBuf], previous: &[Arc<Resource>]) -> SharedRead {
        let (files, diagnostics) = discover(paths);
        let mut out = SharedRead {
            resources: Vec::new(),
            diagnostics,
        };
        let mut by_file: HashMap<&str, Vec<&Arc<Resource>>> = HashMap::new();
        for r in previous {
            if let Some(f) = r.origin.file.as_deref() {
                by_file.entry(f).or_default().push(r);
            }
        }
        let mut stats = ReadStats::default();
        let mut seen = HashMap::with_capacity(files.len());
        // In file order: the objects reused, or the index of the text to parse.
        let mut plan: Vec<Planned> = Vec::with_capacity(files.len());
        let mut texts = Vec::new();
        for path in files {
            let text = match read_text(&path) {
                FileText::Text(text) => text,
                // Unreadable or refused files are not remembered: the next read tries again.
                FileText::Refused(refused) => {
                    plan.push(Planned::Refused(refused));
                    continue;
                }
            };
            let digest = XxHash3_128::oneshot(text.as_bytes());
            let name = file_name(&path);
            let kept = by_file.get(&*name);
            let unchanged = self
                .files
                .get(&path)
                .is_some_and(|s| s.digest == digest && kept.map_or(0, Vec::len) == s.objects);
            if unchanged {
                stats.reused += 1;
                plan.push(Planned::Reused(kept.map(Vec::as_slice).unwrap_or_default()));
                if let Some(s) = self.files.remove(&path) {
                    seen.insert(path, s);
                }
                continue;
            }
            stats.parsed += 1;
            texts.push((text, name));
            plan.push(Planned::Parse(path, digest));
        }
        let mut parsed = parse_all(texts).into_iter();
        for step in plan {
            match step {
                Planned::Refused(refused) => out.diagnostics.extend(refused.diagnostics),
                Planned::Reused(kept) => out.resources.extend(kept.iter().map(|r| Arc::clone(r))),
                Planned::Parse(path, digest) => {
                    let Some(parsed) = parsed.next() else { break };
                    // A file with findings is parsed again each time, so they are reported
                    // each time.
                    if parsed.diagnostics.is_empty() {
                        let objects = parsed.resources.len();
                        seen.insert(path, Seen { digest, objects });
                    }
                    out.resources
                        .extend(parsed.resources.into_iter().map(Arc::new));
                    out.diagnostics.extend(parsed.diagnostics);
                }
            }
        }
        self.files = seen;
        self.stats = stats;
        out
    }

    /// Forgets every file, so the next read parses them all: for when the objects the last
    /// read returned did not become the active snapshot (a rejected reload).
    pub fn clear(&mut self) {
        self.files.clear();
    }

    /// What the last read parsed and what it reused.
    pub fn last_read(&self) -> ReadStats {
        self.stats
    }
}
