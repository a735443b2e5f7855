//! YAML (and JSON) text → `serde_json::Value` documents, remembering where every node came from.
//!
//! Serde-based YAML crates lose positions once a value is typed; diagnostics need `file:line:col`
//! for any field path, so the event stream is folded into a value tree and a [`SpanMap`] here.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle, ScanError, Span};
use serde_json::{Map, Number, Value};

use crate::diagnostic::Location;
use crate::location::{push_index, push_key, SpanMap};

/// One YAML document with the positions of its nodes.
#[derive(Debug, Clone)]
pub struct Document {
    /// The document's content (null keys/values in mappings are dropped, as Kubernetes does).
    pub value: Value,
    /// Positions by field path.
    pub spans: SpanMap,
    /// 0-based index of the document in its file.
    pub index: usize,
}

/// A YAML syntax error with its position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SyntaxError {
    /// What the parser said.
    pub message: String,
    /// Where.
    pub location: Location,
}

/// Parses every document of a YAML stream (JSON is accepted as a YAML subset).
pub fn parse_documents(text: &str) -> Result<Vec<Document>, SyntaxError> {
    let mut builder = Builder::default();
    for item in Parser::new_from_str(text) {
        let (event, span) = item.map_err(syntax_error)?;
        builder.event(event, span)?;
    }
    Ok(builder.docs)
}

fn syntax_error(e: ScanError) -> SyntaxError {
    let m = e.marker();
    SyntaxError {
        message: e.info().to_string(),
        location: Location {
            line: m.line() as u32,
            column: m.col() as u32 + 1,
        },
    }
}

fn loc(span: Span) -> Location {
    Location {
        line: span.start.line() as u32,
        column: span.start.col() as u32 + 1,
    }
}

enum Frame {
    Seq {
        items: Vec<Value>,
        anchor: usize,
        path: String,
    },
    Map {
        map: Map<String, Value>,
        anchor: usize,
        path: String,
        pending_key: Option<String>,
    },
}

#[derive(Default)]
struct Builder {
    docs: Vec<Document>,
    stack: Vec<Frame>,
    spans: SpanMap,
    anchors: HashMap<usize, Value>,
    root: Option<Value>,
}

impl Builder {
    /// The path the next node will have, or `None` when the next scalar is a mapping key.
    fn next_path(&self) -> Option<String> {
        match self.stack.last() {
            None => Some(String::new()),
            Some(Frame::Seq { items, path, .. }) => Some(push_index(path, items.len())),
            Some(Frame::Map {
                path, pending_key, ..
            }) => pending_key.as_ref().map(|k| push_key(path, k)),
        }
    }

    fn event(&mut self, event: Event<'_>, span: Span) -> Result<(), SyntaxError> {
        match event {
            Event::DocumentStart(_) => {
                self.spans = SpanMap::default();
                self.anchors.clear();
                self.root = None;
            }
            Event::DocumentEnd => {
                let value = self.root.take().unwrap_or(Value::Null);
                let index = self.docs.len();
                self.docs.push(Document {
                    value,
                    spans: std::mem::take(&mut self.spans),
                    index,
                });
            }
            Event::Scalar(text, style, anchor, tag) => match self.next_path() {
                Some(path) => {
                    self.spans.insert(path, loc(span));
                    let forced_str = tag.as_ref().is_some_and(|t| t.suffix == "str");
                    let v = if style == ScalarStyle::Plain && !forced_str {
                        resolve_plain(&text)
                    } else {
                        Value::String(text.into_owned())
                    };
                    self.push_value(v, anchor);
                }
                None => self.set_key(text.into_owned(), span)?,
            },
            Event::Alias(id) => {
                let v = self.anchors.get(&id).cloned().ok_or_else(|| SyntaxError {
                    message: format!("unknown alias {id}"),
                    location: loc(span),
                })?;
                match self.next_path() {
                    Some(path) => {
                        self.spans.insert(path, loc(span));
                        self.push_value(v, 0);
                    }
                    None => self.set_key(scalar_key(&v), span)?,
                }
            }
            Event::SequenceStart(anchor, _) => {
                let path = self.container_path(span)?;
                self.stack.push(Frame::Seq {
                    items: Vec::new(),
                    anchor,
                    path,
                });
            }
            Event::MappingStart(anchor, _) => {
                let path = self.container_path(span)?;
                self.stack.push(Frame::Map {
                    map: Map::new(),
                    anchor,
                    path,
                    pending_key: None,
                });
            }
            Event::SequenceEnd => {
                if let Some(Frame::Seq { items, anchor, .. }) = self.stack.pop() {
                    self.push_value(Value::Array(items), anchor);
                }
            }
            Event::MappingEnd => {
                if let Some(Frame::Map { map, anchor, .. }) = self.stack.pop() {
                    self.push_value(Value::Object(map), anchor);
                }
            }
            Event::StreamStart | Event::StreamEnd | Event::Nothing => {}
        }
        Ok(())
    }

    fn container_path(&mut self, span: Span) -> Result<String, SyntaxError> {
        let path = self.next_path().ok_or_else(|| SyntaxError {
            message: "complex mapping keys are not supported".into(),
            location: loc(span),
        })?;
        self.spans.insert(path.clone(), loc(span));
        Ok(path)
    }

    fn set_key(&mut self, key: String, span: Span) -> Result<(), SyntaxError> {
        if let Some(Frame::Map {
            map,
            path,
            pending_key,
            ..
        }) = self.stack.last_mut()
        {
            if map.contains_key(&key) {
                return Err(SyntaxError {
                    message: format!("duplicate key `{key}` in mapping `{path}`"),
                    location: loc(span),
                });
            }
            // Diagnostics point at the key, which is where a reader looks for a field.
            self.spans.insert(push_key(path, &key), loc(span));
            *pending_key = Some(key);
        }
        Ok(())
    }

    fn push_value(&mut self, v: Value, anchor: usize) {
        if anchor != 0 {
            self.anchors.insert(anchor, v.clone());
        }
        match self.stack.last_mut() {
            None => self.root = Some(v),
            Some(Frame::Seq { items, .. }) => items.push(v),
            Some(Frame::Map {
                map, pending_key, ..
            }) => {
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

fn scalar_key(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
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

    #[test]
    fn syntax_and_duplicate_key_errors_have_positions() {
        let e = parse_documents("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(e.location.line >= 1);
        let e = parse_documents("a: 1\na: 2\n").unwrap_err();
        assert_eq!(e.location.line, 2);
        assert!(e.message.contains("duplicate key"));
    }
}
