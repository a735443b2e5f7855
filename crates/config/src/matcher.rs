//! Compiled request matchers: Istio `HTTPMatchRequest` with regexes built once, evaluated per request.

use http::HeaderMap;
use regex::Regex;
use serde::Serialize;

use crate::authz::VerifiedJwt;
use crate::jwt_claim::ClaimMatch;

/// What a route matches against: the parts of a request, borrowed.
#[derive(Debug, Clone, Copy)]
pub struct RequestInfo<'a> {
    /// `:method`.
    pub method: &'a str,
    /// `:scheme` (`http` or `https`).
    pub scheme: &'a str,
    /// Host / `:authority`, as sent (may include a port).
    pub authority: &'a str,
    /// Path with query string.
    pub path_and_query: &'a str,
    /// Request headers.
    pub headers: &'a HeaderMap,
    /// Request extensions, where the JWT stage leaves the [`VerifiedJwt`] claim matches read.
    pub extensions: Option<&'a http::Extensions>,
}

impl RequestInfo<'_> {
    /// The verified JWT of the request, if the JWT stage accepted one.
    pub fn jwt(&self) -> Option<&VerifiedJwt> {
        self.extensions?.get::<VerifiedJwt>()
    }

    /// The path without `?query`.
    pub fn path(&self) -> &str {
        self.path_and_query
            .split_once('?')
            .map_or(self.path_and_query, |(p, _)| p)
    }

    /// The query string after `?`, if any.
    pub fn query(&self) -> Option<&str> {
        self.path_and_query.split_once('?').map(|(_, q)| q)
    }
}

/// A compiled `StringMatch`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum StrMatch {
    /// Equal.
    Exact(String),
    /// Starts with.
    Prefix(String),
    /// Whole-value RE2 match.
    Regex(#[serde(serialize_with = "ser_regex")] Regex),
    /// Present, any value (`{}` or `regex: "*"`).
    Present,
}

fn ser_regex<S: serde::Serializer>(r: &Regex, s: S) -> Result<S::Ok, S::Error> {
    let src = r.as_str();
    let inner = src
        .strip_prefix("^(?:")
        .and_then(|x| x.strip_suffix(")$"))
        .unwrap_or(src);
    s.serialize_str(inner)
}

impl StrMatch {
    /// Compiles a model `StringMatch`; errors only on a bad regex.
    pub fn compile(m: &sluice_model::StringMatch) -> Result<StrMatch, String> {
        Ok(if let Some(e) = &m.exact {
            StrMatch::Exact(e.clone())
        } else if let Some(p) = &m.prefix {
            StrMatch::Prefix(p.clone())
        } else if let Some(r) = &m.regex {
            if r == "*" {
                StrMatch::Present
            } else {
                StrMatch::Regex(crate::validate::compile_regex(r)?)
            }
        } else {
            StrMatch::Present
        })
    }

    /// Whether the value matches (`ignore_case` applies to exact and prefix only, as in Istio).
    pub fn matches(&self, value: &str, ignore_case: bool) -> bool {
        match self {
            StrMatch::Exact(e) if ignore_case => e.eq_ignore_ascii_case(value),
            StrMatch::Exact(e) => e == value,
            StrMatch::Prefix(p) if ignore_case => {
                value.len() >= p.len()
                    && value.is_char_boundary(p.len())
                    && value[..p.len()].eq_ignore_ascii_case(p)
            }
            StrMatch::Prefix(p) => value.starts_with(p.as_str()),
            StrMatch::Regex(r) => r.is_match(value),
            StrMatch::Present => true,
        }
    }

    /// Whether this matcher accepts every value (prefix `/` on a path, or `.*`).
    pub fn is_catch_all_path(&self) -> bool {
        match self {
            StrMatch::Prefix(p) => p == "/" || p.is_empty(),
            StrMatch::Regex(r) => r.as_str() == "^(?:.*)$",
            StrMatch::Present => true,
            StrMatch::Exact(_) => false,
        }
    }
}

/// A header or query parameter condition.
#[derive(Debug, Clone, Serialize)]
pub struct KeyMatch {
    /// Header name (lower case) or query parameter name.
    pub name: String,
    /// Condition on the value.
    pub value: StrMatch,
}

/// One compiled match entry; all conditions must hold. An entry is kept per rule and listener
/// for the life of the snapshot, so the conditions most rules use sit inline and the rest, with
/// the entry's name and stat prefix, are boxed in [`MoreConditions`] when any is set.
#[derive(Debug, Clone, Default)]
pub struct RequestMatch {
    /// Path condition.
    pub uri: Option<StrMatch>,
    /// Case-insensitive path.
    pub ignore_uri_case: bool,
    /// Method condition.
    pub method: Option<StrMatch>,
    /// Headers that must match.
    pub headers: Vec<KeyMatch>,
    /// The rarely used conditions; `None` when none is set.
    pub more: Option<Box<MoreConditions>>,
}

