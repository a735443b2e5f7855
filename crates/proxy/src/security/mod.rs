//! The security stages of a request or a connection: which inbound port it reached (a Sidecar
//! `ingress` listener and its PeerAuthentication mode), request authentication (JWT) and
//! authorization (AuthorizationPolicy, evaluated by `sluice_config::authz`).

mod authenticate;
mod authorize;
mod inbound_port;

pub use authenticate::Authn;
pub(crate) use authorize::{authorize_tcp, check_http, ConnFacts};
pub use inbound_port::InboundTarget;
pub(crate) use inbound_port::{app_and_mode, inbound_pool, inbound_port};
