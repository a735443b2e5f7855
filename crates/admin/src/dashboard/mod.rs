//! The built-in dashboard at `/`: a static page (HTML, CSS and vanilla JavaScript drawing
//! inline SVG) compiled into the binary, so it works offline and needs no build step. The page
//! reads `/api/graph/stream`, `/api/virtualservices`, `/api/reload` and `/api/canaries` (and,
//! with a host filter, `/api/graph?host=` and `/api/virtualservices?host=`).

use http::{HeaderValue, Response, StatusCode};

use crate::{reply, AdminBody};

/// One embedded file.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static str,
}

const JS: &str = "text/javascript; charset=utf-8";

const ASSETS: &[Asset] = &[
    Asset {
        path: "/",
        content_type: "text/html; charset=utf-8",
        body: include_str!("index.html"),
    },
    Asset {
        path: "/dashboard/style.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("style.css"),
    },
    Asset {
        path: "/dashboard/app.js",
        content_type: JS,
        body: include_str!("app.js"),
    },
    Asset {
        path: "/dashboard/canary.js",
        content_type: JS,
        body: include_str!("canary.js"),
    },
    Asset {
        path: "/dashboard/format.js",
        content_type: JS,
        body: include_str!("format.js"),
    },
    Asset {
        path: "/dashboard/graph.js",
        content_type: JS,
        body: include_str!("graph.js"),
    },
    Asset {
        path: "/dashboard/hops.js",
        content_type: JS,
        body: include_str!("hops.js"),
    },
    Asset {
        path: "/dashboard/layout.js",
        content_type: JS,
        body: include_str!("layout.js"),
    },
    Asset {
        path: "/dashboard/panel.js",
        content_type: JS,
        body: include_str!("panel.js"),
    },
];

/// The page only talks to this server; a strict policy keeps config text that ends up in the
/// DOM from ever running as script.
const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; \
                   script-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'";

/// The asset at `path`, if there is one.
pub(crate) fn asset(path: &str) -> Option<Response<AdminBody>> {
    let asset = ASSETS.iter().find(|a| a.path == path)?;
    let mut r = reply(StatusCode::OK, asset.content_type, asset.body);
    let h = r.headers_mut();
    // The assets change with the binary, not with time: revalidate rather than cache stale.
    h.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache"),
    );
    h.insert(
        http::header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        http::header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    Some(r)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn every_reference_in_the_page_is_served() {
        let page = asset("/").unwrap();
        assert_eq!(
            page.headers()[http::header::CONTENT_TYPE],
            "text/html; charset=utf-8"
        );
        let html = include_str!("index.html");
        let js = ASSETS
            .iter()
            .filter(|a| a.content_type == JS)
            .map(|a| a.body)
            .collect::<String>();
        // Every local file the page or its modules load must be in the table.
        for text in [html, js.as_str()] {
            for quote in text.split(['"', '\'']).filter(|s| {
                s.starts_with("/dashboard/") || (s.starts_with("./") && s.ends_with(".js"))
            }) {
                let path = match quote.strip_prefix("./") {
                    Some(file) => format!("/dashboard/{file}"),
                    None => quote.to_string(),
                };
                assert!(
                    asset(&path).is_some(),
                    "{path} is referenced but not served"
                );
            }
        }
    }

    #[test]
    fn content_types_and_headers() {
        let css = asset("/dashboard/style.css").unwrap();
        assert_eq!(
            css.headers()[http::header::CONTENT_TYPE],
            "text/css; charset=utf-8"
        );
        let js = asset("/dashboard/graph.js").unwrap();
        assert_eq!(js.headers()[http::header::CONTENT_TYPE], JS);
        assert_eq!(
            js.headers()[http::header::X_CONTENT_TYPE_OPTIONS],
            "nosniff"
        );
        assert!(asset("/dashboard/missing.js").is_none());
        assert!(asset("/index.htm").is_none());
    }

    #[test]
    fn no_remote_resources() {
        // The SVG namespace URI is a name, not a fetch; anything loaded must be relative.
        let loads = [
            "src=\"http",
            "href=\"http",
            "url(http",
            "from 'http",
            "from \"http",
            "('http",
            "(\"http",
            "//cdn",
        ];
        for a in ASSETS {
            for needle in loads {
                assert!(
                    !a.body.contains(needle),
                    "{} loads something remote ({needle})",
                    a.path
                );
            }
        }
    }
}
