//! Webhook/CRD validation of `Gateway`.

use sluice_model::Gateway;

use super::Ctx;

pub(crate) fn validate(_ctx: &mut Ctx<'_>, _spec: &Gateway) {}
