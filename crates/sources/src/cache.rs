//! Parsed files kept from one read to the next, by path and content digest: a reload parses
//! again only the files whose content changed (one edited object in a 10,000-service tree
//! costs one file's parse, not the whole tree's).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use sluice_model::{parse_text, Parsed};
use twox_hash::XxHash3_128;

use crate::files::{discover, file_name, read_text, FileText};

/// What the last [`FileCache::read_paths`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadStats {
    /// Files parsed (new or changed).
    pub parsed: usize,
    /// Files whose unchanged content was taken from the cache.
    pub reused: usize,
}

/// One file's parse, kept while its content stays the same.
#[derive(Debug)]
struct Entry {
    /// 128 bits of xxHash3 over the text: a changed file is never taken for an unchanged one
    /// short of a deliberate collision, and whoever can write config files needs none.
    digest: u128,
    parsed: Arc<Parsed>,
}

/// Parsed config files by path, kept between reads.
#[derive(Debug, Default)]
pub struct FileCache {
    files: HashMap<PathBuf, Entry>,
    stats: ReadStats,
}

impl FileCache {
    /// An empty cache: the first read parses every file.
    pub fn new() -> FileCache {
        FileCache::default()
    }

    /// Reads every config file under `paths`, as [`crate::read_paths`] does, parsing only the
    /// files whose content differs from the last read. Files no longer present are forgotten.
    pub fn read_paths(&mut self, paths: &[PathBuf]) -> Parsed {
        let (files, diagnostics) = discover(paths);
        let mut out = Parsed {
            resources: Vec::new(),
            diagnostics,
        };
        let mut stats = ReadStats::default();
        let mut kept = HashMap::with_capacity(files.len());
        for path in files {
            let parsed = match read_text(&path) {
                FileText::Text(text) => {
                    let digest = XxHash3_128::oneshot(text.as_bytes());
                    let entry = match self.files.remove(&path) {
                        Some(old) if old.digest == digest => {
                            stats.reused += 1;
                            old
                        }
                        _ => {
                            stats.parsed += 1;
                            let parsed = parse_text(&text, Some(file_name(&path)));
                            Entry {
                                digest,
                                parsed: Arc::new(parsed),
                            }
                        }
                    };
                    let parsed = entry.parsed.clone();
                    kept.insert(path, entry);
                    parsed
                }
                // Unreadable or refused files are not kept: the next read tries them again.
                FileText::Refused(refused) => Arc::new(refused),
            };
            out.resources.extend(parsed.resources.iter().cloned());
            out.diagnostics.extend(parsed.diagnostics.iter().cloned());
        }
        self.files = kept;
        self.stats = stats;
        out
    }

    /// What the last read parsed and what it reused.
    pub fn last_read(&self) -> ReadStats {
        self.stats
    }
}
