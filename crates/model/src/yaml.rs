//! YAML (and JSON) text → `serde_json::Value` documents, remembering where every node came from.
//!
//! Serde-based YAML crates lose positions once a value is typed; diagnostics need `file:line:col`
//! for any field path, so the event stream is folded into a value tree and a [`SpanMap`] here.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle, ScanError, Span};
use serde_json::{Map, Number, Value};

use crate::diagnostic::Location;
use crate::limits::{scalar_cost, MAX_ALIAS_EXPANSION, MAX_DEPTH, MAX_DOCUMENTS, MAX_FILE_BYTES};
use crate::location::{append_index, append_key, path_hash, SpanMap, NO_ITEM};

/// One YAML document with the positions of its nodes.
#[derive(Debug, Clone)]
pub struct Document {
    /// The document's content (null keys/values in mappings are dropped, as Kubernetes does).
    pub value: Value,
    /// Positions by field path.
    pub spans: SpanMap,
    /// 0-based index of the document in its file.
    pub index: usize,
    /// The 1-based line where the document starts (its `---`, else its first node).
    pub line: u32,
}

/// A YAML syntax error with its position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SyntaxError {
    /// What the parser said.
    pub message: String,
    /// Where.
    pub location: Location,
    /// Whether the text is malformed or went over one of the loader's [limits](crate::limits).
    pub kind: SyntaxErrorKind,
}

/// Why a YAML stream was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyntaxErrorKind {
    /// The text is not valid YAML (or uses what sluice does not read, like complex keys).
    Malformed,
    /// The text is valid but exceeds a cap on size, documents, depth or alias expansion.
    LimitExceeded,
}

impl SyntaxError {
    fn limit(message: String, location: Location) -> Self {
        SyntaxError {
            message,
            location,
            kind: SyntaxErrorKind::LimitExceeded,
        }
    }

    fn malformed(message: String, location: Location) -> Self {
        SyntaxError {
            message,
            location,
            kind: SyntaxErrorKind::Malformed,
        }
    }
}

/// Parses every document of a YAML stream (JSON is accepted as a YAML subset), within the
/// [limits](crate::limits) on size, documents, depth and alias expansion.
pub fn parse_documents(text: &str) -> Result<Vec<Document>, SyntaxError> {
    if text.len() > MAX_FILE_BYTES {
        return Err(SyntaxError::limit(
            format!(
                "the file is {} bytes, over the {MAX_FILE_BYTES}-byte limit on config files",
                text.len()
            ),
            Location { line: 1, column: 1 },
        ));
    }
    let mut builder = Builder::default();
    for item in Parser::new_from_str(text) {
        let (event, span) = item.map_err(syntax_error)?;
        builder.event(event, span)?;
    }
    Ok(builder.docs)
}

fn syntax_error(e: ScanError) -> SyntaxError {
    let m = e.marker();
    SyntaxError::malformed(
        e.info().to_string(),
        Location {
            line: m.line() as u32,
            column: m.col() as u32 + 1,
        },
    )
}

fn loc(span: Span) -> Location {
    Location {
        line: span.start.line() as u32,
        column: span.start.col() as u32 + 1,
    }
}

/// A container being built, with its size in alias-budget nodes (what copying it would cost).
enum Frame {
    Seq {
        items: Vec<Value>,
        anchor: usize,
        /// The length of its path in [`Builder::path`].
        path_len: usize,
        cost: usize,
    },
    Map {
        map: Map<String, Value>,
        anchor: usize,
        /// The length of its path in [`Builder::path`].
        path_len: usize,
        pending_key: Option<String>,
        cost: usize,
    },
}

#[derive(Default)]
struct Builder {
    docs: Vec<Document>,
    stack: Vec<Frame>,
    /// The path of the node at hand: each open container's path is a prefix of it, so every
    /// node's path is hashed here rather than made a string of its own.
    path: String,
    /// This document's positions by path hash, in the order met, with the top-level `items[N]`
    /// each lies under (see [`item_of`]).
    recorded: Vec<(u64, Location, u32)>,
    /// Anchored values with their cost, so that an alias is charged before it is copied.
    anchors: HashMap<usize, (Value, usize)>,
    root: Option<Value>,
    /// Nodes added by aliases so far in this stream (all documents).
    expanded: usize,
    /// Where the current document started.
    doc_line: u32,
}

