//! An ordered YAML tree that keeps each scalar's text and style, so edited documents read like the input.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle};

/// How a scalar is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// Unquoted; its type is resolved by the reader.
    Plain,
    /// `'single quoted'`.
    Single,
    /// `"double quoted"`.
    Double,
    /// `|` block.
    Literal,
    /// `>` block.
    Folded,
}

/// A scalar: its text as parsed, the style it was written in, and an explicit tag if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scalar {
    /// The value (after unescaping and folding).
    pub text: String,
    /// How it was written.
    pub style: Style,
    /// An explicit tag such as `!!str`.
    pub tag: Option<String>,
}

impl Scalar {
    /// A string, plain when that reads back as the same string, else double-quoted.
    pub fn string(s: &str) -> Scalar {
        let style = if plain_safe(s) {
            Style::Plain
        } else {
            Style::Double
        };
        Scalar {
            text: s.to_string(),
            style,
            tag: None,
        }
    }

    /// Whether this scalar is YAML's null.
    pub fn is_null(&self) -> bool {
        self.style == Style::Plain
            && self.tag.is_none()
            && matches!(self.text.as_str(), "" | "~" | "null" | "Null" | "NULL")
    }
}

/// A YAML node; mappings keep their key order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// A scalar.
    Scalar(Scalar),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in document order.
    Map(Vec<(Scalar, Node)>),
}

impl Node {
    /// A string node.
    pub fn str(s: &str) -> Node {
        Node::Scalar(Scalar::string(s))
    }

    /// An integer node.
    pub fn int(i: i64) -> Node {
        Node::plain(&i.to_string())
    }

    /// A boolean node.
    pub fn bool(b: bool) -> Node {
        Node::plain(if b { "true" } else { "false" })
    }

    fn plain(text: &str) -> Node {
        Node::Scalar(Scalar {
            text: text.to_string(),
            style: Style::Plain,
            tag: None,
        })
    }

    /// A mapping from string keys.
    pub fn map(entries: Vec<(&str, Node)>) -> Node {
        Node::Map(
            entries
                .into_iter()
                .map(|(k, v)| (Scalar::string(k), v))
                .collect(),
        )
    }

    /// The value under `key` of a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match self {
            Node::Map(entries) => entries.iter().find(|(k, _)| k.text == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The value under `key` of a mapping, mutably.
    pub fn get_mut(&mut self, key: &str) -> Option<&mut Node> {
        match self {
            Node::Map(entries) => entries
                .iter_mut()
                .find(|(k, _)| k.text == key)
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// A scalar's text (`None` for null and for collections).
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Node::Scalar(s) if !s.is_null() => Some(&s.text),
            _ => None,
        }
    }

    /// Whether this is a null scalar.
    pub fn is_null(&self) -> bool {
        matches!(self, Node::Scalar(s) if s.is_null())
    }

    /// Sets `key` of a mapping (replacing in place, else appending); no-op on other nodes.
    pub fn set(&mut self, key: &str, value: Node) {
        if let Node::Map(entries) = self {
            match entries.iter_mut().find(|(k, _)| k.text == key) {
                Some((_, v)) => *v = value,
                None => entries.push((Scalar::string(key), value)),
            }
        }
    }

    /// The mapping under `key`, created (or replacing a null) when absent.
    pub fn map_at(&mut self, key: &str) -> Option<&mut Node> {
        let missing = self.get(key).is_none_or(Node::is_null);
        if missing {
            self.set(key, Node::Map(Vec::new()));
        }
        self.get_mut(key).filter(|n| matches!(n, Node::Map(_)))
    }

    /// The sequence under `key`, created (or replacing a null) when absent.
    pub fn seq_at(&mut self, key: &str) -> Option<&mut Vec<Node>> {
        let missing = self.get(key).is_none_or(Node::is_null);
        if missing {
            self.set(key, Node::Seq(Vec::new()));
        }
        match self.get_mut(key) {
            Some(Node::Seq(items)) => Some(items),
            _ => None,
        }
    }
}

/// Whether `s` can be written unquoted and read back as the same string (conservatively).
pub fn plain_safe(s: &str) -> bool {
    let mut bytes = s.bytes();
    let Some(first) = bytes.next() else {
        return false;
    };
    let second = bytes.next();
    // `-` starts a plain scalar unless a blank (a list item) or a digit (a number) follows.
    let dash_ok = first == b'-' && second.is_some_and(|b| b == b'-' || b.is_ascii_alphabetic());
    if !(first.is_ascii_alphabetic() || matches!(first, b'/' | b'$' | b'_') || dash_ok) {
        return false;
    }
    if s.ends_with(':')
        || !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=$():@+".contains(&b))
    {
        return false;
    }
    // YAML 1.1 readers (Kubernetes' among them) take these as booleans or null.
    let lower = s.to_ascii_lowercase();
    !matches!(
        lower.as_str(),
        "y" | "n" | "yes" | "no" | "on" | "off" | "true" | "false" | "null"
    )
}

/// Parses every document of a YAML stream (`None` for an empty document).
pub fn parse(text: &str) -> Result<Vec<Option<Node>>, String> {
    let mut b = Builder::default();
    for item in Parser::new_from_str(text) {
        let (event, span) = item.map_err(|e| {
            let m = e.marker();
            format!("line {}:{}: {}", m.line(), m.col() + 1, e.info())
        })?;
        b.event(event)
            .map_err(|msg| format!("line {}: {msg}", span.start.line()))?;
    }
    Ok(b.docs)
}

enum Frame {
    Seq(Vec<Node>, usize),
    Map(Vec<(Scalar, Node)>, usize, Option<Scalar>),
}

#[derive(Default)]
struct Builder {
    docs: Vec<Option<Node>>,
    stack: Vec<Frame>,
    anchors: HashMap<usize, Node>,
    root: Option<Node>,
}

impl Builder {
    fn event(&mut self, event: Event<'_>) -> Result<(), String> {
        match event {
            Event::DocumentStart(_) => {
                self.anchors.clear();
                self.root = None;
            }
            Event::DocumentEnd => {
                let doc = self.root.take().filter(|n| !n.is_null());
                self.docs.push(doc);
            }
            Event::Scalar(text, style, anchor, tag) => {
                let scalar = Scalar {
                    text: text.into_owned(),
                    style: match style {
                        ScalarStyle::Plain => Style::Plain,
                        ScalarStyle::SingleQuoted => Style::Single,
                        ScalarStyle::DoubleQuoted => Style::Double,
                        ScalarStyle::Literal => Style::Literal,
                        ScalarStyle::Folded => Style::Folded,
                    },
                    tag: tag.map(|t| {
                        let handle = if t.handle == "tag:yaml.org,2002:" {
                            "!!"
                        } else {
                            t.handle.as_str()
                        };
                        format!("{handle}{}", t.suffix)
                    }),
                };
                if self.expects_key() {
                    self.set_key(scalar)?;
                } else {
                    self.push(Node::Scalar(scalar), anchor);
                }
            }
            Event::Alias(id) => {
                let node = self
                    .anchors
                    .get(&id)
                    .cloned()
                    .ok_or_else(|| format!("unknown alias {id}"))?;
                if self.expects_key() {
                    match node {
                        Node::Scalar(s) => self.set_key(s)?,
                        _ => return Err("complex mapping keys are not supported".into()),
                    }
                } else {
                    self.push(node, 0);
                }
            }
            Event::SequenceStart(anchor, _) => {
                self.no_complex_key()?;
                self.stack.push(Frame::Seq(Vec::new(), anchor));
            }
            Event::MappingStart(anchor, _) => {
                self.no_complex_key()?;
                self.stack.push(Frame::Map(Vec::new(), anchor, None));
            }
            Event::SequenceEnd => {
                if let Some(Frame::Seq(items, anchor)) = self.stack.pop() {
                    self.push(Node::Seq(items), anchor);
                }
            }
            Event::MappingEnd => {
                if let Some(Frame::Map(entries, anchor, _)) = self.stack.pop() {
                    self.push(Node::Map(entries), anchor);
                }
            }
            Event::StreamStart | Event::StreamEnd | Event::Nothing => {}
        }
        Ok(())
    }

