//! Why a token was refused, worded as Envoy's jwt_authn words it in the response body.

use http::StatusCode;

/// A reason to refuse a request that carried a token; `Display` is Envoy's exact text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JwtFailure {
    /// `exp` (plus the clock skew) is in the past.
    #[error("Jwt is expired")]
    Expired,
    /// `nbf` (minus the clock skew) is in the future.
    #[error("Jwt not yet valid")]
    NotYetValid,
    /// Not three non-empty sections separated by dots.
    #[error("Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections")]
    BadFormat,
    /// Header section is not base64url.
    #[error("Jwt header is an invalid Base64url encoded")]
    HeaderBadBase64,
    /// Header section is not a JSON object.
    #[error("Jwt header is an invalid JSON")]
    HeaderBadJson,
    /// Header has no string `alg`.
    #[error("Jwt header [alg] field is required and must be a string")]
    HeaderBadAlg,
    /// `alg` names an algorithm JWT verification does not know.
    #[error("Jwt header [alg] is not supported")]
    HeaderAlgNotImplemented,
    /// `kid` is present but not a string.
    #[error("Jwt header [kid] field is not a string")]
    HeaderBadKid,
    /// Payload section is not base64url.
    #[error("Jwt payload is an invalid Base64url encoded")]
    PayloadBadBase64,
    /// Payload section is not a JSON object.
    #[error("Jwt payload is an invalid JSON")]
    PayloadBadJson,
    /// `iss` is not a string.
    #[error("Jwt payload [iss] field is not a string")]
    IssNotString,
    /// `sub` is not a string.
    #[error("Jwt payload [sub] field is not a string")]
    SubNotString,
    /// `iat` is not a number.
    #[error("Jwt payload [iat] field is not an integer")]
    IatNotInteger,
    /// `iat` is negative or too large.
    #[error("Jwt payload [iat] field is not a positive 64 bit integer")]
    IatOutOfRange,
    /// `nbf` is not a number.
    #[error("Jwt payload [nbf] field is not an integer")]
    NbfNotInteger,
    /// `nbf` is negative or too large.
    #[error("Jwt payload [nbf] field is not a positive 64 bit integer")]
    NbfOutOfRange,
    /// `exp` is not a number.
    #[error("Jwt payload [exp] field is not an integer")]
    ExpNotInteger,
    /// `exp` is negative or too large.
    #[error("Jwt payload [exp] field is not a positive 64 bit integer")]
    ExpOutOfRange,
    /// `jti` is not a string.
    #[error("Jwt payload [jti] field is not a string")]
    JtiNotString,
    /// `aud` is neither a string nor a list of strings.
    #[error("Jwt payload [aud] field is not a string or string list")]
    AudNotString,
    /// Signature section is not base64url.
    #[error("Jwt signature is an invalid Base64url encoded")]
    SignatureBadBase64,
    /// No rule for the token's `iss` at the location it was found in.
    #[error("Jwt issuer is not configured")]
    UnknownIssuer,
    /// None of the token's audiences is accepted (the only 403).
    #[error("Audiences in Jwt are not allowed")]
    AudienceNotAllowed,
    /// A key matched by `kid`/`alg` but the signature does not verify.
    #[error("Jwt verification fails")]
    VerificationFails,
    /// No key of the issuer's set matches the token's `kid` and `alg`.
    #[error("Jwks doesn't have key to match kid or alg from Jwt")]
    KidAlgMismatch,
    /// The issuer's remote key set has not been fetched successfully.
    #[error("Jwks remote fetch is failed")]
    JwksFetchFailed,
}

impl JwtFailure {
    /// 403 for a disallowed audience, 401 otherwise, as Envoy answers.
    pub fn status(self) -> StatusCode {
        if self == JwtFailure::AudienceNotAllowed {
            StatusCode::FORBIDDEN
        } else {
            StatusCode::UNAUTHORIZED
        }
    }

    /// Envoy's response code details: `jwt_authn_access_denied{Jwt_is_expired}`.
    pub fn details(self) -> String {
        let text = self.to_string();
        let mut out = String::with_capacity(text.len() + 25);
        out.push_str("jwt_authn_access_denied{");
        // Envoy replaces whitespace so access log fields stay one word.
        out.extend(
            text.chars()
                .map(|c| if c.is_whitespace() { '_' } else { c }),
        );
        out.push('}');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn details_replace_spaces() {
        assert_eq!(
            JwtFailure::Expired.details(),
            "jwt_authn_access_denied{Jwt_is_expired}"
        );
        assert_eq!(
            JwtFailure::KidAlgMismatch.details(),
            "jwt_authn_access_denied{Jwks_doesn't_have_key_to_match_kid_or_alg_from_Jwt}"
        );
    }

    #[test]
    fn only_audience_is_forbidden() {
        assert_eq!(
            JwtFailure::AudienceNotAllowed.status(),
            StatusCode::FORBIDDEN
        );
        assert_eq!(JwtFailure::Expired.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            JwtFailure::JwksFetchFailed.status(),
            StatusCode::UNAUTHORIZED
        );
    }
}