/// The rarely used parts of a [`RequestMatch`].
#[derive(Debug, Clone, Default)]
pub struct MoreConditions {
    /// Entry name.
    pub name: Option<String>,
    /// Scheme condition.
    pub scheme: Option<StrMatch>,
    /// Authority condition.
    pub authority: Option<StrMatch>,
    /// Headers that must not match.
    pub without_headers: Vec<KeyMatch>,
    /// Query parameters that must match.
    pub query_params: Vec<KeyMatch>,
    /// JWT claims that must match (`headers` keys `@request.auth.claims...`).
    pub claims: Vec<ClaimMatch>,
    /// JWT claims that must not match (`withoutHeaders` keys `@request.auth.claims...`).
    pub without_claims: Vec<ClaimMatch>,
    /// `statPrefix`: requests that this entry matched are counted under it (Envoy's per-route
    /// `vhost.<vhost>.route.<prefix>.*` stats). Not a condition.
    pub stat_prefix: Option<std::sync::Arc<str>>,
}

/// What an entry without [`MoreConditions`] reads.
static NO_MORE: MoreConditions = MoreConditions {
    name: None,
    scheme: None,
    authority: None,
    without_headers: Vec::new(),
    query_params: Vec::new(),
    claims: Vec::new(),
    without_claims: Vec::new(),
    stat_prefix: None,
};

impl MoreConditions {
    /// Whether nothing is set (the entry needs no box).
    pub fn is_empty(&self) -> bool {
        self.name.is_none()
            && self.scheme.is_none()
            && self.authority.is_none()
            && self.without_headers.is_empty()
            && self.query_params.is_empty()
            && self.claims.is_empty()
            && self.without_claims.is_empty()
            && self.stat_prefix.is_none()
    }

    /// Boxed, or `None` when nothing is set.
    pub fn boxed(self) -> Option<Box<MoreConditions>> {
        (!self.is_empty()).then(|| Box::new(self))
    }
}

/// Written as one flat object, in the order the fields had when they were all inline.
impl Serialize for RequestMatch {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let more = self.more();
        let fields = usize::from(more.name.is_some())
            + usize::from(self.uri.is_some())
            + usize::from(self.ignore_uri_case)
            + usize::from(more.scheme.is_some())
            + usize::from(self.method.is_some())
            + usize::from(more.authority.is_some())
            + usize::from(!self.headers.is_empty())
            + usize::from(!more.without_headers.is_empty())
            + usize::from(!more.query_params.is_empty())
            + usize::from(!more.claims.is_empty())
            + usize::from(!more.without_claims.is_empty())
            + usize::from(more.stat_prefix.is_some());
        let mut st = s.serialize_struct("RequestMatch", fields)?;
        if let Some(v) = &more.name {
            st.serialize_field("name", v)?;
        }
        if let Some(v) = &self.uri {
            st.serialize_field("uri", v)?;
        }
        if self.ignore_uri_case {
            st.serialize_field("ignoreUriCase", &true)?;
        }
        if let Some(v) = &more.scheme {
            st.serialize_field("scheme", v)?;
        }
        if let Some(v) = &self.method {
            st.serialize_field("method", v)?;
        }
        if let Some(v) = &more.authority {
            st.serialize_field("authority", v)?;
        }
        if !self.headers.is_empty() {
            st.serialize_field("headers", &self.headers)?;
        }
        if !more.without_headers.is_empty() {
            st.serialize_field("withoutHeaders", &more.without_headers)?;
        }
        if !more.query_params.is_empty() {
            st.serialize_field("queryParams", &more.query_params)?;
        }
        if !more.claims.is_empty() {
            st.serialize_field("claims", &more.claims)?;
        }
        if !more.without_claims.is_empty() {
            st.serialize_field("withoutClaims", &more.without_claims)?;
        }
        if let Some(v) = &more.stat_prefix {
            st.serialize_field("statPrefix", v)?;
        }
        st.end()
    }
}

impl RequestMatch {
    /// The rarely used conditions (all unset when there are none).
    pub fn more(&self) -> &MoreConditions {
        self.more.as_deref().unwrap_or(&NO_MORE)
    }

    /// Whether the request satisfies every condition.
    pub fn matches(&self, req: &RequestInfo<'_>) -> bool {
        self.mismatch(req).is_none()
    }

