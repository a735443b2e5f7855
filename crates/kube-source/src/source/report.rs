//! Reporting invalid objects: always a log line per problem, and a Kubernetes Event on the
//! object when enabled (failures, e.g. missing RBAC, are logged at debug and otherwise ignored).

use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::Client;

use super::state::Report;

/// Longest Event note the API accepts.
const MAX_NOTE: usize = 1024;

/// Where reports go.
#[derive(Clone)]
pub(crate) struct Reports {
    recorder: Option<Recorder>,
}

impl Reports {
    /// Logs only, or logs and publishes Events as `instance`.
    pub fn new(client: Option<Client>, instance: &str) -> Reports {
        Reports {
            recorder: client.map(|c| {
                Recorder::new(
                    c,
                    Reporter {
                        controller: "sluice".into(),
                        instance: Some(instance.to_string()).filter(|i| !i.is_empty()),
                    },
                )
            }),
        }
    }

    /// Logs the report and, when enabled, publishes it as a Warning Event in the background.
    pub fn publish(&self, report: Report) {
        let what = format!(
            "{} {}/{}",
            report.reference.kind.as_deref().unwrap_or("?"),
            report.reference.namespace.as_deref().unwrap_or("?"),
            report.reference.name.as_deref().unwrap_or("?")
        );
        for d in &report.diagnostics {
            tracing::error!("{what} is invalid and not applied: {d}");
        }
        let Some(recorder) = self.recorder.clone() else {
            return;
        };
        let note = truncate(
            &report
                .diagnostics
                .iter()
                .map(|d| match &d.field {
                    Some(f) => format!("{f}: {}", d.message),
                    None => d.message.clone(),
                })
                .collect::<Vec<_>>()
                .join("; "),
        );
        let event = Event {
            type_: EventType::Warning,
            reason: "InvalidConfig".into(),
            note: Some(note),
            action: "Validate".into(),
            secondary: None,
        };
        tokio::spawn(async move {
            if let Err(e) = recorder.publish(&event, &report.reference).await {
                tracing::debug!("cannot publish an Event for {what}: {e}");
            }
        });
    }
}

fn truncate(s: &str) -> String {
    if s.len() <= MAX_NOTE {
        return s.to_string();
    }
    let mut end = MAX_NOTE - 3;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

#[cfg(test)]
mod tests {
    #[test]
    fn notes_fit_the_api_limit() {
        let long = "é".repeat(2000);
        let t = super::truncate(&long);
        assert!(t.len() <= super::MAX_NOTE && t.ends_with("..."));
        assert_eq!(super::truncate("short"), "short");
    }
}
