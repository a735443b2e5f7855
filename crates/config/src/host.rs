//! Istio host names: short-name expansion, wildcard matching and DNS validation.

use std::net::IpAddr;

/// The cluster DNS suffix Istio appends to short names.
pub const DOMAIN_SUFFIX: &str = "cluster.local";

/// Expands a short name the Istio way: a name without a dot becomes
/// `<name>.<namespace>.svc.cluster.local`; names with a dot, `*` and IPs are kept.
pub fn fqdn(host: &str, namespace: &str) -> String {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    if host == "*" || host.contains('.') || host.parse::<IpAddr>().is_ok() {
        host
    } else {
        format!("{host}.{namespace}.svc.{DOMAIN_SUFFIX}")
    }
}

/// [`fqdn`], borrowed when `host` already is a lowercase FQDN (most are: a build expands every
/// host of every VirtualService).
pub fn fqdn_cow<'h>(host: &'h str, namespace: &str) -> std::borrow::Cow<'h, str> {
    if host.contains('.') && !host.ends_with('.') && !host.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Borrowed(host)
    } else {
        std::borrow::Cow::Owned(fqdn(host, namespace))
    }
}

/// `host` in lowercase, borrowed when it already is (lookups by host name are mostly made with
/// names that are).
pub fn lowercase(host: &str) -> std::borrow::Cow<'_, str> {
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(host.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(host)
    }
}

/// Whether `name` (a concrete or wildcard host) is covered by `pattern`.
///
/// `*.foo.com` covers any name ending in `.foo.com` (but not `foo.com`); `*` covers everything;
/// a wildcard name is covered only by a pattern at least as broad.
pub fn covers(pattern: &str, name: &str) -> bool {
    #[cfg(test)]
    probe::count();
    if pattern == "*" {
        return true;
    }
    match (pattern.strip_prefix('*'), name.strip_prefix('*')) {
        (None, None) => pattern.eq_ignore_ascii_case(name),
        (None, Some(_)) => false,
        (Some(psuffix), None) => ends_with_ci(name, psuffix) && name.len() > psuffix.len(),
        (Some(psuffix), Some(nsuffix)) => ends_with_ci(nsuffix, psuffix),
    }
}

/// Counts [`covers`] calls on the current thread, so tests can tell linear host matching from
/// pairwise scans by counting, not timing.
#[cfg(test)]
pub(crate) mod probe {
    use std::cell::Cell;

    thread_local! {
        static CALLS: Cell<u64> = const { Cell::new(0) };
    }

    pub(crate) fn count() {
        CALLS.with(|c| c.set(c.get() + 1));
    }

    /// `covers` calls made by `f` on this thread.
    pub(crate) fn calls_in<T>(f: impl FnOnce() -> T) -> (T, u64) {
        let before = CALLS.with(Cell::get);
        let out = f();
        (out, CALLS.with(Cell::get) - before)
    }
}

/// Whether two hosts overlap (either covers the other).
pub fn overlaps(a: &str, b: &str) -> bool {
    covers(a, b) || covers(b, a)
}

/// For each host, the first earlier host it overlaps (`None`: none), as a pairwise
/// [`overlaps`] scan would find, in time linear in the total length of the names (a
/// VirtualService with 80,000 hosts must not take seconds to validate).
pub fn first_overlaps(hosts: &[String]) -> Vec<Option<usize>> {
    use std::collections::HashMap;
    // Exact names; wildcard suffixes (`.foo.com` of `*.foo.com`); the first `*`; and, for the
    // wildcards to come, every label suffix an earlier name ends with (for a wildcard, its own
    // suffix too).
    let mut exact: HashMap<String, usize> = HashMap::new();
    let mut wild: HashMap<String, usize> = HashMap::new();
    let mut tails: HashMap<String, usize> = HashMap::new();
    let mut star: Option<usize> = None;
    let mut out = Vec::with_capacity(hosts.len());
    // `.b.c` and `.c` of `a.b.c` (or of `.a.b.c` with the leading dot itself first).
    fn label_suffixes(s: &str) -> impl Iterator<Item = &str> {
        s.char_indices()
            .filter(|&(_, c)| c == '.')
            .filter_map(move |(i, _)| s.get(i..))
    }
    for (j, raw) in hosts.iter().enumerate() {
        let h = raw.to_ascii_lowercase();
        let mut first = star;
        let mut see = |i: Option<&usize>| {
            if let Some(&i) = i {
                first = Some(first.map_or(i, |f: usize| f.min(i)));
            }
        };
        if h == "*" {
            if j > 0 {
                see(Some(&0));
            }
        } else if let Some(suffix) = h.strip_prefix('*') {
            for t in label_suffixes(suffix) {
                see(wild.get(t));
            }
            see(tails.get(suffix));
        } else {
            see(exact.get(&h));
            for t in label_suffixes(&h) {
                see(wild.get(t));
            }
        }
        out.push(first);
        if h == "*" {
            star.get_or_insert(j);
        } else if let Some(suffix) = h.strip_prefix('*') {
            wild.entry(suffix.to_string()).or_insert(j);
            for t in label_suffixes(suffix) {
                tails.entry(t.to_string()).or_insert(j);
            }
        } else {
            for t in label_suffixes(&h) {
                tails.entry(t.to_string()).or_insert(j);
            }
            exact.entry(h).or_insert(j);
        }
    }
    out
}

