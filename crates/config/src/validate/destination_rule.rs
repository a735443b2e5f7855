//! Webhook/CRD validation of `DestinationRule`.

use sluice_model::DestinationRule;

use super::Ctx;

pub(crate) fn validate(_ctx: &mut Ctx<'_>, _spec: &DestinationRule) {}
