//! The consistent-hash cookie and query-parameter parsers on arbitrary headers and paths.
#![no_main]

use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // name \n path \n cookie-header-values separated by \n
    let mut parts = data.split(|b| *b == b'\n');
    let name = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let path = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let mut headers = HeaderMap::new();
    for value in parts {
        if let Ok(v) = HeaderValue::from_bytes(value) {
            headers.append(HeaderName::from_static("cookie"), v);
        }
    }
    let _ = sluice_proxy::hash_key::fuzz_parsers(&headers, &path, &name);
});
