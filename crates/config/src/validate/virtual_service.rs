//! Webhook/CRD validation of `VirtualService`.

use sluice_model::VirtualService;

use super::Ctx;

pub(crate) fn validate(_ctx: &mut Ctx<'_>, _spec: &VirtualService) {}
