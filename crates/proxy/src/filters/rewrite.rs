//! Path and authority rewrites (`HTTPRewrite`), Envoy semantics.

use sluice_config::matcher::StrMatch;
use sluice_config::policy::Rewrite;
use sluice_config::RouteMatch;

/// The rewritten `path?query`, or `None` when the path is unchanged.
pub fn rewrite_path(rw: &Rewrite, m: &RouteMatch<'_>, path_and_query: &str) -> Option<String> {
    let (path, query) = match path_and_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_and_query, None),
    };
    let with_query = |p: String| match query {
        Some(q) => format!("{p}?{q}"),
        None => p,
    };
    if let Some((re, replacement)) = &rw.uri_regex {
        return Some(with_query(
            re.replace_all(path, replacement.as_str()).into_owned(),
        ));
    }
    let new = rw.uri.as_ref()?;
    let entry_uri = m
        .entry
        .and_then(|i| m.route.matches.get(i))
        .and_then(|e| e.uri.as_ref());
    Some(match entry_uri {
        // Envoy's prefix_rewrite: only the matched prefix is replaced.
        Some(StrMatch::Prefix(prefix)) => {
            let rest = path_and_query.get(prefix.len()..).unwrap_or("");
            format!("{new}{rest}")
        }
        // Exact and regex matches replace the whole path; the query is kept.
        Some(_) => with_query(new.clone()),
        // No uri match is an implicit prefix `/`.
        None => {
            let rest = path_and_query.get(1..).unwrap_or("");
            format!("{new}{rest}")
        }
    })
}