/// The intersection of a VirtualService host and a Gateway server host: the more specific of the two
/// when they overlap.
pub fn intersect<'a>(vs_host: &'a str, server_host: &'a str) -> Option<&'a str> {
    if covers(server_host, vs_host) {
        Some(vs_host)
    } else if covers(vs_host, server_host) {
        Some(server_host)
    } else {
        None
    }
}

/// [`intersect`] in lowercase, borrowed from `vs_host` or `server_host` when it can be: every
/// build binds every VirtualService host to every gateway server, and most names need no copy.
pub fn intersect_lowercase<'a>(
    vs_host: &std::borrow::Cow<'a, str>,
    server_host: &'a str,
) -> Option<std::borrow::Cow<'a, str>> {
    let d = intersect(vs_host, server_host)?;
    let source = if std::ptr::eq(d, server_host) {
        Some(server_host)
    } else if let std::borrow::Cow::Borrowed(b) = vs_host {
        Some(*b)
    } else {
        None
    };
    Some(match source {
        Some(b) => lowercase(b),
        None => std::borrow::Cow::Owned(d.to_ascii_lowercase()),
    })
}

fn ends_with_ci(s: &str, suffix: &str) -> bool {
    // Compared as bytes: the cut may fall inside a multi-byte character of an invalid host,
    // where slicing the `str` would panic.
    s.len() >= suffix.len()
        && s.as_bytes()[s.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
}

/// Whether `s` is a DNS-1123 label (letters, digits, `-`; starts and ends alphanumeric; ≤ 63).
pub fn is_dns1123_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.as_bytes()[s.len() - 1].is_ascii_alphanumeric()
}

/// Validates a host that may carry a leading wildcard label (`*`, `*.example.com`, `*foo.com`).
pub fn validate_wildcard_domain(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err("host must not be empty".into());
    }
    if host == "*" {
        return Ok(());
    }
    let rest = match host.strip_prefix('*') {
        Some(r) => match r.strip_prefix('.') {
            Some(after_dot) if !after_dot.is_empty() => after_dot,
            Some(_) => return Err(format!("invalid wildcard host `{host}`")),
            None => {
                // `*foo.com` / `*-foo.com`: the wildcard is part of the first label, which may
                // then continue with any label characters (including a leading `-`).
                let (first, tail) = r.split_once('.').unwrap_or((r, ""));
                if first.is_empty()
                    || !first
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    || tail.is_empty()
                {
                    return Err(format!("invalid wildcard host `{host}`"));
                }
                tail
            }
        },
        None => host,
    };
    validate_domain(rest).map_err(|e| format!("invalid host `{host}`: {e}"))
}

/// Validates a DNS name (no wildcard); a trailing dot is allowed.
pub fn validate_domain(host: &str) -> Result<(), String> {
    let h = host.strip_suffix('.').unwrap_or(host);
    if h.is_empty() {
        return Err("empty domain".into());
    }
    if h.len() > 255 {
        return Err("domain longer than 255 characters".into());
    }
    let labels: Vec<&str> = h.split('.').collect();
    for l in &labels {
        if l.contains('*') {
            return Err("a wildcard is only allowed as the whole first label".into());
        }
        if !is_dns1123_label(l) {
            return Err(format!("label `{l}` is not a DNS-1123 label"));
        }
    }
    if labels[labels.len() - 1].bytes().all(|b| b.is_ascii_digit()) {
        return Err("top-level domain may not be all numeric".into());
    }
    Ok(())
}

/// Whether the host is an IP literal.
pub fn is_ip(host: &str) -> bool {
    host.parse::<IpAddr>().is_ok()
}

