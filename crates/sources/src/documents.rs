//! Document-level reparsing: of an edited file holding many objects, only the YAML documents
//! whose text changed are parsed again; the others keep their objects (the same `Arc`s).
//!
//! A document here is the text from one `---` line to the next. One is kept only when the same
//! text sits on the same lines, so its objects, source positions included, are what a full parse
//! gives. A changed document is parsed alone after as many empty lines as precede it, so its
//! positions are the file's. A text where a document read alone could differ from the same
//! document read in its stream is always parsed whole: directives (`%`), anchors (the alias
//! budget counts the whole file), document end markers (`...`), carriage returns (line counts),
//! more documents than a file may hold, or any finding.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use sluice_model::limits::{MAX_DOCUMENTS, MAX_FILE_BYTES};
use sluice_model::{parse_text_by_document, Parsed, Resource};
use twox_hash::XxHash3_128;

/// One document of a file as last read: its text's hash, its first line and how many objects
/// it gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DocMark {
    hash: u128,
    line: u32,
    objects: usize,
}

/// The documents of a file, in order.
pub(crate) type DocMarks = Arc<[DocMark]>;

/// A document's place in its text.
struct Doc {
    bytes: Range<usize>,
    line: u32,
}

impl Doc {
    fn hash(&self, text: &str) -> u128 {
        XxHash3_128::oneshot(text.as_bytes().get(self.bytes.clone()).unwrap_or_default())
    }
}

/// The documents of `text`, or `None` when it cannot be read a document at a time.
fn split(text: &str) -> Option<Vec<Doc>> {
    if text.len() > MAX_FILE_BYTES || text.contains(['&', '\r']) {
        return None;
    }
    let mut docs = Vec::new();
    let (mut start, mut start_line) = (0, 1u32);
    let (mut at, mut line) = (0, 1u32);
    for l in text.split_inclusive('\n') {
        if l.starts_with('%') || l.starts_with("...") {
            return None;
        }
        let marker = l.starts_with("---")
            && matches!(l.as_bytes().get(3), None | Some(b' ' | b'\t' | b'\n'));
        if marker {
            docs.push(Doc {
                bytes: start..at,
                line: start_line,
            });
            (start, start_line) = (at, line);
        }
        at += l.len();
        line = line.checked_add(1)?;
    }
    docs.push(Doc {
        bytes: start..text.len(),
        line: start_line,
    });
    (docs.len() <= MAX_DOCUMENTS).then_some(docs)
}

/// Parses `text` whole, with its documents' marks for the next edit (none when it cannot be
/// reparsed by document, or gave findings: such a file is parsed whole every time).
pub(crate) fn parse_marked(text: &str, file: Arc<str>) -> (Parsed, Option<DocMarks>) {
    let (parsed, counts) = parse_text_by_document(text, Some(file));
    if !parsed.diagnostics.is_empty() {
        return (parsed, None);
    }
    let marks = split(text).and_then(|docs| marks_of(text, &docs, &counts, parsed.resources.len()));
    (parsed, marks)
}

/// The marks of `docs`, given the objects each parsed document (by its first line) gave.
fn marks_of(text: &str, docs: &[Doc], counts: &[(u32, usize)], total: usize) -> Option<DocMarks> {
    let mut objects = vec![0; docs.len()];
    let mut last: Option<usize> = None;
    for &(line, n) in counts {
        let i = docs.partition_point(|d| d.line <= line).checked_sub(1)?;
        // Two parsed documents in one of ours, or out of order: ours are not the parser's.
        if last.is_some_and(|l| l >= i) {
            return None;
        }
        last = Some(i);
        *objects.get_mut(i)? += n;
    }
    if objects.iter().sum::<usize>() != total {
        return None;
    }
    Some(
        docs.iter()
            .zip(objects)
            .map(|(d, objects)| DocMark {
                hash: d.hash(text),
                line: d.line,
                objects,
            })
            .collect(),
    )
}

