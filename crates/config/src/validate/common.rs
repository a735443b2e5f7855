//! Validation helpers shared by the kinds: string matches, regexes, headers, percentages, ports.

use regex::Regex;

/// Compiles an Istio (RE2) regex anchored at both ends, as Envoy's `safe_regex` matches the whole value.
pub fn compile_regex(pattern: &str) -> Result<Regex, String> {
    if pattern.is_empty() {
        return Err("regex must not be empty".into());
    }
    if pattern.len() > 1024 {
        return Err("regex must be at most 1024 characters".into());
    }
    Regex::new(&format!("^(?:{pattern})$")).map_err(|e| format!("invalid RE2 regex `{pattern}`: {e}"))
}
