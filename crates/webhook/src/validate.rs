//! `/validate`: the validating webhook for networking.istio.io and security.istio.io objects.
//! It runs the per-object checks the Kubernetes source applies before using an object (schema
//! and Istio-webhook rules; cross-object analysis is left to `sluice analyze`, as Istio leaves it
//! to `istioctl analyze`), so what it accepts is what the proxies will apply.

use kube::core::admission::{AdmissionResponse, Operation};
use sluice_config::is_blocking;
use sluice_config::validate::validate_resource;
use sluice_kube::source::{admit, decode_object};
use sluice_model::{Diagnostic, Kind, Severity};

use crate::review::Request;

/// Groups whose kinds are validated.
pub const GROUPS: [&str; 2] = ["networking.istio.io", "security.istio.io"];

/// The answer to one review: refused with every blocking problem (`field: reason`), or allowed
/// with the warnings.
pub fn validate(req: &Request) -> AdmissionResponse {
    let t = &req.typed;
    if !GROUPS.contains(&req.group()) || t.operation == Operation::Delete {
        return req.allow();
    }
    let (Some(kind), Some(object)) = (Kind::from_name(&t.kind.kind), req.object.clone()) else {
        // Kinds sluice does not read (EnvoyFilter, Telemetry, …) are not its to refuse.
        return req.allow();
    };
    let parsed = decode_object(object, &req.api_version(), kind);
    let warnings: Vec<String> = parsed
        .resources
        .iter()
        .flat_map(validate_resource)
        .filter(|d| d.severity == Severity::Warning && !is_blocking(d))
        .map(|d| describe(&d))
        .collect();
    let admission = admit(parsed);
    if !admission.rejected.is_empty() {
        let reasons: Vec<String> = admission.rejected.iter().map(describe).collect();
        return req
            .allow()
            .deny(format!("configuration is invalid: {}", reasons.join("; ")));
    }
    let mut response = req.allow();
    if !warnings.is_empty() {
        response.warnings = Some(warnings);
    }
    response
}

/// `field: message`, or the message alone for an object-level problem.
fn describe(d: &Diagnostic) -> String {
    match &d.field {
        Some(field) => format!("{field}: {}", d.message),
        None => d.message.clone(),
    }
}