    /// The first condition the request fails, described for `explain`; `None` when it matches.
    pub fn mismatch(&self, req: &RequestInfo<'_>) -> Option<String> {
        if let Some(u) = &self.uri {
            // Envoy compares prefixes with the full :path, exact and regex with the path alone.
            let subject = match u {
                StrMatch::Prefix(_) => req.path_and_query,
                _ => req.path(),
            };
            if !u.matches(subject, self.ignore_uri_case) {
                return Some(format!("uri `{subject}` does not match {}", describe(u)));
            }
        }
        let more = self.more();
        for (what, m, value) in [
            ("scheme", &more.scheme, req.scheme),
            ("method", &self.method, req.method),
            ("authority", &more.authority, req.authority),
        ] {
            if let Some(m) = m {
                if !m.matches(value, false) {
                    return Some(format!("{what} `{value}` does not match {}", describe(m)));
                }
            }
        }
        for h in &self.headers {
            match header_value(req.headers, &h.name) {
                Some(v) if h.value.matches(&v, false) => {}
                Some(v) => {
                    return Some(format!(
                        "header `{}: {v}` does not match {}",
                        h.name,
                        describe(&h.value)
                    ))
                }
                None => return Some(format!("header `{}` is absent", h.name)),
            }
        }
        for h in &more.without_headers {
            let hit = match (&h.value, header_value(req.headers, &h.name)) {
                (StrMatch::Present, v) => v.is_some(),
                (m, v) => m.matches(v.as_deref().unwrap_or(""), false),
            };
            if hit {
                return Some(format!(
                    "header `{}` matches withoutHeaders {}",
                    h.name,
                    describe(&h.value)
                ));
            }
        }
        for c in &more.claims {
            if !c.matches(req.jwt()) {
                return Some(format!(
                    "claim `{}` is absent or does not match {}",
                    c.display_path(),
                    describe(&c.value)
                ));
            }
        }
        // Envoy inverts the metadata match: an absent claim (or no token) satisfies it.
        for c in &more.without_claims {
            if c.matches(req.jwt()) {
                return Some(format!(
                    "claim `{}` matches withoutHeaders {}",
                    c.display_path(),
                    describe(&c.value)
                ));
            }
        }
        for q in &more.query_params {
            match query_value(req.query(), &q.name) {
                Some(v) if q.value.matches(&v, false) => {}
                Some(v) => {
                    return Some(format!(
                        "query `{}={v}` does not match {}",
                        q.name,
                        describe(&q.value)
                    ))
                }
                None => return Some(format!("query parameter `{}` is absent", q.name)),
            }
        }
        None
    }

    /// Whether this entry matches every request (no conditions, or only a catch-all path).
    pub fn is_catch_all(&self) -> bool {
        let more = self.more();
        self.uri.as_ref().is_none_or(StrMatch::is_catch_all_path)
            && more.scheme.is_none()
            && self.method.is_none()
            && more.authority.is_none()
            && self.headers.is_empty()
            && more.without_headers.is_empty()
            && more.query_params.is_empty()
            && more.claims.is_empty()
            && more.without_claims.is_empty()
    }
}

fn describe(m: &StrMatch) -> String {
    match m {
        StrMatch::Exact(e) => format!("exact `{e}`"),
        StrMatch::Prefix(p) => format!("prefix `{p}`"),
        StrMatch::Regex(r) => format!("regex `{}`", r.as_str()),
        StrMatch::Present => "presence".into(),
    }
}

/// A header's value; several occurrences are joined with `,` as Envoy does.
fn header_value(headers: &HeaderMap, name: &str) -> Option<String> {
    let mut it = headers.get_all(name).iter();
    let first = it.next()?;
    let mut out = String::from_utf8_lossy(first.as_bytes()).into_owned();
    for v in it {
        out.push(',');
        out.push_str(&String::from_utf8_lossy(v.as_bytes()));
    }
    Some(out)
}

