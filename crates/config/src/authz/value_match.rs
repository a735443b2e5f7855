//! Istio's authorization string forms: `abc` exact, `abc*` prefix, `*abc` suffix, `*` presence.

use regex::Regex;
use serde_json::Value;

/// One compiled string value of a policy.
#[derive(Debug, Clone)]
pub enum ValueMatch {
    /// Equal.
    Exact(String),
    /// Starts with.
    Prefix(String),
    /// Ends with.
    Suffix(String),
    /// Any non-empty value.
    Present,
}

impl ValueMatch {
    /// Reads a policy value; `lower` folds it for case-insensitive fields (hosts).
    pub fn parse(v: &str, lower: bool) -> ValueMatch {
        let v = if lower {
            v.to_ascii_lowercase()
        } else {
            v.to_string()
        };
        if v == "*" {
            ValueMatch::Present
        } else if let Some(s) = v.strip_prefix('*') {
            ValueMatch::Suffix(s.to_string())
        } else if let Some(p) = v.strip_suffix('*') {
            ValueMatch::Prefix(p.to_string())
        } else {
            ValueMatch::Exact(v)
        }
    }

    /// Reads a policy value that is compared with `prefix` + value (principals get `spiffe://`).
    pub fn with_scheme(v: &str, scheme: &str) -> ValueMatch {
        match ValueMatch::parse(v, false) {
            ValueMatch::Exact(e) => ValueMatch::Exact(format!("{scheme}{e}")),
            ValueMatch::Prefix(p) => ValueMatch::Prefix(format!("{scheme}{p}")),
            // `*abc` becomes "starts with the scheme, ends with abc", which `Suffix` plus the
            // scheme check in `matches_with_scheme` expresses without a regex.
            other => other,
        }
    }

    /// Whether `value` matches.
    pub fn matches(&self, value: &str) -> bool {
        match self {
            ValueMatch::Exact(e) => value == e,
            ValueMatch::Prefix(p) => value.starts_with(p.as_str()),
            ValueMatch::Suffix(s) => value.ends_with(s.as_str()),
            ValueMatch::Present => !value.is_empty(),
        }
    }

    /// Whether `value` matches a value built by [`ValueMatch::with_scheme`].
    pub fn matches_with_scheme(&self, value: &str, scheme: &str) -> bool {
        match self {
            ValueMatch::Suffix(s) => value.starts_with(scheme) && value.ends_with(s.as_str()),
            other => other.matches(value),
        }
    }

    /// Whether a JSON claim matches: a string directly, a list of strings by any element,
    /// anything else never.
    pub fn matches_claim(&self, claim: &Value) -> bool {
        match claim {
            Value::String(s) => self.matches(s),
            Value::Array(items) => items
                .iter()
                .any(|i| i.as_str().is_some_and(|s| self.matches(s))),
            _ => false,
        }
    }
}

/// An AuthorizationPolicy path: a string form, or an Envoy URI template (`{*}`, `{**}`)
/// compiled once into an anchored regex.
#[derive(Debug, Clone)]
pub enum PathMatch {
    /// `abc`, `abc*`, `*abc`, `*`.
    Value(ValueMatch),
    /// `/api/{*}/items/{**}`.
    Template(Regex),
}

impl PathMatch {
    /// Compiles a path value.
    pub fn parse(v: &str) -> Result<PathMatch, String> {
        if !v.contains("{*}") && !v.contains("{**}") {
            return Ok(PathMatch::Value(ValueMatch::parse(v, false)));
        }
        let mut pattern = String::from("^");
        for (i, segment) in v.split('/').enumerate() {
            if i > 0 {
                pattern.push('/');
            }
            match segment {
                // One whole segment, never empty and never crossing a `/`.
                "{*}" => pattern.push_str("[^/]+"),
                // Any number of segments; Envoy only allows it last.
                "{**}" => pattern.push_str(".*"),
                lit => pattern.push_str(&regex::escape(lit)),
            }
        }
        pattern.push('$');
        Regex::new(&pattern)
            .map(PathMatch::Template)
            .map_err(|e| format!("path template `{v}` cannot be compiled: {e}"))
    }

    /// Whether `path` matches.
    pub fn matches(&self, path: &str) -> bool {
        match self {
            PathMatch::Value(m) => m.matches(path),
            PathMatch::Template(re) => re.is_match(path),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        let cases = [
            ("abc", "abc", true),
            ("abc", "abcd", false),
            ("abc*", "abcd", true),
            ("*bcd", "abcd", true),
            ("*bcd", "abce", false),
            ("*", "x", true),
            ("*", "", false),
        ];
        for (pattern, value, want) in cases {
            assert_eq!(
                ValueMatch::parse(pattern, false).matches(value),
                want,
                "{pattern} vs {value}"
            );
        }
    }

    #[test]
    fn templates() {
        let t = PathMatch::parse("/api/{*}/items/{**}").unwrap();
        assert!(t.matches("/api/v1/items/a/b"));
        assert!(t.matches("/api/v1/items/"));
        assert!(!t.matches("/api/v1/x/items/a"));
        assert!(!t.matches("/api//items/a"));
        let one = PathMatch::parse("/users/{*}").unwrap();
        assert!(one.matches("/users/42"));
        assert!(!one.matches("/users/42/orders"));
    }

    #[test]
    fn claims_match_strings_and_lists_only() {
        let m = ValueMatch::parse("admin", false);
        assert!(m.matches_claim(&serde_json::json!("admin")));
        assert!(m.matches_claim(&serde_json::json!(["user", "admin"])));
        assert!(!m.matches_claim(&serde_json::json!(1)));
        assert!(!m.matches_claim(&serde_json::json!({"admin": true})));
    }
}
