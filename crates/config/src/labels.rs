//! Kubernetes label syntax and selector matching.

use std::collections::BTreeMap;

use sluice_model::SmallMap;

/// Labels looked up by key: a `BTreeMap`, or the `SmallMap` that objects hold.
pub trait LabelSet {
    /// The value of label `key`.
    fn label(&self, key: &str) -> Option<&str>;
}

impl LabelSet for BTreeMap<String, String> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

impl LabelSet for SmallMap<String, String> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

/// Whether `labels` contains every key/value of `selector` (an empty selector selects all).
pub fn selector_matches<'a>(
    selector: impl IntoIterator<Item = (&'a String, &'a String)>,
    labels: &impl LabelSet,
) -> bool {
    selector
        .into_iter()
        .all(|(k, v)| labels.label(k) == Some(v.as_str()))
}

fn is_label_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.as_bytes()[s.len() - 1].is_ascii_alphanumeric()
}

/// Validates a label key (`[prefix/]name`).
pub fn validate_label_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix {
        if p.is_empty() || p.len() > 253 || crate::host::validate_domain(p).is_err() {
            return Err(format!("label key `{key}` has an invalid prefix"));
        }
    }
    if !is_label_name(name) {
        return Err(format!(
            "label key `{key}` is invalid: names are at most 63 characters of letters, digits, `-`, `_` and `.`, starting and ending with a letter or digit"
        ));
    }
    Ok(())
}

/// Validates a label value (may be empty).
pub fn validate_label_value(value: &str) -> Result<(), String> {
    if value.is_empty() || is_label_name(value) {
        Ok(())
    } else {
        Err(format!("label value `{value}` is invalid"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_syntax() {
        assert!(validate_label_key("app").is_ok());
        assert!(validate_label_key("app.kubernetes.io/name").is_ok());
        assert!(validate_label_key("-bad").is_err());
        assert!(validate_label_key("a*").is_err());
        assert!(validate_label_value("").is_ok());
        assert!(validate_label_value("v1.2").is_ok());
        assert!(validate_label_value("v1 2").is_err());
    }

    #[test]
    fn selection() {
        let sel: BTreeMap<_, _> = [("version".to_string(), "v1".to_string())].into();
        let mut labels = sel.clone();
        labels.insert("app".into(), "x".into());
        assert!(selector_matches(&sel, &labels));
        assert!(selector_matches(&BTreeMap::new(), &labels));
        assert!(!selector_matches(&labels, &sel));
    }
}
