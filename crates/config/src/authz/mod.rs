//! Security policy compiled for this proxy: AuthorizationPolicy evaluation (pure, table-tested
//! like `route()`), PeerAuthentication modes, RequestAuthentication JWT rules and the Sidecar's
//! ingress listeners.

pub mod attachment;
pub mod attributes;
pub mod condition_key;
pub mod evaluate;
pub mod identity;
pub mod jwt_rules;
pub mod peer_authentication;
pub mod policy;
mod rule;
pub mod security;
pub mod sidecar_ingress;
pub mod value_match;

pub use attributes::{HttpAttributes, RequestAttributes, VerifiedJwt};
pub use evaluate::{evaluate, AuthzPolicies, Decision, ShadowResult};
pub use jwt_rules::{ClaimToHeaderSpec, JwtHeaderSpec, JwtRuleSpec};
pub use peer_authentication::{MtlsMode, PeerAuthn};
pub use policy::{Action, CompiledPolicy};
pub use security::Security;
pub use sidecar_ingress::{DefaultEndpoint, SidecarIngress};
