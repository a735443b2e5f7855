//! `Canary` (rollouts.sluice.dev): fields checked on their own, as a CRD schema and webhook
//! would. References to the VirtualService and subsets are checked by `analyze`.

use sluice_model::Canary;

use super::Ctx;

pub(super) fn validate(ctx: &mut Ctx<'_>, spec: &Canary) {
    let (_, errors) = crate::canary::settings::resolve(spec);
    for e in errors {
        ctx.error(e.field, e.message);
    }
}
