//! `/api/canaries`: the canaries the controller drives, and the operator's commands
//! (`POST /api/canaries/NAME/{promote,abort,pause,resume}`).

use std::future::Future;
use std::pin::Pin;

use http::StatusCode;

use crate::{json_reply, text, AdminBody, AdminState};

/// The outcome of a command: the canary's new status, or the HTTP status and why not.
pub type CommandOutcome<'a> =
    Pin<Box<dyn Future<Output = Result<serde_json::Value, (u16, String)>> + Send + 'a>>;

/// The canary controller as the admin API sees it.
pub trait CanaryApi: Send + Sync {
    /// Every canary's status.
    fn list(&self) -> serde_json::Value;
    /// One canary's status; `name` is `NAME` or `NAMESPACE/NAME`.
    fn get(&self, name: &str) -> Option<serde_json::Value>;
    /// Applies `action` to the canary `name`: its new status, or the HTTP status and why not.
    fn command<'a>(&'a self, name: &'a str, action: &'a str) -> CommandOutcome<'a>;
}

/// `GET /api/canaries` and `GET /api/canaries/NAME`.
pub(crate) fn get(state: &AdminState, path: &str) -> http::Response<AdminBody> {
    let Some(api) = &state.canaries else {
        return json_reply(&serde_json::json!([]));
    };
    let name = path.trim_start_matches("/api/canaries").trim_matches('/');
    if name.is_empty() {
        return json_reply(&api.list());
    }
    match api.get(name) {
        Some(s) => json_reply(&s),
        None => text(StatusCode::NOT_FOUND, format!("no canary `{name}`\n")),
    }
}

/// `POST /api/canaries/NAME/ACTION`.
pub(crate) async fn post(state: &AdminState, path: &str) -> http::Response<AdminBody> {
    let Some(api) = &state.canaries else {
        return text(
            StatusCode::NOT_IMPLEMENTED,
            "this proxy runs no canary controller\n",
        );
    };
    let rest = path.trim_start_matches("/api/canaries/").trim_matches('/');
    let Some((name, action)) = rest.rsplit_once('/') else {
        return text(
            StatusCode::NOT_FOUND,
            "use POST /api/canaries/NAME/{promote,abort,pause,resume}\n",
        );
    };
    match api.command(name, action).await {
        Ok(status) => json_reply(&status),
        Err((code, why)) => text(
            StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST),
            format!("{why}\n"),
        ),
    }
}
