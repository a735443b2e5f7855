//! JWT request authentication: Istio's RequestAuthentication `jwtRules` enforced the way
//! Envoy's `jwt_authn` filter enforces them.
//!
//! A [`JwtAuthenticator`] holds the rules that apply to one proxy and checks requests
//! synchronously; it reads keys from a [`JwksCache`], which parses inline key sets once and
//! fetches remote ones in the background, swapping them in atomically, so no request waits
//! for the network. Failure texts, status codes, the `www-authenticate` challenge and the
//! response code details are Envoy's.

mod authenticator;
mod cache;
mod claims;
mod extract;
mod failure;
mod fetch;
mod key_set;
mod outcome;
mod outputs;
mod rule;
mod slot;
mod token;

pub use authenticator::{JwtAuthenticator, CLOCK_SKEW};
pub use cache::{JwksCache, JwksSourceStatus, JWKS_REFRESH_INTERVAL, JWKS_RETRY_INTERVAL};
pub use failure::JwtFailure;
pub use fetch::FetchError;
pub use key_set::JwksError;
pub use outcome::{AuthnOutcome, Rejection, VerifiedToken};
pub use rule::{ClaimToHeader, JwksSource, JwtHeader, JwtRule, DEFAULT_JWKS_TIMEOUT};
