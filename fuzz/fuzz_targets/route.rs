//! `route()` on arbitrary requests against a snapshot with every kind of match, rewrite and
//! redirect: it returns a decision for any request, never a panic.
#![no_main]

use std::sync::OnceLock;

use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use sluice_config::route_table::RouteAction;
use sluice_config::{build_snapshot, route, ProxyConfig, RequestInfo, Routed, Snapshot};
use sluice_lb::StateStore;

fn snapshot() -> &'static Snapshot {
    static SNAPSHOT: OnceLock<Snapshot> = OnceLock::new();
    SNAPSHOT.get_or_init(|| {
        let parsed = sluice_model::parse_text(
            include_str!("../seeds/route.yaml"),
            Some("route.yaml".into()),
        );
        match build_snapshot(
            parsed.resources,
            parsed.diagnostics,
            &ProxyConfig::default(),
            &StateStore::new(),
            1,
        ) {
            Ok(s) => s,
            Err(r) => panic!("the fuzz config is rejected: {:#?}", r.diagnostics),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    // method \n authority \n path \n (name: value \n)*
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let method = lines.next().unwrap_or_default();
    let authority = lines.next().unwrap_or_default();
    let path = lines.next().unwrap_or_default();
    let mut headers = HeaderMap::new();
    for line in lines {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        if let (Ok(k), Ok(v)) = (
            HeaderName::from_bytes(k.trim().as_bytes()),
            HeaderValue::from_str(v.trim()),
        ) {
            headers.append(k, v);
        }
    }
    let info = RequestInfo {
        method,
        scheme: "http",
        authority,
        path_and_query: path,
        headers: &headers,
        extensions: None,
    };
    for listener in &snapshot().listeners {
        if let Routed::Matched(m) = route(listener, &info) {
            if let RouteAction::Redirect(r) = &m.route.action {
                let _ = r.location(&info, m.matched_prefix(), listener.port());
            }
        }
    }
});
