//! One `jwtRules[]` entry of a RequestAuthentication, as plain data.

use std::time::Duration;

/// Istio's default JWKS fetch timeout (`JWTRule.timeout`).
pub const DEFAULT_JWKS_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the signing keys of a rule come from.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum JwksSource {
    /// A JWK set given inline (`jwks`).
    Inline(String),
    /// `jwksUri`: an `http(s)://` URL, or a `file://` URL or plain path (file mode).
    Uri(String),
    /// Neither given: `<issuer>/.well-known/openid-configuration` names the `jwks_uri`.
    Discovery,
}

/// A header that may carry a token (`fromHeaders[]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JwtHeader {
    /// Header name (case-insensitive).
    pub name: String,
    /// Text before the token, case-sensitive (e.g. `"Bearer "`); empty means the whole value.
    pub prefix: String,
}

/// A claim copied into a request header (`outputClaimToHeaders[]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimToHeader {
    /// Header to set.
    pub header: String,
    /// Claim name; `a.b` walks into nested objects.
    pub claim: String,
}

/// One JWT rule: which issuer, where its keys are, where its tokens travel, what is output.
#[derive(Clone, Debug)]
pub struct JwtRule {
    /// Required `iss`; empty accepts any issuer.
    pub issuer: String,
    /// Accepted `aud` values; empty skips the audience check.
    pub audiences: Vec<String>,
    /// Where the signing keys come from.
    pub jwks: JwksSource,
    /// Headers that may carry the token.
    pub from_headers: Vec<JwtHeader>,
    /// Query parameters that may carry the token.
    pub from_params: Vec<String>,
    /// Cookies that may carry the token.
    pub from_cookies: Vec<String>,
    /// Header set to the verified payload (base64url JSON).
    pub output_payload_to_header: Option<String>,
    /// Keep the token in the request sent upstream.
    pub forward_original_token: bool,
    /// Claims copied into headers.
    pub output_claim_to_headers: Vec<ClaimToHeader>,
    /// JWKS fetch timeout.
    pub timeout: Duration,
    /// Claims split on spaces into lists, besides `scope` and `permission`.
    pub space_delimited_claims: Vec<String>,
}

impl JwtRule {
    /// A rule for `issuer` with keys from `jwks` and every other field at Istio's default.
    pub fn new(issuer: impl Into<String>, jwks: JwksSource) -> Self {
        Self {
            issuer: issuer.into(),
            audiences: Vec::new(),
            jwks,
            from_headers: Vec::new(),
            from_params: Vec::new(),
            from_cookies: Vec::new(),
            output_payload_to_header: None,
            forward_original_token: false,
            output_claim_to_headers: Vec::new(),
            timeout: DEFAULT_JWKS_TIMEOUT,
            space_delimited_claims: Vec::new(),
        }
    }

    /// True when no location is configured, so Envoy's defaults apply
    /// (`Authorization: Bearer` and `?access_token=`).
    pub fn uses_default_locations(&self) -> bool {
        self.from_headers.is_empty() && self.from_params.is_empty() && self.from_cookies.is_empty()
    }
}

impl Default for JwtRule {
    fn default() -> Self {
        Self::new(String::new(), JwksSource::Discovery)
    }
}