/// The first value of a query parameter (`?key` alone has the empty value).
fn query_value(query: Option<&str>, name: &str) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| v.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use sluice_model::StringMatch;

    fn sm(exact: Option<&str>, prefix: Option<&str>, regex: Option<&str>) -> StrMatch {
        StrMatch::compile(&StringMatch {
            exact: exact.map(Into::into),
            prefix: prefix.map(Into::into),
            regex: regex.map(Into::into),
        })
        .unwrap()
    }

    fn req<'a>(path: &'a str, headers: &'a HeaderMap) -> RequestInfo<'a> {
        RequestInfo {
            method: "GET",
            scheme: "http",
            authority: "app:8080",
            path_and_query: path,
            headers,
            extensions: None,
        }
    }

    #[test]
    fn uri_matching_follows_envoy() {
        let h = HeaderMap::new();
        let table: &[(StrMatch, bool, &str, bool)] = &[
            (sm(None, Some("/canary"), None), false, "/canaryfoo", true),
            (sm(None, Some("/canary"), None), false, "/canary?x=1", true),
            (sm(None, Some("/canary"), None), false, "/CANARY", false),
            (sm(None, Some("/canary"), None), true, "/CANARY/x", true),
            (sm(Some("/a"), None, None), false, "/a?q=1", true),
            (sm(Some("/a"), None, None), false, "/a/", false),
            (sm(None, None, Some("/api")), false, "/api/v1", false),
            (sm(None, None, Some("/api/.*")), false, "/api/v1", true),
            (
                sm(None, None, Some("/api/v[0-9]")),
                false,
                "/api/v1?x",
                true,
            ),
        ];
        for (m, icase, path, want) in table {
            let rm = RequestMatch {
                uri: Some(m.clone()),
                ignore_uri_case: *icase,
                ..Default::default()
            };
            assert_eq!(rm.matches(&req(path, &h)), *want, "{m:?} {path}");
        }
    }

    #[test]
    fn headers_query_and_without_headers() {
        let mut h = HeaderMap::new();
        h.insert("canary", HeaderValue::from_static("canary-tester"));
        let exact = RequestMatch {
            headers: vec![KeyMatch {
                name: "canary".into(),
                value: sm(Some("canary-tester"), None, None),
            }],
            ..Default::default()
        };
        assert!(exact.matches(&req("/", &h)));
        assert!(!exact.matches(&req("/", &HeaderMap::new())));

        let without = RequestMatch {
            more: MoreConditions {
                without_headers: vec![KeyMatch {
                    name: "canary".into(),
                    value: StrMatch::Present,
                }],
                ..Default::default()
            }
            .boxed(),
            ..Default::default()
        };
        assert!(!without.matches(&req("/", &h)));
        assert!(without.matches(&req("/", &HeaderMap::new())));

        let q = RequestMatch {
            more: MoreConditions {
                query_params: vec![KeyMatch {
                    name: "v".into(),
                    value: sm(Some(""), None, None),
                }],
                ..Default::default()
            }
            .boxed(),
            ..Default::default()
        };
        assert!(q.matches(&req("/x?v", &h)));
        assert!(q.matches(&req("/x?a=1&v=", &h)));
        assert!(!q.matches(&req("/x?v=2", &h)));
        assert!(!q.matches(&req("/x", &h)));
    }

    #[test]
    fn serializes_flat_in_field_order() {
        let key = |n: &str| KeyMatch {
            name: n.into(),
            value: StrMatch::Present,
        };
        let claim = ClaimMatch {
            path: vec!["groups".into()],
            value: sm(Some("admin"), None, None),
        };
        let full = RequestMatch {
            uri: Some(sm(None, Some("/api"), None)),
            ignore_uri_case: true,
            method: Some(sm(Some("GET"), None, None)),
            headers: vec![key("h")],
            more: MoreConditions {
                name: Some("n".into()),
                scheme: Some(sm(Some("https"), None, None)),
                authority: Some(sm(None, None, Some("a.*"))),
                without_headers: vec![key("w")],
                query_params: vec![key("q")],
                claims: vec![claim.clone()],
                without_claims: vec![claim],
                stat_prefix: Some("sp".into()),
            }
            .boxed(),
        };
        assert_eq!(
            serde_json::to_string(&full).unwrap(),
            concat!(
                r#"{"name":"n","uri":{"prefix":"/api"},"ignoreUriCase":true,"#,
                r#""scheme":{"exact":"https"},"method":{"exact":"GET"},"authority":{"regex":"a.*"},"#,
                r#""headers":[{"name":"h","value":"present"}],"#,
                r#""withoutHeaders":[{"name":"w","value":"present"}],"#,
                r#""queryParams":[{"name":"q","value":"present"}],"#,
                r#""claims":[{"path":["groups"],"value":{"exact":"admin"}}],"#,
                r#""withoutClaims":[{"path":["groups"],"value":{"exact":"admin"}}],"#,
                r#""statPrefix":"sp"}"#
            )
        );
        assert_eq!(
            serde_json::to_string(&RequestMatch::default()).unwrap(),
            "{}"
        );
        assert!(MoreConditions::default().boxed().is_none());
    }

    #[test]
    fn catch_all_detection() {
        assert!(RequestMatch::default().is_catch_all());
        let p = RequestMatch {
            uri: Some(sm(None, Some("/"), None)),
            ..Default::default()
        };
        assert!(p.is_catch_all());
        let r = RequestMatch {
            uri: Some(sm(None, None, Some(".*"))),
            ..Default::default()
        };
        assert!(r.is_catch_all());
    }
}
