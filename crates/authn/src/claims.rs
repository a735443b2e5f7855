//! Claims of a verified token: the normalised copy handed to authorization and routing, and
//! the header text of a single claim.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{Map, Value};

/// Claims Istio always splits on spaces.
pub(crate) const ALWAYS_SPACE_DELIMITED: [&str; 2] = ["scope", "permission"];

/// The payload with each listed top-level string claim split on spaces into a list, as
/// Envoy's `normalize_payload_in_metadata` does (an all-space string stays a string).
pub(crate) fn normalise(payload: &Map<String, Value>, space_delimited: &[String]) -> Value {
    let mut out = payload.clone();
    let names = ALWAYS_SPACE_DELIMITED
        .iter()
        .copied()
        .chain(space_delimited.iter().map(String::as_str));
    for name in names {
        let Some(Value::String(text)) = payload.get(name) else {
            continue;
        };
        let words: Vec<Value> = text
            .split(' ')
            .filter(|w| !w.is_empty())
            .map(|w| Value::String(w.to_owned()))
            .collect();
        if !words.is_empty() {
            out.insert(name.to_owned(), Value::Array(words));
        }
    }
    Value::Object(out)
}

/// The claim at `path`, `a.b` walking into nested objects.
pub(crate) fn lookup<'v>(payload: &'v Map<String, Value>, path: &str) -> Option<&'v Value> {
    let mut segments = path.split('.');
    let mut current = payload.get(segments.next()?)?;
    for segment in segments {
        current = current.as_object()?.get(segment)?;
    }
    Some(current)
}

/// The header text of a claim as Envoy writes it: strings as they are, numbers without a
/// fraction when whole, booleans as words, objects and lists as base64 JSON. `None` when
/// the text would be empty.
pub(crate) fn header_text(value: &Value) -> Option<String> {
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => number_text(n),
        Value::Array(_) | Value::Object(_) => STANDARD.encode(value.to_string()),
        Value::Null => return None,
    };
    (!text.is_empty()).then_some(text)
}

fn number_text(n: &serde_json::Number) -> String {
    if let Some(i) = n.as_i64() {
        return i.to_string();
    }
    if let Some(u) = n.as_u64() {
        return u.to_string();
    }
    match n.as_f64() {
        // Envoy holds numbers as doubles and prints whole ones as integers.
        Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => format!("{}", f as i64),
        Some(f) => f.to_string(),
        None => n.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    #[test]
    fn scope_permission_and_listed_claims_split() {
        let payload = map(json!({
            "scope": "read  write",
            "permission": ["a b"],
            "roles": "x y",
            "other": "p q",
            "blank": "   "
        }));
        let out = normalise(&payload, &["roles".into(), "blank".into()]);
        assert_eq!(out["scope"], json!(["read", "write"]));
        assert_eq!(out["permission"], json!(["a b"]));
        assert_eq!(out["roles"], json!(["x", "y"]));
        assert_eq!(out["other"], json!("p q"));
        assert_eq!(out["blank"], json!("   "));
    }

    #[test]
    fn nested_lookup() {
        let payload = map(json!({"a": {"b": {"c": 1}}, "x.y": 2}));
        assert_eq!(lookup(&payload, "a.b.c"), Some(&json!(1)));
        assert_eq!(lookup(&payload, "a.b"), Some(&json!({"c": 1})));
        assert_eq!(lookup(&payload, "a.z"), None);
        assert_eq!(lookup(&payload, "x.y"), None);
    }

    #[test]
    fn header_texts() {
        assert_eq!(header_text(&json!("gold")).as_deref(), Some("gold"));
        assert_eq!(header_text(&json!(42)).as_deref(), Some("42"));
        assert_eq!(header_text(&json!(4.0)).as_deref(), Some("4"));
        assert_eq!(header_text(&json!(4.5)).as_deref(), Some("4.5"));
        assert_eq!(header_text(&json!(true)).as_deref(), Some("true"));
        assert_eq!(
            header_text(&json!(["a", "b"])).as_deref(),
            Some(STANDARD.encode(r#"["a","b"]"#).as_str())
        );
        assert_eq!(header_text(&json!("")), None);
        assert_eq!(header_text(&Value::Null), None);
    }
}
