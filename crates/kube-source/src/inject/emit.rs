//! Block-style YAML output of a [`Node`] tree, in kubectl's layout (sequences not indented under keys).

use super::node::{Node, Scalar, Style};

/// Writes one document (without a `---` marker).
pub fn emit(node: &Node) -> String {
    let mut out = String::new();
    match node {
        Node::Map(entries) if !entries.is_empty() => map(&mut out, 0, entries),
        Node::Seq(items) if !items.is_empty() => seq(&mut out, 0, items),
        other => {
            out.push_str(&inline(other, 0));
            out.push('\n');
        }
    }
    out
}

fn pad(out: &mut String, indent: usize) {
    out.extend(std::iter::repeat_n(' ', indent));
}

fn map(out: &mut String, indent: usize, entries: &[(Scalar, Node)]) {
    for (k, v) in entries {
        pad(out, indent);
        out.push_str(&key(k));
        out.push(':');
        match v {
            Node::Map(e) if !e.is_empty() => {
                out.push('\n');
                map(out, indent + 2, e);
            }
            Node::Seq(items) if !items.is_empty() => {
                out.push('\n');
                seq(out, indent, items);
            }
            other => {
                let text = inline(other, indent + 2);
                if !text.is_empty() {
                    out.push(' ');
                    out.push_str(&text);
                }
                out.push('\n');
            }
        }
    }
}

fn seq(out: &mut String, indent: usize, items: &[Node]) {
    for item in items {
        match item {
            Node::Map(e) if !e.is_empty() => {
                let mut inner = String::new();
                map(&mut inner, indent + 2, e);
                dash_first_line(out, indent, &inner);
            }
            Node::Seq(s) if !s.is_empty() => {
                let mut inner = String::new();
                seq(&mut inner, indent + 2, s);
                dash_first_line(out, indent, &inner);
            }
            other => {
                pad(out, indent);
                out.push('-');
                let text = inline(other, indent + 2);
                if !text.is_empty() {
                    out.push(' ');
                    out.push_str(&text);
                }
                out.push('\n');
            }
        }
    }
}

/// Replaces the indentation of the first line of `inner` (rendered at `indent + 2`) with `- `.
fn dash_first_line(out: &mut String, indent: usize, inner: &str) {
    pad(out, indent);
    out.push_str("- ");
    out.push_str(inner.get(indent + 2..).unwrap_or(inner));
}

/// A scalar or empty collection on the current line; block scalars continue at `indent`.
fn inline(node: &Node, indent: usize) -> String {
    match node {
        Node::Map(_) => "{}".into(),
        Node::Seq(_) => "[]".into(),
        Node::Scalar(s) => {
            let body = scalar(s, indent);
            match &s.tag {
                Some(t) => format!("{t} {body}"),
                None => body,
            }
        }
    }
}

fn key(k: &Scalar) -> String {
    let plain = k.style == Style::Plain && !k.text.is_empty() && !k.text.contains('\n');
    if plain {
        k.text.clone()
    } else {
        double(&k.text)
    }
}

fn scalar(s: &Scalar, indent: usize) -> String {
    let multiline = s.text.contains('\n');
    match s.style {
        Style::Plain if !multiline => s.text.clone(),
        Style::Single if !multiline => format!("'{}'", s.text.replace('\'', "''")),
        _ if multiline && literal_ok(&s.text) => literal(&s.text, indent),
        _ => double(&s.text),
    }
}

fn double(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| format!("\"{}\"", text.escape_default()))
}

/// A literal block reads back exactly when its first line has no leading blank and no
/// character needs escaping.
fn literal_ok(text: &str) -> bool {
    let first = text.split('\n').next().unwrap_or("");
    !first.is_empty()
        && !first.starts_with([' ', '\t'])
        && !text
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\t')
}

fn literal(text: &str, indent: usize) -> String {
    let chomp = if !text.ends_with('\n') {
        "-"
    } else if text.ends_with("\n\n") {
        "+"
    } else {
        ""
    };
    let body = text.strip_suffix('\n').unwrap_or(text);
    let mut out = format!("|{chomp}");
    for line in body.split('\n') {
        out.push('\n');
        if !line.is_empty() {
            out.extend(std::iter::repeat_n(' ', indent));
            out.push_str(line);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::node::parse;
    use super::*;

    fn roundtrip(text: &str) -> String {
        let docs = parse(text).unwrap();
        emit(docs[0].as_ref().unwrap())
    }

    #[test]
    fn kubectl_layout() {
        let text = "a:\n  b: 1\n  c:\n  - x: 1\n    y: 'q''s'\n  - - n\n  - plain\n  e: {}\n  f: []\nz: \"15\"\n";
        assert_eq!(roundtrip(text), text);
    }

    #[test]
    fn flow_and_quoted_become_block() {
        let out = roundtrip("cmd: [\"/bin/sleep\", infinity]\nm: {k: v}\nn:\n");
        assert_eq!(out, "cmd:\n- \"/bin/sleep\"\n- infinity\nm:\n  k: v\nn:\n");
    }

    #[test]
    fn multiline_strings_read_back() {
        for text in ["a\nb\n", "a\nb", "a\n\nb\n\n", " lead\nx", "tab\x07\n"] {
            let node = Node::map(vec![(
                "k",
                Node::Scalar(Scalar {
                    text: text.into(),
                    style: Style::Double,
                    tag: None,
                }),
            )]);
            let out = emit(&Node::Seq(vec![node]));
            let back = parse(&out).unwrap();
            let Some(Node::Seq(items)) = &back[0] else {
                panic!("{out}")
            };
            assert_eq!(
                items[0].get("k").and_then(Node::as_str),
                Some(text),
                "{out}"
            );
        }
    }

    #[test]
    fn tags_are_kept() {
        assert_eq!(roundtrip("a: !!str 5\n"), "a: !!str 5\n");
    }
}