impl Builder {
    /// Puts the next node's path in [`Builder::path`]. `None` when the next scalar is a mapping
    /// key; else whether the node's position is still to be recorded (a mapping value's was,
    /// at its key, which is where a reader looks for a field).
    fn next_path(&mut self) -> Option<bool> {
        match self.stack.last() {
            None => {
                self.path.clear();
                Some(true)
            }
            Some(Frame::Seq {
                items, path_len, ..
            }) => {
                self.path.truncate(*path_len);
                append_index(&mut self.path, items.len());
                Some(true)
            }
            Some(Frame::Map {
                path_len,
                pending_key,
                ..
            }) => {
                let key = pending_key.as_ref()?;
                self.path.truncate(*path_len);
                append_key(&mut self.path, key);
                Some(false)
            }
        }
    }

    /// Records the position of the node at [`Builder::path`].
    fn record(&mut self, location: Location) {
        let item = item_of(&self.stack);
        self.recorded.push((path_hash(&self.path), location, item));
    }

    fn event(&mut self, event: Event<'_>, span: Span) -> Result<(), SyntaxError> {
        match event {
            Event::DocumentStart(_) => {
                if self.docs.len() >= MAX_DOCUMENTS {
                    return Err(SyntaxError::limit(
                        format!("more than {MAX_DOCUMENTS} documents in one file"),
                        loc(span),
                    ));
                }
                self.recorded.clear();
                self.path.clear();
                self.anchors.clear();
                self.root = None;
                self.doc_line = loc(span).line;
            }
            Event::DocumentEnd => {
                let value = self.root.take().unwrap_or(Value::Null);
                let index = self.docs.len();
                self.docs.push(Document {
                    value,
                    spans: SpanMap::from_recorded(std::mem::take(&mut self.recorded)),
                    index,
                    line: self.doc_line,
                });
            }
            Event::Scalar(text, style, anchor, tag) => match self.next_path() {
                Some(record) => {
                    if record {
                        self.record(loc(span));
                    }
                    let forced_str = tag.as_ref().is_some_and(|t| t.suffix == "str");
                    let cost = scalar_cost(text.len());
                    let v = if style == ScalarStyle::Plain && !forced_str {
                        resolve_plain(&text)
                    } else {
                        Value::String(exact(text))
                    };
                    self.push_value(v, cost, anchor);
                }
                None => self.set_key(exact(text), span)?,
            },
            Event::Alias(id) => {
                let cost = self.anchors.get(&id).map(|(_, c)| *c).ok_or_else(|| {
                    SyntaxError::malformed(format!("unknown alias {id}"), loc(span))
                })?;
                self.charge_alias(cost, span)?;
                let v = self
                    .anchors
                    .get(&id)
                    .map_or(Value::Null, |(v, _)| v.clone());
                match self.next_path() {
                    Some(record) => {
                        if record {
                            self.record(loc(span));
                        }
                        self.push_value(v, cost, 0);
                    }
                    None => self.set_key(scalar_key(&v), span)?,
                }
            }
            Event::SequenceStart(anchor, _) => {
                let path_len = self.container_path(span)?;
                self.stack.push(Frame::Seq {
                    items: Vec::new(),
                    anchor,
                    path_len,
                    cost: 1,
                });
            }
            Event::MappingStart(anchor, _) => {
                let path_len = self.container_path(span)?;
                self.stack.push(Frame::Map {
                    map: Map::new(),
                    anchor,
                    path_len,
                    pending_key: None,
                    cost: 1,
                });
            }
            Event::SequenceEnd => {
                if let Some(Frame::Seq {
                    items,
                    anchor,
                    cost,
                    ..
                }) = self.stack.pop()
                {
                    self.push_value(Value::Array(items), cost, anchor);
                }
            }
            Event::MappingEnd => {
                if let Some(Frame::Map {
                    map, anchor, cost, ..
                }) = self.stack.pop()
                {
                    self.push_value(Value::Object(map), cost, anchor);
                }
            }
            Event::StreamStart | Event::StreamEnd | Event::Nothing => {}
        }
        Ok(())
    }

    /// Counts an alias's copy against the stream's budget before anything is copied.
    fn charge_alias(&mut self, cost: usize, span: Span) -> Result<(), SyntaxError> {
        self.expanded = self.expanded.saturating_add(cost);
        if self.expanded > MAX_ALIAS_EXPANSION {
            return Err(SyntaxError::limit(
                format!("YAML aliases expand to more than {MAX_ALIAS_EXPANSION} nodes in this file (nested anchors that multiply, like an alias bomb?)"),
                loc(span),
            ));
        }
        Ok(())
    }

