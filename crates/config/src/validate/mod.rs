//! Per-object validation: the rules Istio's webhook and CRD schemas apply ([V] and [CRD] in the spec).
//!
//! Cross-object checks (references, conflicts, shadowed rules) live in `crate::analyze`.

mod authentication;
mod authorization_policy;
mod canary;
mod common;
mod destination_rule;
mod gateway;
mod headers;
mod http_policy;
mod http_route;
mod load_balancer;
mod not_enforced;
mod policy_target;
mod service_entry;
mod sidecar;
mod virtual_service;

use sluice_model::{codes, Diagnostic, Resource, Severity, Spec};

pub use common::compile_regex;

/// Collects diagnostics about one object, positioned at the offending field.
pub(crate) struct Ctx<'a> {
    resource: &'a Resource,
    out: &'a mut Vec<Diagnostic>,
}

impl<'a> Ctx<'a> {
    pub(crate) fn new(resource: &'a Resource, out: &'a mut Vec<Diagnostic>) -> Self {
        Ctx { resource, out }
    }

    /// The object being validated.
    pub(crate) fn resource(&self) -> &'a Resource {
        self.resource
    }

    /// A schema error (IST0106) at `field`.
    pub(crate) fn error(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.push(Severity::Error, codes::SCHEMA_VALIDATION, field, message);
    }

    /// A schema warning (IST0106) at `field`.
    pub(crate) fn warn(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.push(Severity::Warning, codes::SCHEMA_VALIDATION, field, message);
    }

    /// A deprecated field (IST0002, an info as in istioctl): it still works.
    pub(crate) fn deprecated(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.push(Severity::Info, codes::DEPRECATED, field, message);
    }

    /// A diagnostic with an explicit severity and code.
    pub(crate) fn push(
        &mut self,
        severity: Severity,
        code: &'static str,
        field: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.out
            .push(self.resource.diag(severity, code, field, message));
    }
}

/// Validates one object on its own; returns its diagnostics (errors reject the config set).
pub fn validate_resource(resource: &Resource) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let mut ctx = Ctx::new(resource, &mut out);
    match &resource.spec {
        Spec::VirtualService(vs) => virtual_service::validate(&mut ctx, vs),
        Spec::DestinationRule(dr) => destination_rule::validate(&mut ctx, dr),
        Spec::Gateway(gw) => gateway::validate(&mut ctx, gw),
        Spec::ServiceEntry(se) => service_entry::validate_service_entry(&mut ctx, se),
        Spec::WorkloadEntry(we) => service_entry::validate_workload_entry(&mut ctx, we, "spec"),
        Spec::Sidecar(sc) => sidecar::validate(&mut ctx, sc),
        Spec::AuthorizationPolicy(ap) => authorization_policy::validate(&mut ctx, ap),
        Spec::PeerAuthentication(pa) => authentication::validate_peer_authentication(&mut ctx, pa),
        Spec::RequestAuthentication(ra) => {
            authentication::validate_request_authentication(&mut ctx, ra)
        }
        Spec::Canary(c) => canary::validate(&mut ctx, c),
    }
    not_enforced::warn_all(&mut ctx);
    out
}
