//! `/api/reload`: the outcome of the last config reload — the active version with its
//! diagnostics, and the last rejected reload if it came after it.

use serde::Serialize;
use sluice_model::{Diagnostic, Severity};
use sluice_proxy::RejectedReload;

use crate::AdminState;

/// The active config as the dashboard shows it.
#[derive(Debug, Serialize)]
struct Active<'a> {
    version: u64,
    /// When it was published (Unix ms).
    published_at_ms: Option<u64>,
    errors: usize,
    warnings: usize,
    diagnostics: &'a [Diagnostic],
}

/// The `/api/reload` document.
#[derive(Debug, Serialize)]
struct ReloadStatus<'a> {
    /// `accepted` (the newest attempt is active), `rejected` (the newest attempt was refused
    /// and an older config stays in force) or `none` (nothing loaded yet).
    status: &'static str,
    active: Option<Active<'a>>,
    last_rejected: Option<&'a RejectedReload>,
}

fn count(diagnostics: &[Diagnostic], severity: Severity) -> usize {
    diagnostics
        .iter()
        .filter(|d| d.severity == severity)
        .count()
}

/// The `/api/reload` document.
pub(crate) fn reload_status(state: &AdminState) -> serde_json::Value {
    let snap = state.config.load();
    let rejected = state.config.last_rejected();
    let active = snap.as_ref().map(|s| Active {
        version: s.version,
        published_at_ms: state.config.published_at_unix_ms(),
        errors: count(&s.diagnostics, Severity::Error),
        warnings: count(&s.diagnostics, Severity::Warning),
        diagnostics: &s.diagnostics,
    });
    // Versions are handed out per attempt, so a rejection newer than the active snapshot has
    // the larger number; an older one was superseded by a later good reload.
    let status = match (&active, &rejected) {
        (None, _) => "none",
        (Some(a), Some(r)) if r.version > a.version => "rejected",
        (Some(_), _) => "accepted",
    };
    serde_json::to_value(ReloadStatus {
        status,
        active,
        last_rejected: rejected.as_deref(),
    })
    .unwrap_or_default()
}

/// `POST /api/reload`: reloads now, then answers the new status (`200` when the reload was
/// accepted, `409` with its diagnostics when it was rejected; the previous config stays).
pub(crate) async fn reload_now(state: &AdminState) -> http::Response<crate::AdminBody> {
    let Some(reload) = &state.reload_now else {
        return crate::text(
            http::StatusCode::NOT_IMPLEMENTED,
            "this proxy cannot reload on request\n",
        );
    };
    let (status, outcome) = match reload().await {
        Ok(version) => (
            http::StatusCode::OK,
            serde_json::json!({"reloaded": true, "version": version}),
        ),
        Err(diagnostics) => (
            http::StatusCode::CONFLICT,
            serde_json::json!({"reloaded": false, "diagnostics": diagnostics}),
        ),
    };
    let mut body = reload_status(state);
    if let (Some(doc), Some(o)) = (body.as_object_mut(), outcome.as_object()) {
        doc.extend(o.clone());
    }
    let mut r = crate::json_reply(&body);
    *r.status_mut() = status;
    r
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::sync::Arc;

    use sluice_model::codes;

    use super::*;
    use crate::tests::canary_snapshot;

    fn state() -> AdminState {
        AdminState::new(sluice_proxy::ConfigHandle::new(), Arc::new(|| Ok(())))
    }

    #[test]
    fn nothing_loaded() {
        let s = state();
        let v = reload_status(&s);
        assert_eq!(v["status"], "none");
        assert!(v["active"].is_null() && v["last_rejected"].is_null());
    }

    #[test]
    fn accepted_then_rejected_then_accepted() {
        let s = state();
        s.config.publish(Arc::new(canary_snapshot(5)));
        let v = reload_status(&s);
        assert_eq!(v["status"], "accepted");
        assert_eq!(v["active"]["version"], 5);
        assert!(v["active"]["published_at_ms"].as_u64().unwrap() > 0);
        assert_eq!(v["active"]["errors"], 0);

        s.config.reject(
            6,
            vec![Diagnostic::error(codes::INTERNAL, "weights do not parse")],
        );
        let v = reload_status(&s);
        assert_eq!(v["status"], "rejected");
        assert_eq!(v["active"]["version"], 5);
        assert_eq!(v["last_rejected"]["version"], 6);
        let d = &v["last_rejected"]["diagnostics"][0];
        assert_eq!(d["severity"], "error");
        assert_eq!(d["message"], "weights do not parse");

        // A later good reload supersedes the rejection; it is still reported.
        s.config.publish(Arc::new(canary_snapshot(7)));
        let v = reload_status(&s);
        assert_eq!(v["status"], "accepted");
        assert_eq!(v["last_rejected"]["version"], 6);
    }
}