    /// Puts a container's path in [`Builder::path`] and returns its length.
    fn container_path(&mut self, span: Span) -> Result<usize, SyntaxError> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(SyntaxError::limit(
                format!("mappings and sequences nest deeper than {MAX_DEPTH} levels"),
                loc(span),
            ));
        }
        let record = self.next_path().ok_or_else(|| {
            SyntaxError::malformed("complex mapping keys are not supported".into(), loc(span))
        })?;
        if record {
            self.record(loc(span));
        }
        Ok(self.path.len())
    }

    fn set_key(&mut self, key: String, span: Span) -> Result<(), SyntaxError> {
        let item = item_of(&self.stack);
        if let Some(Frame::Map {
            map,
            path_len,
            pending_key,
            cost,
            ..
        }) = self.stack.last_mut()
        {
            self.path.truncate(*path_len);
            if map.contains_key(&key) {
                let message = if self.path.is_empty() {
                    format!("duplicate key `{key}` at the top of the document")
                } else {
                    format!("duplicate key `{key}` in mapping `{}`", self.path)
                };
                return Err(SyntaxError::malformed(message, loc(span)));
            }
            // Diagnostics point at the key, which is where a reader looks for a field.
            append_key(&mut self.path, &key);
            self.recorded.push((path_hash(&self.path), loc(span), item));
            *cost = cost.saturating_add(scalar_cost(key.len()));
            *pending_key = Some(key);
        }
        Ok(())
    }

    fn push_value(&mut self, v: Value, value_cost: usize, anchor: usize) {
        if anchor != 0 {
            self.anchors.insert(anchor, (v.clone(), value_cost));
        }
        match self.stack.last_mut() {
            None => self.root = Some(v),
            Some(Frame::Seq { items, cost, .. }) => {
                *cost = cost.saturating_add(value_cost);
                items.push(v);
            }
            Some(Frame::Map {
                map,
                pending_key,
                cost,
                ..
            }) => {
                *cost = cost.saturating_add(value_cost);
                if let Some(k) = pending_key.take() {
                    // `key:` with no value means "unset", as in Kubernetes; keeping nulls would
                    // make every optional list field a type error.
                    if !v.is_null() {
                        map.insert(k, v);
                    }
                }
            }
        }
    }
}

/// The `N` of `items[N]` when the node at hand lies under an item of a top-level `items`
/// sequence (a `kind: List`'s, whose items are objects of their own), else [`NO_ITEM`].
fn item_of(stack: &[Frame]) -> u32 {
    match stack {
        [Frame::Map {
            pending_key: Some(key),
            ..
        }, Frame::Seq { items, .. }, ..]
            if key == "items" =>
        {
            u32::try_from(items.len()).unwrap_or(NO_ITEM)
        }
        _ => NO_ITEM,
    }
}

fn scalar_key(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A scalar's text without the scanner's spare capacity: map keys and strings end up in the
/// parsed objects, kept as long as the config (a label key took 129 bytes for 7 characters).
fn exact(text: std::borrow::Cow<'_, str>) -> String {
    let mut s = text.into_owned();
    s.shrink_to_fit();
    s
}

/// YAML 1.2 core-schema resolution of a plain scalar.
fn resolve_plain(s: &str) -> Value {
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        _ => {}
    }
    if let Some(n) = parse_int(s) {
        return Value::Number(n);
    }
    let looks_float = s
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'))
        && s.bytes().any(|b| b.is_ascii_digit());
    if looks_float {
        if let Some(n) = s.parse::<f64>().ok().and_then(Number::from_f64) {
            return Value::Number(n);
        }
    }
    Value::String(s.to_string())
}

