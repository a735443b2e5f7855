//! `GET /api/explain?method=GET&url=...&header=K:%20V&gateway=ns/name&format=text|json`: the
//! running proxy's own routing decision for a request, as `sluice explain --admin` prints it.

use http::{Response, StatusCode};
use sluice_config::explain::{explain_request, render, ExplainRequest};

use crate::{json_reply, text, AdminBody, AdminState};

/// Explains a request described by the query string against the active snapshot.
pub(crate) fn explain(state: &AdminState, query: Option<&str>) -> Response<AdminBody> {
    let mut req = ExplainRequest {
        method: "GET".into(),
        ..ExplainRequest::default()
    };
    let mut as_text = false;
    for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match k.as_ref() {
            "method" => req.method = v.into_owned(),
            "url" => req.url = v.into_owned(),
            "header" => req.headers.push(v.into_owned()),
            "gateway" => req.gateway = Some(v.into_owned()),
            "format" => as_text = v == "text",
            other => {
                return text(
                    StatusCode::BAD_REQUEST,
                    format!(
                    "unknown parameter `{other}`; expected method, url, header, gateway, format\n"
                ),
                )
            }
        }
    }
    if req.url.is_empty() {
        return text(
            StatusCode::BAD_REQUEST,
            "missing `url` (e.g. /api/explain?url=http://reviews:9080/)\n",
        );
    }
    let Some(snapshot) = state.config.load() else {
        return text(StatusCode::SERVICE_UNAVAILABLE, "no configuration loaded\n");
    };
    match explain_request(&snapshot, &req) {
        Ok(e) if as_text => text(StatusCode::OK, render(&e)),
        Ok(e) => json_reply(&e),
        Err(err) => text(StatusCode::BAD_REQUEST, format!("{err}\n")),
    }
}
