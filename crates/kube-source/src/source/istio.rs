//! Istio objects from the API server: decoding, and the per-object admission that keeps one
//! invalid object from blocking the rest.

use sluice_config::is_blocking;
use sluice_config::validate::validate_resource;
use sluice_model::{decode_value, Diagnostic, Kind, Parsed, Severity, SpanMap};

/// The outcome of checking one object on its own.
#[derive(Debug, Clone, Default)]
pub struct Admission {
    /// What may be applied (empty when the object is rejected).
    pub accepted: Parsed,
    /// The blocking diagnostics that rejected it (empty when accepted).
    pub rejected: Vec<Diagnostic>,
}

/// Decodes one object as served by the API server (apiVersion and kind are set from the watch,
/// since list items may omit them).
pub fn decode_object(mut value: serde_json::Value, api_version: &str, kind: Kind) -> Parsed {
    if let Some(obj) = value.as_object_mut() {
        obj.insert("apiVersion".into(), api_version.into());
        obj.insert("kind".into(), kind.name().into());
        if let Some(meta) = obj.get_mut("metadata").and_then(|m| m.as_object_mut()) {
            meta.remove("managedFields");
        }
    }
    decode_value(value, SpanMap::default(), None)
}

/// Accepts an object when neither decoding nor validation found a blocking error (what Istio's
/// webhook would refuse); otherwise rejects it whole.
pub fn admit(parsed: Parsed) -> Admission {
    let mut rejected: Vec<Diagnostic> = parsed
        .diagnostics
        .iter()
        .filter(|d| is_blocking(d))
        .cloned()
        .collect();
    for r in &parsed.resources {
        rejected.extend(validate_resource(r).into_iter().filter(is_blocking));
    }
    if rejected.is_empty() {
        Admission {
            accepted: parsed,
            rejected,
        }
    } else {
        Admission {
            accepted: Parsed::default(),
            rejected,
        }
    }
}

/// The rejection as non-blocking warnings, so `/config_dump` shows it without blocking reloads.
pub fn as_warnings(rejected: &[Diagnostic]) -> Vec<Diagnostic> {
    rejected
        .iter()
        .map(|d| {
            let mut w = d.clone();
            w.severity = Severity::Warning;
            w.message = format!(
                "not applied (the object is invalid; its last valid version, if any, stays in force): {}",
                d.message
            );
            w
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn valid_objects_are_accepted_and_invalid_rejected() {
        let vs = |weight: i64| {
            json!({"metadata": {"name": "r", "namespace": "default", "resourceVersion": "3",
                "managedFields": [{"manager": "kubectl"}]},
                "spec": {"hosts": ["r"], "http": [{"route": [{"destination": {"host": "r"}, "weight": weight}]}]}})
        };
        let ok = admit(decode_object(
            vs(100),
            "networking.istio.io/v1",
            Kind::VirtualService,
        ));
        assert!(ok.rejected.is_empty());
        assert_eq!(ok.accepted.resources.len(), 1);
        assert_eq!(
            ok.accepted.resources[0].api_version,
            "networking.istio.io/v1"
        );
        let bad = admit(decode_object(
            vs(-5),
            "networking.istio.io/v1",
            Kind::VirtualService,
        ));
        assert!(bad.accepted.resources.is_empty());
        assert!(!bad.rejected.is_empty());
        let w = as_warnings(&bad.rejected);
        assert!(w.iter().all(|d| !is_blocking(d)));
        let wrong_type = admit(decode_object(
            json!({"metadata": {"name": "x"}, "spec": {"hosts": "not-a-list"}}),
            "networking.istio.io/v1beta1",
            Kind::VirtualService,
        ));
        assert!(!wrong_type.rejected.is_empty());
    }
}