fn parse_int(s: &str) -> Option<Number> {
    let (neg, digits) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let magnitude = if let Some(h) = digits.strip_prefix("0x") {
        i128::from_str_radix(h, 16).ok()?
    } else if let Some(o) = digits.strip_prefix("0o") {
        i128::from_str_radix(o, 8).ok()?
    } else if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        digits.parse::<i128>().ok()?
    } else {
        return None;
    };
    let v = if neg { -magnitude } else { magnitude };
    if let Ok(i) = i64::try_from(v) {
        Some(Number::from(i))
    } else {
        u64::try_from(v).ok().map(Number::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn multi_document_with_positions() {
        let text = "a: 1\nb:\n  - x: \"80\"\n    y: true\n---\nkind: List\n";
        let docs = parse_documents(text).unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(
            docs[0].value,
            json!({"a": 1, "b": [{"x": "80", "y": true}]})
        );
        let l = docs[0].spans.locate("b[0].y").unwrap();
        assert_eq!((l.line, l.column), (4, 5));
        assert_eq!(docs[1].value, json!({"kind": "List"}));
    }

    #[test]
    fn scalars_resolve_like_yaml_core_schema() {
        let docs = parse_documents("a: 1.5\nb: 0x10\nc: ~\nd: '1'\ne: 1.2.3\nf: -3\ng: !!str 5\n")
            .unwrap();
        assert_eq!(
            docs[0].value,
            json!({"a": 1.5, "b": 16, "d": "1", "e": "1.2.3", "f": -3, "g": "5"})
        );
    }

    #[test]
    fn anchors_and_json() {
        let docs = parse_documents("a: &x {k: v}\nb: *x\n").unwrap();
        assert_eq!(docs[0].value, json!({"a": {"k": "v"}, "b": {"k": "v"}}));
        let docs = parse_documents("{\"a\": [1, 2], \"b\": {\"c\": null}}").unwrap();
        assert_eq!(docs[0].value, json!({"a": [1, 2], "b": {}}));
    }

    /// Nine levels of ten aliases: 10⁹ strings once expanded, from 449 bytes.
    fn alias_bomb() -> String {
        let mut text = String::from("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: lol}\ndata:\n  a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n");
        for (prev, name) in "abcdefgh".chars().zip("bcdefghi".chars()) {
            let aliases = vec![format!("*{prev}"); 10].join(",");
            text.push_str(&format!("  {name}: &{name} [{aliases}]\n"));
        }
        text
    }

    #[test]
    fn an_alias_bomb_is_refused_at_the_alias_that_crosses_the_budget() {
        let e = parse_documents(&alias_bomb()).unwrap_err();
        assert_eq!(e.kind, SyntaxErrorKind::LimitExceeded);
        // Levels a..e add 123,440 nodes; the eighth `*e` of line 10 (level f) crosses 10⁶.
        assert_eq!(e.location.line, 10, "{e:?}");
        assert!(e.message.contains("aliases expand"), "{}", e.message);
    }

    #[test]
    fn aliases_within_the_budget_still_expand() {
        // A shared retry policy reused by many routes is what anchors are for.
        let mut text = String::from("shared: &retry {attempts: 3, perTryTimeout: 2s}\nroutes:\n");
        for _ in 0..1000 {
            text.push_str("- retries: *retry\n");
        }
        let docs = parse_documents(&text).unwrap();
        assert_eq!(docs[0].value["routes"][999]["retries"]["attempts"], 3);
    }

    #[test]
    fn long_strings_count_against_the_alias_budget() {
        let long = "x".repeat(64 * 1024);
        let aliases = vec!["*s"; 600].join(",");
        let text = format!("s: &s \"{long}\"\ncopies: [{aliases}]\n");
        let e = parse_documents(&text).unwrap_err();
        assert_eq!(e.kind, SyntaxErrorKind::LimitExceeded);
        assert_eq!(e.location.line, 2);
    }

    #[test]
    fn nesting_documents_and_size_are_capped() {
        let deep = format!("{}1{}", "[".repeat(100), "]".repeat(100));
        assert!(parse_documents(&deep).is_ok());
        let deeper = "- ".repeat(MAX_DEPTH + 1) + "x\n";
        let e = parse_documents(&deeper).unwrap_err();
        assert_eq!(e.kind, SyntaxErrorKind::LimitExceeded);
        assert!(e.message.contains("nest deeper"), "{}", e.message);

        let many = "---\na: 1\n".repeat(MAX_DOCUMENTS + 1);
        let e = parse_documents(&many).unwrap_err();
        assert_eq!(e.kind, SyntaxErrorKind::LimitExceeded);
        assert_eq!(e.location.line, 2 * MAX_DOCUMENTS as u32 + 1);

        let big = format!("a: \"{}\"\n", "x".repeat(MAX_FILE_BYTES));
        let e = parse_documents(&big).unwrap_err();
        assert_eq!(e.kind, SyntaxErrorKind::LimitExceeded);
    }

    #[test]
    fn syntax_and_duplicate_key_errors_have_positions() {
        let e = parse_documents("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(e.location.line >= 1);
        let e = parse_documents("a: 1\na: 2\n").unwrap_err();
        assert_eq!(e.location.line, 2);
        assert!(e.message.contains("duplicate key"));
    }
}
