//! Istio's default path normalization (MeshConfig `pathNormalization: BASE`, Envoy's
//! `normalize_path`), applied before routing and authorization and to what is forwarded: so
//! that a policy on `/admin` cannot be bypassed with `/public/../admin`, `/%61dmin` or
//! `\admin`, and the upstream sees the path the policy saw.
//!
//! RFC 3986 dot segments are removed, `\` becomes `/`, percent-encoded unreserved characters
//! (`%2D %2E %30-%39 %41-%5A %5F %61-%7A %7E`) are decoded once, and `%00` is refused (`400`).
//! Other escapes (`%2F` included) are kept as they are, their hex digits upper-cased.

use http::uri::{PathAndQuery, Uri};
use http::Request;

/// Why a path is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// A `%00` (NUL) in the path.
    #[error("NUL (%00) in the request path")]
    Nul,
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Whether `path` may need work: most do not, and they cost one scan.
fn suspicious(path: &[u8]) -> bool {
    path.iter().enumerate().any(|(i, &b)| match b {
        b'%' | b'\\' => true,
        // `/.` starts a dot segment candidate; a lone leading `.` too.
        b'.' => i == 0 || path.get(i - 1) == Some(&b'/'),
        _ => false,
    })
}

/// Decodes unreserved escapes, turns `\` into `/`, refuses `%00`.
fn decode(path: &[u8]) -> Result<Vec<u8>, PathError> {
    let mut out = Vec::with_capacity(path.len());
    let mut i = 0;
    while let Some(&b) = path.get(i) {
        match b {
            b'\\' => out.push(b'/'),
            b'%' => {
                let (h, l) = (path.get(i + 1).copied(), path.get(i + 2).copied());
                match (h.and_then(hex), l.and_then(hex), h, l) {
                    (Some(a), Some(c), Some(h), Some(l)) => {
                        let v = a * 16 + c;
                        if v == 0 {
                            return Err(PathError::Nul);
                        }
                        if unreserved(v) {
                            out.push(v);
                        } else {
                            out.extend_from_slice(&[
                                b'%',
                                h.to_ascii_uppercase(),
                                l.to_ascii_uppercase(),
                            ]);
                        }
                        i += 3;
                        continue;
                    }
                    _ => out.push(b'%'),
                }
            }
            other => out.push(other),
        }
        i += 1;
    }
    Ok(out)
}

/// RFC 3986 §5.2.4 on an absolute path; empty segments (`//`) are kept, as BASE does not
/// merge slashes.
fn remove_dot_segments(path: &[u8]) -> Vec<u8> {
    let mut segments = path.split(|&b| b == b'/');
    // An absolute path starts with `/`: its first "segment" is empty.
    let _ = segments.next();
    let mut stack: Vec<&[u8]> = Vec::new();
    let mut ends_in_directory = false;
    for seg in segments {
        ends_in_directory = matches!(seg, b"." | b".." | b"");
        match seg {
            b"." => {}
            b".." => {
                stack.pop();
            }
            s => stack.push(s),
        }
    }
    let mut out = Vec::with_capacity(path.len());
    for s in &stack {
        out.push(b'/');
        out.extend_from_slice(s);
    }
    if out.is_empty() || (ends_in_directory && !out.ends_with(b"/")) {
        out.push(b'/');
    }
    out
}

/// The normalized form of `path`, or `None` when it is already normal.
pub fn normalize_path(path: &str) -> Result<Option<String>, PathError> {
    let bytes = path.as_bytes();
    if !suspicious(bytes) {
        return Ok(None);
    }
    let decoded = decode(bytes)?;
    let normal = remove_dot_segments(&decoded);
    if normal == bytes {
        return Ok(None);
    }
    // Only ASCII was decoded or removed, so the bytes are still valid UTF-8.
    Ok(Some(String::from_utf8_lossy(&normal).into_owned()))
}

/// Normalizes the request's path in place (the query is left alone).
pub fn normalize<B>(req: &mut Request<B>) -> Result<(), PathError> {
    let Some(new_path) = normalize_path(req.uri().path())? else {
        return Ok(());
    };
    let pq = match req.uri().query() {
        Some(q) => format!("{new_path}?{q}"),
        None => new_path,
    };
    if let Ok(pq) = pq.parse::<PathAndQuery>() {
        let mut parts = std::mem::take(req.uri_mut()).into_parts();
        parts.path_and_query = Some(pq);
        if let Ok(uri) = Uri::from_parts(parts) {
            *req.uri_mut() = uri;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(p: &str) -> String {
        normalize_path(p).unwrap().unwrap_or_else(|| p.to_string())
    }

    #[test]
    fn ordinary_paths_are_untouched_and_cost_no_allocation() {
        for p in [
            "/",
            "/productpage",
            "/api/v1/items",
            "/a.b/c.d",
            "/file.txt",
            "/a//b",
        ] {
            assert_eq!(normalize_path(p).unwrap(), None, "{p}");
        }
    }

    #[test]
    fn dot_segments_backslashes_and_unreserved_escapes() {
        assert_eq!(n("/public/../admin"), "/admin");
        assert_eq!(n("/./admin/./x"), "/admin/x");
        assert_eq!(n("/a/b/../../admin"), "/admin");
        assert_eq!(n("/../../admin"), "/admin");
        assert_eq!(n("/%61dmin"), "/admin");
        assert_eq!(n("/%2e%2e/admin"), "/admin");
        assert_eq!(n("\\admin"), "/admin");
        assert_eq!(n("/a/.."), "/");
        assert_eq!(n("/a/b/."), "/a/b/");
        assert_eq!(n("/a%2fb"), "/a%2Fb");
        assert_eq!(n("/a%zz"), "/a%zz");
        assert_eq!(n("/a//../b"), "/a/b");
    }

    #[test]
    fn nul_is_refused() {
        assert_eq!(normalize_path("/a%00b"), Err(PathError::Nul));
    }

    #[test]
    fn the_query_is_kept() {
        let mut req = Request::get("/x/../admin?q=/../y").body(()).unwrap();
        normalize(&mut req).unwrap();
        assert_eq!(
            req.uri().path_and_query().unwrap().as_str(),
            "/admin?q=/../y"
        );
    }
}
