//! Files read before, by path and content digest: a reload parses again only the files whose
//! content changed (one edited object in a 10,000-service tree costs one file's parse, not the
//! whole tree's). The objects of unchanged files are taken from the active snapshot rather than
//! kept here a second time: at 10,000 services a second copy of every object is hundreds of MB.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use sluice_model::{Diagnostic, Kind, Parsed, Resource};
use twox_hash::XxHash3_128;

use crate::documents::{self, DocMarks};
use crate::files::{discover, file_name, read_text, FileText};
use crate::parse_many::parse_all_with;

/// How much older than a read a file's last change must be for its metadata alone to vouch
/// for its content at the next read. A file changed twice within one tick of the file system's
/// clock, to the same length, keeps its metadata; one changed this recently is read every time.
const STAMP_MARGIN: Duration = Duration::from_secs(2);

/// What the last [`FileCache::read_paths`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadStats {
    /// Files parsed (new, changed, or not reusable).
    pub parsed: usize,
    /// Of the parsed files, those parsed a changed document at a time.
    pub by_document: usize,
    /// Files whose unchanged content was not parsed again.
    pub reused: usize,
    /// Of the reused files, those not even read: their metadata had not changed.
    pub unread: usize,
}

/// A file's metadata, which any write changes (`ctime` cannot be set back by anyone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    fn of(m: &std::fs::Metadata) -> Stamp {
        use std::os::unix::fs::MetadataExt;
        Stamp {
            dev: m.dev(),
            ino: m.ino(),
            len: m.len(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        }
    }

    /// Whether the file last changed `margin` or more before `read_at`.
    fn settled(&self, read_at: SystemTime, margin: Duration) -> bool {
        let at = |(s, ns): (i64, i64)| {
            let since_epoch =
                Duration::new(s.max(0).unsigned_abs(), ns.clamp(0, 999_999_999) as u32);
            SystemTime::UNIX_EPOCH + since_epoch
        };
        let changed = at(self.mtime).max(at(self.ctime));
        read_at
            .duration_since(changed)
            .is_ok_and(|age| age >= margin)
    }
}

/// A file as the last read found it.
#[derive(Debug, Clone)]
struct Seen {
    /// 128 bits of xxHash3 over the text: a changed file is never taken for an unchanged one
    /// short of a deliberate collision, and whoever can write config files needs none.
    digest: u128,
    /// How many objects it held.
    objects: usize,
    /// Where its objects started in what the read returned.
    start: usize,
    /// Its metadata, when it had settled before the read (see [`STAMP_MARGIN`]).
    stamp: Option<Stamp>,
    /// Its documents, when an edit can be parsed a changed document at a time.
    docs: Option<DocMarks>,
}

/// What a read does with one file, decided before the changed ones are parsed together.
enum Planned<'p> {
    /// Unreadable or refused: its finding.
    Refused(Parsed),
    /// Unchanged: the previous read's objects.
    Reused(PathBuf, Vec<&'p Arc<Resource>>, Seen),
    /// Changed or new: parsed, then remembered by its digest; the objects the file held
    /// before stand in for the new ones they equal.
    Parse(PathBuf, u128, Option<Stamp>, Vec<&'p Arc<Resource>>),
    /// Changed, and parsed already, a changed document at a time.
    Reparsed(PathBuf, Seen, Vec<Arc<Resource>>),
}

/// Objects read, shared: an unchanged file's objects are the very ones of the previous read.
#[derive(Debug, Default)]
pub struct SharedRead {
    /// Objects that were read.
    pub resources: Vec<Arc<Resource>>,
    /// Problems found while reading.
    pub diagnostics: Vec<Diagnostic>,
}

/// Digests of the files of the last read, to tell which ones changed. A clone taken before a
/// read that does not become the active config puts the cache back where it was (see
/// [`FileCache::clear`] for when that is not known).
#[derive(Debug, Clone)]
pub struct FileCache {
    files: HashMap<PathBuf, Seen>,
    /// How many objects the last read returned.
    returned: usize,
    stats: ReadStats,
    margin: Duration,
}

impl Default for FileCache {
    fn default() -> Self {
        FileCache {
            files: HashMap::new(),
            returned: 0,
            stats: ReadStats::default(),
            margin: STAMP_MARGIN,
        }
    }
}

/// The previous read's objects of each file: by position when `previous` is what the last
/// read returned (the usual case, no object touched), else grouped by file name.
struct Previous<'p> {
    objects: &'p [Arc<Resource>],
    positional: bool,
    by_file: std::cell::OnceCell<HashMap<&'p str, Vec<&'p Arc<Resource>>>>,
}

