//! Where tokens are looked for: the union of every rule's locations, each location
//! remembering which rules named it, as Envoy's extractor does.

use http::header::{HeaderName, AUTHORIZATION, COOKIE};
use http::request::Parts;

/// A place a token was found in, kept so it can be removed after verification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Place {
    Header(HeaderName),
    Param(String),
    Cookie(String),
}

/// A token taken from the request, with the rules allowed to verify it.
#[derive(Debug)]
pub(crate) struct Found<'l> {
    /// The token text.
    pub token: String,
    /// Where it was found.
    pub place: &'l Place,
    /// Indexes of the rules that named this location.
    pub rules: &'l [usize],
}

#[derive(Debug)]
struct Location {
    place: Place,
    /// Only for headers; empty means the whole value is the token.
    prefix: String,
    rules: Vec<usize>,
}

/// Every configured location, in the order Envoy tries them: headers, params, cookies.
#[derive(Debug, Default)]
pub(crate) struct Extractor {
    locations: Vec<Location>,
}

impl Extractor {
    /// Adds rule `rule`'s header location; a name that is not a valid header is ignored.
    pub fn add_header(&mut self, rule: usize, name: &str, prefix: &str) {
        if let Ok(name) = HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()) {
            self.add(rule, Place::Header(name), prefix);
        }
    }

    /// Adds rule `rule`'s query parameter location.
    pub fn add_param(&mut self, rule: usize, name: &str) {
        self.add(rule, Place::Param(name.to_owned()), "");
    }

    /// Adds rule `rule`'s cookie location.
    pub fn add_cookie(&mut self, rule: usize, name: &str) {
        self.add(rule, Place::Cookie(name.to_owned()), "");
    }

    /// Adds Envoy's default locations for rule `rule`.
    pub fn add_defaults(&mut self, rule: usize) {
        self.add(rule, Place::Header(AUTHORIZATION), "Bearer ");
        self.add(rule, Place::Param("access_token".to_owned()), "");
    }

    fn add(&mut self, rule: usize, place: Place, prefix: &str) {
        if let Some(existing) = self
            .locations
            .iter_mut()
            .find(|l| l.place == place && l.prefix == prefix)
        {
            if !existing.rules.contains(&rule) {
                existing.rules.push(rule);
            }
            return;
        }
        self.locations.push(Location {
            place,
            prefix: prefix.to_owned(),
            rules: vec![rule],
        });
        // Headers, then params, then cookies; a stable sort keeps configuration order within.
        self.locations.sort_by_key(|l| match l.place {
            Place::Header(_) => 0,
            Place::Param(_) => 1,
            Place::Cookie(_) => 2,
        });
    }

    /// The tokens present in `parts`, at most one per location.
    pub fn extract<'s>(&'s self, parts: &Parts) -> Vec<Found<'s>> {
        let query = parts.uri.query();
        let mut found = Vec::new();
        for location in &self.locations {
            let token = match &location.place {
                Place::Header(name) => parts
                    .headers
                    .get(name)
                    .and_then(|v| std::str::from_utf8(v.as_bytes()).ok())
                    .and_then(|v| header_token(v, &location.prefix)),
                Place::Param(name) => query.and_then(|q| query_param(q, name)),
                Place::Cookie(name) => cookie(parts, name),
            };
            if let Some(token) = token {
                found.push(Found {
                    token,
                    place: &location.place,
                    rules: &location.rules,
                });
            }
        }
        found
    }
}

fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '=')
}

/// Envoy finds the prefix anywhere in the value and takes the run of base64url characters
/// (and dots) that follows; a value without the prefix holds no token.
fn header_token(value: &str, prefix: &str) -> Option<String> {
    if prefix.is_empty() {
        return Some(value.to_owned());
    }
    let after = value.find(prefix)? + prefix.len();
    let rest = &value[after..];
    let Some(start) = rest.find(is_token_char) else {
        return Some(String::new());
    };
    let rest = &rest[start..];
    let end = rest.find(|c| !is_token_char(c)).unwrap_or(rest.len());
    Some(rest[..end].to_owned())
}

/// The first value of query parameter `name`, percent-decoded.
pub(crate) fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(key) == name).then(|| percent_decode(value))
    })
}

/// The first cookie called `name` in any `Cookie` header, quotes removed.
fn cookie(parts: &Parts, name: &str) -> Option<String> {
    parts
        .headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (key, value) = pair.trim().split_once('=')?;
            if key.trim() != name {
                return None;
            }
            let value = value.trim();
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(value);
            Some(value.to_owned())
        })
}

/// `%XX` decoding of a query component; `+` stays as is, as Envoy leaves it.
pub(crate) fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((hi * 16 + lo) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_prefix_is_found_and_token_ends_at_first_foreign_char() {
        assert_eq!(
            header_token("Bearer a.b.c", "Bearer ").as_deref(),
            Some("a.b.c")
        );
        assert_eq!(header_token("Basic a.b.c", "Bearer "), None);
        assert_eq!(header_token("bearer a.b.c", "Bearer "), None);
        assert_eq!(
            header_token("Bearer  a.b.c, x", "Bearer ").as_deref(),
            Some("a.b.c")
        );
        assert_eq!(header_token("Bearer ", "Bearer ").as_deref(), Some(""));
        assert_eq!(header_token("raw a.b", "").as_deref(), Some("raw a.b"));
    }

    #[test]
    fn query_params_decode() {
        assert_eq!(
            query_param("a=1&access_token=x%2Ey", "access_token").as_deref(),
            Some("x.y")
        );
        assert_eq!(
            query_param("access_token", "access_token").as_deref(),
            Some("")
        );
        assert_eq!(query_param("a=1", "access_token"), None);
        assert_eq!(percent_decode("%4"), "%4");
        assert_eq!(percent_decode("%41%zz"), "A%zz");
    }
}