/// The objects of `text`, the new content of a file whose documents were `before` and whose
/// objects were `kept` (in order): the kept objects of every document unchanged in text and
/// lines, parsed objects for the others; `None` when the file must be parsed whole.
pub(crate) fn reparse(
    text: &str,
    file: &Arc<str>,
    before: &[DocMark],
    kept: &[&Arc<Resource>],
) -> Option<(Vec<Arc<Resource>>, DocMarks)> {
    let docs = split(text)?;
    let mut previous: HashMap<(u128, u32), Range<usize>> = HashMap::with_capacity(before.len());
    let mut at = 0;
    for m in before {
        previous.insert((m.hash, m.line), at..at + m.objects);
        at += m.objects;
    }
    if at != kept.len() {
        return None;
    }
    let mut objects = Vec::with_capacity(kept.len());
    let mut marks = Vec::with_capacity(docs.len());
    let mut padded = String::new();
    // Each document parsed alone scans the empty lines standing for those above it: when lines
    // moved, every later document changes, and past a file's worth of those, one whole parse
    // is cheaper (and a file of thousands of documents never costs their square).
    let mut budget = text.len();
    for d in &docs {
        let hash = d.hash(text);
        if let Some(range) = previous.get(&(hash, d.line)) {
            let same = kept.get(range.clone())?;
            objects.extend(same.iter().map(|r| Arc::clone(r)));
            marks.push(DocMark {
                hash,
                line: d.line,
                objects: same.len(),
            });
            continue;
        }
        let above = usize::try_from(d.line - 1).ok()?;
        budget = budget.checked_sub(above)?;
        padded.clear();
        padded.extend(std::iter::repeat_n('\n', above));
        padded.push_str(text.get(d.bytes.clone())?);
        let (parsed, counts) = parse_text_by_document(&padded, Some(Arc::clone(file)));
        if !parsed.diagnostics.is_empty() || counts.len() > 1 {
            return None;
        }
        marks.push(DocMark {
            hash,
            line: d.line,
            objects: parsed.resources.len(),
        });
        objects.extend(crate::cache::adopt_equal(parsed.resources, kept));
    }
    Some((objects, marks.into()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn object(i: usize, weight: u32) -> String {
        format!(
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: vs{i}, namespace: default}}\nspec:\n  hosts: [h{i}.example.com]\n  http:\n  - route:\n    - destination: {{host: a{i}.example.com}}\n      weight: {weight}\n    - destination: {{host: b{i}.example.com}}\n      weight: {}\n",
            100 - weight
        )
    }

    fn file(weights: &[u32]) -> String {
        weights
            .iter()
            .enumerate()
            .map(|(i, w)| object(i, *w))
            .collect::<Vec<_>>()
            .join("---\n")
    }

    /// What a whole parse of `text` gives, and what the document-level one gives after `old`.
    fn both(old: &str, text: &str) -> (Parsed, Option<Vec<Arc<Resource>>>) {
        let name: Arc<str> = Arc::from("f.yaml");
        let (first, marks) = parse_marked(old, Arc::clone(&name));
        let kept: Vec<Arc<Resource>> = first.resources.into_iter().map(Arc::new).collect();
        let kept_refs: Vec<&Arc<Resource>> = kept.iter().collect();
        let whole = sluice_model::parse_text(text, Some(Arc::clone(&name)));
        let by_doc = marks
            .and_then(|m| reparse(text, &name, &m, &kept_refs))
            .map(|(objects, _)| {
                // An unchanged object keeps its `Arc` (when its name tells which one it was).
                for o in &objects {
                    let mut named = kept.iter().filter(|k| k.metadata.name == o.metadata.name);
                    if let (Some(k), None) = (named.next(), named.next()) {
                        if **k == **o {
                            assert!(Arc::ptr_eq(k, o), "{} not kept", o.metadata.name);
                        }
                    }
                }
                objects
            });
        (whole, by_doc)
    }

    fn same(whole: &Parsed, by_doc: &[Arc<Resource>]) {
        assert!(whole.diagnostics.is_empty(), "{:?}", whole.diagnostics);
        assert_eq!(whole.resources.len(), by_doc.len());
        for (w, d) in whole.resources.iter().zip(by_doc) {
            assert_eq!(w, &**d, "{}", w.metadata.name);
        }
    }

    #[test]
    fn an_edited_document_is_parsed_alone_with_the_positions_of_a_whole_parse() {
        let old = file(&[90, 90, 90, 90]);
        let new = file(&[90, 90, 80, 90]);
        let (whole, by_doc) = both(&old, &new);
        same(&whole, &by_doc.expect("reparsed by document"));
    }

    #[test]
    fn documents_after_moved_lines_are_parsed_again_and_still_equal() {
        let old = file(&[90, 90, 90]);
        // A comment line in the first document moves every later one down.
        let new = format!("# moved\n{}", file(&[90, 90, 90]));
        let (whole, by_doc) = both(&old, &new);
        same(&whole, &by_doc.expect("reparsed by document"));
        // Documents added, removed, a leading marker, comment-only and empty documents.
        let cases = [
            (
                file(&[90, 90]),
                format!("{}---\n{}", file(&[90, 90]), object(7, 50)),
            ),
            (file(&[90, 90, 90]), file(&[90, 90])),
            (
                format!("---\n{}", file(&[90])),
                format!("---\n{}", file(&[70])),
            ),
            (
                format!("# header\n---\n{}", file(&[90])),
                format!("# header\n---\n{}", file(&[60])),
            ),
            (
                format!("{}---\n---\n", file(&[90])),
                format!("{}---\n---\n", file(&[95])),
            ),
            (
                format!("{}--- # c\n{}", object(0, 90), object(1, 90)),
                format!("{}--- # c\n{}", object(0, 90), object(1, 10)),
            ),
        ];
        for (old, new) in cases {
            let (whole, by_doc) = both(&old, &new);
            same(
                &whole,
                &by_doc.unwrap_or_else(|| panic!("not reparsed:\n{new}")),
            );
        }
    }

    /// Random edit sequences of a multi-document file: every document-level reparse gives what
    /// a whole parse gives (objects, positions included).
    #[test]
    fn random_edits_reparse_as_a_whole_parse_does() {
        let mut seed: u64 = 0x5eed;
        let mut next = move |n: usize| {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            usize::try_from(seed >> 33).unwrap() % n
        };
        let mut docs: Vec<String> = (0..8).map(|i| object(i, 90)).collect();
        let mut reparsed = 0;
        for step in 0..300 {
            let old = docs.join("---\n");
            let i = next(docs.len());
            match next(6) {
                0 => docs[i] = object(i, u32::try_from(next(100)).unwrap()),
                1 => docs[i] = format!("# note {step}\n{}", docs[i]),
                2 if docs.len() > 1 => {
                    docs.remove(i);
                }
                3 => docs.insert(i, object(100 + step, 50)),
                4 => docs[i] = docs[i].replacen("\nspec:\n", "\nspec:\n  # spec\n", 1),
                _ => docs[i] = docs[i].replace("weight: ", "weight:  "),
            }
            let new = docs.join("---\n");
            let (whole, by_doc) = both(&old, &new);
            // A text with findings is parsed whole, and must be: `by_doc` is then `None`.
            if let Some(by_doc) = by_doc {
                reparsed += 1;
                same(&whole, &by_doc);
            }
            if !whole.diagnostics.is_empty() {
                // Keep editing from text that parses.
                docs = old.split("---\n").map(str::to_string).collect();
            }
        }
        assert!(
            reparsed > 200,
            "only {reparsed} of 300 edits reparsed by document"
        );
    }

    #[test]
    fn lines_moved_above_many_documents_make_a_whole_parse() {
        let weights = [90; 100];
        let old = file(&weights);
        let new = format!("# moved\n{}", file(&weights));
        let (whole, by_doc) = both(&old, &new);
        assert!(by_doc.is_none());
        assert_eq!(whole.resources.len(), 100);
    }

    #[test]
    fn texts_a_document_alone_could_read_differently_are_parsed_whole() {
        let anchored = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: a, namespace: default}\nspec:\n  hosts: &h [a.example.com]\n";
        for text in [
            anchored.to_string(),
            format!("%YAML 1.2\n---\n{}", object(0, 90)),
            format!("{}...\n---\n{}", object(0, 90), object(1, 90)),
            format!("{}---\r\n{}", object(0, 90), object(1, 90)),
        ] {
            assert!(
                parse_marked(&text, Arc::from("f.yaml")).1.is_none(),
                "{text}"
            );
        }
        // A changed document with a finding sends the file to a whole parse.
        let old = file(&[90, 90]);
        let broken = format!("{}---\nkind: [\n", object(0, 90));
        let (first, marks) = parse_marked(&old, Arc::from("f.yaml"));
        let kept: Vec<Arc<Resource>> = first.resources.into_iter().map(Arc::new).collect();
        let refs: Vec<&Arc<Resource>> = kept.iter().collect();
        assert!(reparse(&broken, &Arc::from("f.yaml"), &marks.unwrap(), &refs).is_none());
    }
}