impl<'p> Previous<'p> {
    fn of_file(&self, name: &str, seen: Option<&Seen>) -> Vec<&'p Arc<Resource>> {
        if let Some(s) = seen.filter(|_| self.positional) {
            let range = self.objects.get(s.start..s.start + s.objects);
            let from_file = |r: &Arc<Resource>| r.origin.file.as_deref() == Some(name);
            if let Some(range) =
                range.filter(|r| r.first().is_none_or(from_file) && r.last().is_none_or(from_file))
            {
                return range.iter().collect();
            }
        }
        let by_file = self.by_file.get_or_init(|| {
            let mut by_file: HashMap<&str, Vec<&Arc<Resource>>> = HashMap::new();
            for r in self.objects {
                if let Some(f) = r.origin.file.as_deref() {
                    by_file.entry(f).or_default().push(r);
                }
            }
            by_file
        });
        by_file.get(name).cloned().unwrap_or_default()
    }
}

impl FileCache {
    /// An empty cache: the first read parses every file.
    pub fn new() -> FileCache {
        FileCache::default()
    }

    /// A cache that trusts the metadata of files changed at least `margin` before a read.
    #[doc(hidden)]
    pub fn with_stamp_margin(margin: Duration) -> FileCache {
        FileCache {
            margin,
            ..FileCache::default()
        }
    }

