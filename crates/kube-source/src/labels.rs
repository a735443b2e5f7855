//! The pod's labels from a downward-API file (`key="value"` lines, values quoted as Go's `%q`).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context as _;

/// Reads a downward-API labels file.
pub fn read_labels_file(path: &Path) -> anyhow::Result<BTreeMap<String, String>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    parse_labels(&text).with_context(|| format!("invalid labels file {}", path.display()))
}

/// Parses `key="value"` lines.
pub fn parse_labels(text: &str) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .with_context(|| format!("line {}: expected key=\"value\"", i + 1))?;
        let value = match v.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
            Some(quoted) => unquote(quoted).with_context(|| format!("line {}", i + 1))?,
            None => v.to_string(),
        };
        out.insert(k.trim().to_string(), value);
    }
    Ok(out)
}

/// Undoes Go's `strconv.Quote` escaping.
fn unquote(s: &str) -> anyhow::Result<String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let e = chars.next().context("dangling backslash")?;
        let hex = |chars: &mut std::str::Chars<'_>, n: usize| -> anyhow::Result<u32> {
            let digits: String = chars.by_ref().take(n).collect();
            u32::from_str_radix(&digits, 16).with_context(|| format!("bad escape \\{e}{digits}"))
        };
        match e {
            'n' => out.push('\n'),
            't' => out.push('\t'),
            'r' => out.push('\r'),
            'a' => out.push('\x07'),
            'b' => out.push('\x08'),
            'f' => out.push('\x0c'),
            'v' => out.push('\x0b'),
            '\\' | '"' | '\'' => out.push(e),
            'x' => out.push(char::from_u32(hex(&mut chars, 2)?).context("bad \\x escape")?),
            'u' => out.push(char::from_u32(hex(&mut chars, 4)?).context("bad \\u escape")?),
            'U' => out.push(char::from_u32(hex(&mut chars, 8)?).context("bad \\U escape")?),
            other => anyhow::bail!("unknown escape \\{other}"),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downward_api_format() {
        let l = parse_labels(
            "app=\"reviews\"\npod-template-hash=\"7f9c\"\nversion=\"v2\"\nq=\"a\\\"b\\\\c\\u00e9\"\n\n",
        )
        .unwrap();
        assert_eq!(l["app"], "reviews");
        assert_eq!(l["version"], "v2");
        assert_eq!(l["q"], "a\"b\\cé");
        assert!(parse_labels("novalue\n").is_err());
        assert!(parse_labels("k=\"\\q\"").is_err());
    }
}
