//! Webhook/CRD validation of `ServiceEntry` and `WorkloadEntry`.

use sluice_model::{ServiceEntry, WorkloadEntry};

use super::Ctx;

pub(crate) fn validate_service_entry(_ctx: &mut Ctx<'_>, _spec: &ServiceEntry) {}

pub(crate) fn validate_workload_entry(_ctx: &mut Ctx<'_>, _spec: &WorkloadEntry, _field: &str) {}
