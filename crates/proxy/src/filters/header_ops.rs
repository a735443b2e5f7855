//! Header operations (`headers.request` / `headers.response`: set, add, remove).

use http::header::{HeaderMap, HeaderName, HeaderValue};
use sluice_config::policy::HeaderOps;

/// Envoy's `%%` escape; other command operators are passed through literally for now.
fn value(v: &str) -> Option<HeaderValue> {
    if v.contains("%%") {
        HeaderValue::from_str(&v.replace("%%", "%")).ok()
    } else {
        HeaderValue::from_str(v).ok()
    }
}

/// Applies remove, then set, then add (a later `set` at destination level overrides a route `add`).
pub fn apply(ops: &HeaderOps, headers: &mut HeaderMap) {
    for name in &ops.remove {
        if let Ok(n) = HeaderName::from_bytes(name.as_bytes()) {
            headers.remove(n);
        }
    }
    for (name, v) in &ops.set {
        if let (Ok(n), Some(v)) = (HeaderName::from_bytes(name.as_bytes()), value(v)) {
            headers.insert(n, v);
        }
    }
    for (name, v) in &ops.add {
        if let (Ok(n), Some(v)) = (HeaderName::from_bytes(name.as_bytes()), value(v)) {
            headers.append(n, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_add_remove() {
        let mut h = HeaderMap::new();
        h.insert("x-a", HeaderValue::from_static("1"));
        h.insert("x-gone", HeaderValue::from_static("1"));
        let ops = HeaderOps {
            set: vec![("x-a".into(), "2".into())],
            add: vec![("x-a".into(), "3".into()), ("x-pct".into(), "100%%".into())],
            remove: vec!["x-gone".into()],
        };
        apply(&ops, &mut h);
        let all: Vec<_> = h
            .get_all("x-a")
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(all, ["2", "3"]);
        assert_eq!(h["x-pct"], "100%");
        assert!(h.get("x-gone").is_none());
    }
}