    fn expects_key(&self) -> bool {
        matches!(self.stack.last(), Some(Frame::Map(_, _, None)))
    }

    fn no_complex_key(&self) -> Result<(), String> {
        if self.expects_key() {
            return Err("complex mapping keys are not supported".into());
        }
        Ok(())
    }

    fn set_key(&mut self, key: Scalar) -> Result<(), String> {
        if let Some(Frame::Map(entries, _, pending)) = self.stack.last_mut() {
            if entries.iter().any(|(k, _)| k.text == key.text) {
                return Err(format!("duplicate key `{}`", key.text));
            }
            *pending = Some(key);
        }
        Ok(())
    }

    fn push(&mut self, node: Node, anchor: usize) {
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Frame::Seq(items, _)) => items.push(node),
            Some(Frame::Map(entries, _, pending)) => {
                if let Some(k) = pending.take() {
                    entries.push((k, node));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_order_styles_and_documents() {
        let docs = parse("b: 1\na: 'x'\nc: [\"y\", z]\n---\n---\nk: |\n  line\n").unwrap();
        assert_eq!(docs.len(), 3);
        let d = docs[0].as_ref().unwrap();
        let Node::Map(entries) = d else { panic!() };
        let keys: Vec<&str> = entries.iter().map(|(k, _)| k.text.as_str()).collect();
        assert_eq!(keys, ["b", "a", "c"]);
        assert!(matches!(d.get("a"), Some(Node::Scalar(s)) if s.style == Style::Single));
        assert!(docs[1].is_none());
        assert_eq!(
            docs[2]
                .as_ref()
                .and_then(|d| d.get("k"))
                .and_then(Node::as_str),
            Some("line\n")
        );
    }

    #[test]
    fn plain_safety() {
        assert!(plain_safe("sluice-proxy"));
        assert!(plain_safe("$(POD_NAMESPACE)"));
        assert!(plain_safe("/etc/sluice/podinfo"));
        assert!(!plain_safe("15006"));
        assert!(!plain_safe("on"));
        assert!(!plain_safe("a b"));
        assert!(!plain_safe(""));
        assert!(!plain_safe("*"));
        assert!(plain_safe("--kubernetes"));
        assert!(!plain_safe("-1"));
        assert!(!plain_safe("- x"));
        assert!(!plain_safe("-"));
    }

    #[test]
    fn errors_and_helpers() {
        assert!(parse("a: 1\na: 2\n").is_err());
        assert!(parse("a: [1\n").is_err());
        let mut n = Node::map(vec![("x", Node::str("~"))]);
        assert!(n.seq_at("list").is_some());
        assert!(n.map_at("x").is_none(), "a string is not replaced");
        assert_eq!(n.get("x").and_then(Node::as_str), Some("~"));
    }
}
