//! Everything security-related compiled for this proxy, published on the snapshot.

use sluice_model::{Resource, Spec};

use super::attachment::policy_applies;
use super::evaluate::AuthzPolicies;
use super::identity::TrustBundle;
use super::jwt_rules::JwtRuleSpec;
use super::peer_authentication::PeerAuthn;
use super::policy::CompiledPolicy;
use super::sidecar_ingress::SidecarIngress;
use crate::proxy::ProxyConfig;

/// The security config of this proxy.
#[derive(Debug, Clone, Default)]
pub struct Security {
    /// AuthorizationPolicies that apply here.
    pub authz: AuthzPolicies,
    /// PeerAuthentication modes.
    pub peer_authentication: PeerAuthn,
    /// JWT rules of the RequestAuthentications that apply here, sorted by issuer.
    pub jwt_rules: Vec<JwtRuleSpec>,
    /// Ingress listeners of the Sidecar that applies here.
    pub sidecar_ingress: Vec<SidecarIngress>,
    /// The Sidecar's `inboundConnectionPool`: limits on the inbound hop to the app, for every
    /// inbound port whose ingress listener sets no `connectionPool` of its own.
    pub inbound_pool: Option<crate::policy::PoolLimits>,
}

impl Security {
    /// The connection pool of the inbound hop to the app on `port`, as Istio picks it for the
    /// inbound cluster: the port's ingress `connectionPool`, else `inboundConnectionPool`.
    pub fn inbound_pool_for(&self, port: u16) -> Option<&crate::policy::PoolLimits> {
        self.sidecar_ingress
            .iter()
            .filter(|i| i.port == port)
            .find_map(|i| i.connection_pool.as_ref())
            .or(self.inbound_pool.as_ref())
    }
}

/// The AuthorizationPolicies of `ordered` (precedence order) that apply to `proxy`, compiled.
pub fn authz_policies(ordered: &[&Resource], proxy: &ProxyConfig) -> AuthzPolicies {
    let bundle = TrustBundle {
        domains: std::iter::once(proxy.trust_domain.as_str())
            .chain(proxy.trust_domain_aliases.iter().map(String::as_str))
            .collect(),
    };
    AuthzPolicies::new(ordered.iter().filter_map(|r| match &r.spec {
        Spec::AuthorizationPolicy(ap) => {
            let targeted = ap.target_ref.is_some() || !ap.target_refs.is_empty();
            if policy_applies(&r.metadata, ap.selector.as_ref(), targeted, proxy) {
                CompiledPolicy::compile(&r.metadata, ap, &bundle)
            } else {
                None
            }
        }
        _ => None,
    }))
}
