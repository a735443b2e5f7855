//! Reading config files: directories recursively, `.yaml`, `.yml` and `.json`, in a stable order.

use std::collections::HashSet;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sluice_model::limits::MAX_FILE_BYTES;
use sluice_model::{codes, parse_text, Diagnostic, Parsed};

/// Whether a path looks like a config file.
pub fn is_config_file(p: &Path) -> bool {
    let hidden = p
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.'));
    !hidden
        && matches!(
            p.extension().and_then(|e| e.to_str()),
            Some("yaml") | Some("yml") | Some("json")
        )
}

/// Every config file under `paths` (files as given, directories recursively), sorted.
pub fn discover(paths: &[PathBuf]) -> (Vec<PathBuf>, Vec<Diagnostic>) {
    let mut walk = Walk::default();
    for p in paths {
        match std::fs::metadata(p) {
            Ok(m) if m.is_dir() => walk.dir(p),
            Ok(_) => walk.files.push(p.clone()),
            Err(e) => walk.diags.push(Diagnostic::error(
                codes::SYNTAX,
                format!("cannot read {}: {e}", p.display()),
            )),
        }
    }
    let Walk {
        mut files, diags, ..
    } = walk;
    files.sort();
    files.dedup();
    (files, diags)
}

/// A directory walk that reads each directory once, by its canonical path: a symlink back to
/// an ancestor (or to a directory already read) would otherwise load the same files again and
/// again until the path grows too long, each copy a "defined twice" error.
#[derive(Default)]
struct Walk {
    files: Vec<PathBuf>,
    diags: Vec<Diagnostic>,
    /// Canonical paths of the directories read so far.
    seen: HashSet<PathBuf>,
}

impl Walk {
    fn dir(&mut self, dir: &Path) {
        match std::fs::canonicalize(dir) {
            Ok(real) => {
                if self.seen.contains(&real) {
                    return self.skip_repeat(dir, &real);
                }
                self.seen.insert(real);
            }
            Err(e) => return self.unreadable(dir, &e),
        }
        let mut paths: Vec<PathBuf> = match std::fs::read_dir(dir) {
            Ok(e) => e.flatten().map(|entry| entry.path()).collect(),
            Err(e) => return self.unreadable(dir, &e),
        };
        // Sorted, so that of two links to one directory the same one is always followed.
        paths.sort();
        for path in paths {
            // Kubernetes ConfigMap mounts keep the real files in `..data`; the top-level names are
            // symlinks into it, so reading both would load every object twice.
            if path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(".."))
            {
                continue;
            }
            match std::fs::metadata(&path) {
                Ok(m) if m.is_dir() => self.dir(&path),
                Ok(_) if is_config_file(&path) => self.files.push(path),
                _ => {}
            }
        }
    }

    /// A directory reached a second time: a loop (it contains the link) is worth a warning; a
    /// second link to a directory read elsewhere is just skipped.
    fn skip_repeat(&mut self, dir: &Path, real: &Path) {
        let is_loop = std::fs::canonicalize(dir.parent().unwrap_or(dir))
            .is_ok_and(|parent| parent.starts_with(real));
        if is_loop {
            self.diags.push(
                Diagnostic::warning(
                    codes::SYMLINK_LOOP,
                    format!(
                        "{} links back to {}, which is already being read: the loop is not followed",
                        dir.display(),
                        real.display()
                    ),
                )
                .at(Some(Arc::from(dir.display().to_string())), None),
            );
        }
    }

    fn unreadable(&mut self, dir: &Path, e: &std::io::Error) {
        self.diags.push(Diagnostic::error(
            codes::SYNTAX,
            format!("cannot read directory {}: {e}", dir.display()),
        ));
    }
}

/// Reads and parses one file; a file over [`MAX_FILE_BYTES`] is refused unread.
pub fn read_file(path: &Path) -> Parsed {
    match read_text(path) {
        FileText::Text(text) => parse_text(&text, Some(file_name(path))),
        FileText::Refused(refused) => refused,
    }
}

/// A config file's text, or why it was not read.
pub(crate) enum FileText {
    /// The whole text.
    Text(String),
    /// Unreadable or over the cap: the diagnostic to report instead of its objects.
    Refused(Parsed),
}

/// Reads one file's text; a file over [`MAX_FILE_BYTES`] is refused unread.
pub(crate) fn read_text(path: &Path) -> FileText {
    let refused = |code, message: String| {
        FileText::Refused(Parsed {
            resources: Vec::new(),
            diagnostics: vec![Diagnostic::error(code, message).at(Some(file_name(path)), None)],
        })
    };
    match read_capped(path) {
        Ok(Some(text)) => FileText::Text(text),
        Ok(None) => refused(
            codes::LIMIT_EXCEEDED,
            format!("file refused: larger than the {MAX_FILE_BYTES}-byte limit on config files"),
        ),
        Err(e) => refused(codes::SYNTAX, format!("cannot read file: {e}")),
    }
}

/// The name diagnostics and locations give the file.
pub(crate) fn file_name(path: &Path) -> Arc<str> {
    Arc::from(path.display().to_string())
}

/// The file's text, or `None` when it is over the cap. Reads at most one byte past the cap, so
/// a file that grows while it is read (or a device that never ends) costs no more.
fn read_capped(path: &Path) -> std::io::Result<Option<String>> {
    let file = std::fs::File::open(path)?;
    let declared = file.metadata().map(|m| m.len()).unwrap_or(0);
    if declared > MAX_FILE_BYTES as u64 {
        return Ok(None);
    }
    let mut text = String::with_capacity(declared as usize);
    file.take(MAX_FILE_BYTES as u64 + 1)
        .read_to_string(&mut text)?;
    if text.len() > MAX_FILE_BYTES {
        return Ok(None);
    }
    Ok(Some(text))
}

/// Reads every config file under `paths`.
pub fn read_paths(paths: &[PathBuf]) -> Parsed {
    let (files, diagnostics) = discover(paths);
    let mut out = Parsed {
        resources: Vec::new(),
        diagnostics,
    };
    // Read in order (a refused file's finding keeps its place), parse all at once.
    let mut texts = Vec::new();
    let mut results: Vec<Option<Parsed>> = Vec::new();
    for f in files {
        match read_text(&f) {
            FileText::Text(text) => {
                texts.push((text, file_name(&f)));
                results.push(None);
            }
            FileText::Refused(refused) => results.push(Some(refused)),
        }
    }
    let mut parsed = crate::parse_many::parse_all(texts).into_iter();
    for p in results {
        if let Some(p) = p.or_else(|| parsed.next()) {
            out.resources.extend(p.resources);
            out.diagnostics.extend(p.diagnostics);
        }
    }
    out
}