/// Strips a `:port` suffix from a Host header value (IPv6 literals in brackets are kept whole).
pub fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return match host.find(']') {
            Some(i) => &host[..=i],
            None => host,
        };
    }
    match host.rsplit_once(':') {
        Some((h, p)) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowercase_borrows_names_that_already_are() {
        assert!(matches!(
            lowercase("a.example.com"),
            std::borrow::Cow::Borrowed("a.example.com")
        ));
        assert_eq!(lowercase("A.Example.com"), "a.example.com");
    }

    #[test]
    fn covers_compares_bytes_when_a_cut_falls_inside_a_character() {
        // Found by the `config_load` fuzz target: a non-ASCII host under a wildcard pattern.
        assert!(!covers("*o.local", "bo\u{fffd}.local"));
        assert!(covers("*.local", "b\u{fffd}.local"));
    }

    #[test]
    fn short_names_expand() {
        assert_eq!(fqdn("reviews", "prod"), "reviews.prod.svc.cluster.local");
        assert_eq!(fqdn("reviews.prod", "x"), "reviews.prod");
        assert_eq!(fqdn("*", "x"), "*");
        assert_eq!(fqdn("10.0.0.1", "x"), "10.0.0.1");
        assert_eq!(fqdn("Reviews", "x"), "reviews.x.svc.cluster.local");
    }

    #[test]
    fn fqdn_cow_borrows_what_needs_no_expansion_and_agrees_with_fqdn() {
        for (host, ns) in [
            ("reviews", "prod"),
            ("reviews.prod", "x"),
            ("*", "x"),
            ("*.example.com", "x"),
            ("10.0.0.1", "x"),
            ("::1", "x"),
            ("Reviews.Prod", "x"),
            ("reviews.prod.", "x"),
            ("reviews", "Prod"),
        ] {
            assert_eq!(fqdn_cow(host, ns), fqdn(host, ns), "{host} in {ns}");
        }
        assert!(matches!(
            fqdn_cow("a.example.com", "x"),
            std::borrow::Cow::Borrowed("a.example.com")
        ));
    }

    #[test]
    fn wildcard_coverage() {
        let cases = [
            ("*", "a.b", true),
            ("*.foo.com", "a.foo.com", true),
            ("*.foo.com", "a.b.foo.com", true),
            ("*.foo.com", "foo.com", false),
            ("*.foo.com", "*.a.foo.com", true),
            ("*.a.foo.com", "*.foo.com", false),
            ("a.foo.com", "A.FOO.com", true),
            ("a.foo.com", "*.foo.com", false),
        ];
        for (p, n, want) in cases {
            assert_eq!(covers(p, n), want, "{p} covers {n}");
        }
        assert_eq!(intersect("*", "a.com"), Some("a.com"));
        assert_eq!(intersect("a.com", "*.com"), Some("a.com"));
        assert_eq!(intersect("com", "*.com"), None);
    }

    #[test]
    fn domain_validation() {
        assert!(validate_wildcard_domain("*.example.com").is_ok());
        assert!(validate_wildcard_domain("*foo.example.com").is_ok());
        assert!(validate_wildcard_domain("*-foo.example.com").is_ok());
        assert!(validate_wildcard_domain("123").is_err());
        assert!(validate_wildcard_domain("a.*.com").is_err());
        assert!(validate_wildcard_domain("bad_host").is_err());
        assert!(validate_wildcard_domain("foo.123").is_err());
        assert!(validate_wildcard_domain("reviews").is_ok());
        assert!(validate_wildcard_domain("").is_err());
    }

    #[test]
    fn ports_stripped() {
        assert_eq!(strip_port("a.com:80"), "a.com");
        assert_eq!(strip_port("a.com"), "a.com");
        assert_eq!(strip_port("[::1]:80"), "[::1]");
    }

    #[test]
    fn indexed_overlaps_match_the_pairwise_scan() {
        let names = [
            "*",
            "a.com",
            "*.com",
            "b.a.com",
            "*.a.com",
            "A.COM",
            "com",
            "*.b.a.com",
            "x.org",
            "*.org",
            "c.b.a.com",
            "*.x.org",
            "y.x.org",
            "a.com",
        ];
        // Every ordered pick of up to 5 names from the list, shifted, checked against the scan.
        for start in 0..names.len() {
            for len in 1..=6 {
                for step in 1..4 {
                    let hosts: Vec<String> = (0..len)
                        .map(|k| names[(start + k * step) % names.len()].to_string())
                        .collect();
                    let want: Vec<Option<usize>> = (0..hosts.len())
                        .map(|j| (0..j).find(|&i| overlaps(&hosts[i], &hosts[j])))
                        .collect();
                    assert_eq!(first_overlaps(&hosts), want, "{hosts:?}");
                }
            }
        }
    }
}