    /// Reads every config file under `paths`, as [`crate::read_paths`] does. A file whose
    /// content is what the last read found, and which parsed without findings then, takes its
    /// objects from `previous`, the objects that read returned (the active snapshot's), instead
    /// of being parsed again: the same objects (`Arc`), not copies, so what depends on them only
    /// (validation, compiled routes) can be kept too. A file whose metadata has not changed
    /// since it settled is not even read; of an edited file, the objects equal to what it held
    /// before are those objects.
    pub fn read_paths(&mut self, paths: &[PathBuf], previous: &[Arc<Resource>]) -> SharedRead {
        let read_at = SystemTime::now();
        let (files, diagnostics) = discover(paths);
        let mut out = SharedRead {
            resources: Vec::new(),
            diagnostics,
        };
        let before = Previous {
            objects: previous,
            positional: previous.len() == self.returned,
            by_file: std::cell::OnceCell::new(),
        };
        let mut stats = ReadStats::default();
        // In file order: the objects reused, or the text to parse.
        let mut plan: Vec<Planned> = Vec::with_capacity(files.len());
        let mut texts = Vec::new();
        for path in files {
            let name = file_name(&path);
            let seen = self.files.get(&path).cloned();
            let kept = before.of_file(&name, seen.as_ref());
            let stamp = std::fs::metadata(&path).ok().map(|m| Stamp::of(&m));
            let complete = seen.as_ref().is_some_and(|s| s.objects == kept.len());
            let unchanged = seen
                .as_ref()
                .filter(|s| complete && s.stamp.is_some() && s.stamp == stamp);
            if let Some(s) = unchanged.cloned() {
                stats.reused += 1;
                stats.unread += 1;
                plan.push(Planned::Reused(path, kept, s));
                continue;
            }
            let text = match read_text(&path) {
                FileText::Text(text) => text,
                // Unreadable or refused files are not remembered: the next read tries again.
                FileText::Refused(refused) => {
                    plan.push(Planned::Refused(refused));
                    continue;
                }
            };
            let digest = XxHash3_128::oneshot(text.as_bytes());
            let stamp = stamp.filter(|s| s.settled(read_at, self.margin));
            if let Some(s) = seen.as_ref().filter(|s| complete && s.digest == digest) {
                stats.reused += 1;
                plan.push(Planned::Reused(path, kept, Seen { stamp, ..s.clone() }));
                continue;
            }
            stats.parsed += 1;
            let marks = seen.and_then(|s| s.docs).filter(|_| complete);
            if let Some((objects, docs)) =
                marks.and_then(|m| documents::reparse(&text, &name, &m, &kept))
            {
                stats.by_document += 1;
                let seen = Seen {
                    digest,
                    objects: objects.len(),
                    start: 0,
                    stamp,
                    docs: Some(docs),
                };
                plan.push(Planned::Reparsed(path, seen, objects));
                continue;
            }
            texts.push((text, name));
            plan.push(Planned::Parse(path, digest, stamp, kept));
        }
        let mut parsed = parse_all_with(texts, documents::parse_marked).into_iter();
        let mut seen = HashMap::with_capacity(plan.len());
        for step in plan {
            let start = out.resources.len();
            match step {
                Planned::Refused(refused) => out.diagnostics.extend(refused.diagnostics),
                Planned::Reused(path, kept, s) => {
                    out.resources.extend(kept.into_iter().map(Arc::clone));
                    seen.insert(path, Seen { start, ..s });
                }
                Planned::Reparsed(path, s, objects) => {
                    out.resources.extend(objects);
                    seen.insert(path, Seen { start, ..s });
                }
                Planned::Parse(path, digest, stamp, kept) => {
                    let Some((parsed, docs)) = parsed.next() else {
                        break;
                    };
                    // A file with findings is parsed again each time, so they are reported
                    // each time.
                    if parsed.diagnostics.is_empty() {
                        let objects = parsed.resources.len();
                        seen.insert(
                            path,
                            Seen {
                                digest,
                                objects,
                                start,
                                stamp,
                                docs,
                            },
                        );
                    }
                    out.resources.extend(adopt_equal(parsed.resources, &kept));
                    out.diagnostics.extend(parsed.diagnostics);
                }
            }
        }
        self.files = seen;
        self.returned = out.resources.len();
        self.stats = stats;
        out
    }

    /// Forgets every file, so the next read parses them all: for when the objects the last
    /// read returned did not become the active snapshot and no clone from before that read is
    /// at hand.
    pub fn clear(&mut self) {
        self.files.clear();
    }

    /// What the last read parsed and what it reused.
    pub fn last_read(&self) -> ReadStats {
        self.stats
    }
}

/// The objects parsed from an edited file, where each one equal to an object the file held
/// before (`kept`) is that object: equal in content and in source positions, so the findings
/// and compiled parts that depend on it alone stay valid, and an edit of one object in a file
/// of hundreds leaves the others the same `Arc`s.
pub(crate) fn adopt_equal(parsed: Vec<Resource>, kept: &[&Arc<Resource>]) -> Vec<Arc<Resource>> {
    type Key<'r> = (Kind, &'r str, &'r str);
    fn key(r: &Resource) -> Key<'_> {
        (r.kind, &r.metadata.namespace, &r.metadata.name)
    }
    let mut by_key: Option<HashMap<Key<'_>, &Arc<Resource>>> = None;
    parsed
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            // Mostly in the same place; the index is built only once an object moved.
            let old = match kept.get(i).filter(|k| key(k) == key(&r)) {
                Some(k) => Some(*k),
                None => by_key
                    .get_or_insert_with(|| kept.iter().map(|k| (key(k), *k)).collect())
                    .get(&key(&r))
                    .copied(),
            };
            match old {
                Some(old) if **old == r => Arc::clone(old),
                _ => Arc::new(r),
            }
        })
        .collect()
}
