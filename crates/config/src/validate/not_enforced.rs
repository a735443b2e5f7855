//! "Not enforced yet" warnings: a valid field sluice accepts but does not act on is never silent.

use super::Ctx;

pub(crate) fn warn(_ctx: &mut Ctx<'_>) {}
