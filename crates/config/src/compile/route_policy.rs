//! VirtualService rule fields → [`RoutePolicy`]: timeout, retries (Istio's default when unset),
//! fault, mirrors, rewrite, header operations, CORS.

use std::sync::Arc;

use sluice_model::{Headers, HttpRoute, Resource};

use super::http_route::RuleContext;
use super::Compiler;
use crate::policy::{HeaderPolicy, RoutePolicy};

impl Compiler<'_> {
    /// The policy of one rule.
    pub(crate) fn route_policy(
        &mut self,
        _r: &Resource,
        _rule_index: usize,
        _rule: &HttpRoute,
        _ctx: RuleContext<'_>,
    ) -> Arc<RoutePolicy> {
        Arc::new(RoutePolicy::default())
    }

    /// The policy of the default route of a service without a VirtualService.
    pub(crate) fn default_route_policy(&self) -> Arc<RoutePolicy> {
        Arc::new(RoutePolicy::default())
    }
}

/// Compiles `headers` operations (route level or per destination).
pub(crate) fn header_policy(_headers: Option<&Headers>) -> HeaderPolicy {
    HeaderPolicy::default()
}
