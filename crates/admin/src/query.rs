//! `?host=&limit=&offset=` of the admin's large documents (`/config_dump`, `/routes`,
//! `/clusters`, `/api/graph`, `/api/virtualservices`): at 10,000 services a whole dump is tens
//! of megabytes (and hundreds of megabytes of the proxy's memory while it is built), so callers
//! ask for the part about one host, a page at a time, and a request that asks for neither gets
//! the first [`DEFAULT_PAGE`] items of a longer list.

use sluice_config::host::{fqdn, overlaps};

/// Items of each list a request that asked for no page gets, when a list is longer.
pub(crate) const DEFAULT_PAGE: usize = 100;

/// The filter and page a request asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Query {
    /// Only what concerns this host (lowercase; a wildcard matches what it covers).
    pub(crate) host: Option<String>,
    /// At most this many items of each paginated list.
    pub(crate) limit: Option<usize>,
    /// Items of each paginated list skipped first.
    pub(crate) offset: usize,
}

impl Query {
    /// Parses a request's query string; unknown parameters are ignored.
    pub(crate) fn parse(query: Option<&str>) -> Result<Query, String> {
        let mut q = Query::default();
        for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            match k.as_ref() {
                "host" if !v.is_empty() => {
                    q.host = Some(v.trim_end_matches('.').to_ascii_lowercase())
                }
                "limit" => q.limit = Some(number("limit", &v)?),
                "offset" => q.offset = number("offset", &v)?,
                _ => {}
            }
        }
        Ok(q)
    }

    /// Whether a host written in an object of `namespace` concerns the asked host (always
    /// true without `?host=`). Short names are expanded as Istio does.
    pub(crate) fn concerns(&self, host: &str, namespace: &str) -> bool {
        self.host
            .as_deref()
            .is_none_or(|want| overlaps(want, &fqdn(host, namespace)))
    }

    /// The requested page of `items`.
    pub(crate) fn page<T>(&self, items: impl IntoIterator<Item = T>) -> Vec<T> {
        items
            .into_iter()
            .skip(self.offset)
            .take(self.limit.unwrap_or(usize::MAX))
            .collect()
    }

    /// Whether any filter or page was asked for.
    pub(crate) fn is_set(&self) -> bool {
        *self != Query::default()
    }

    /// This query, or, when none was asked for and the longest list of the document holds more
    /// than [`DEFAULT_PAGE`] items, its first page.
    pub(crate) fn or_first_page(&self, longest: usize) -> Query {
        if self.is_set() || longest <= DEFAULT_PAGE {
            return self.clone();
        }
        Query {
            limit: Some(DEFAULT_PAGE),
            ..self.clone()
        }
    }

    /// Whether a page (not just a filter) was asked for.
    pub(crate) fn pages(&self) -> bool {
        self.limit.is_some() || self.offset > 0
    }
}

fn number(name: &str, v: &str) -> Result<usize, String> {
    v.parse()
        .map_err(|_| format!("`{name}` must be a non-negative integer, not `{v}`"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_host_limit_and_offset() {
        let q = Query::parse(Some(
            "host=Reviews.Default.svc.cluster.local.&limit=2&offset=4&x=1",
        ))
        .unwrap();
        assert_eq!(q.host.as_deref(), Some("reviews.default.svc.cluster.local"));
        assert_eq!((q.limit, q.offset), (Some(2), 4));
        assert_eq!(q.page(0..10), vec![4, 5]);
        assert!(Query::parse(Some("limit=-1")).is_err());
        assert!(!Query::parse(None).unwrap().is_set());
        // No query: the first page, only when a list is longer than one.
        let none = Query::default();
        assert_eq!(none.or_first_page(DEFAULT_PAGE), none);
        assert_eq!(
            none.or_first_page(DEFAULT_PAGE + 1).limit,
            Some(DEFAULT_PAGE)
        );
        assert_eq!(q.or_first_page(usize::MAX), q);
    }

    #[test]
    fn short_names_and_wildcards_concern_the_host() {
        let q = Query::parse(Some("host=reviews.default.svc.cluster.local")).unwrap();
        assert!(q.concerns("reviews", "default"));
        assert!(q.concerns("*.svc.cluster.local", "istio-system"));
        assert!(q.concerns("*", "istio-system"));
        assert!(!q.concerns("reviews", "other"));
        assert!(!q.concerns("ratings.default.svc.cluster.local", "default"));
    }
}
