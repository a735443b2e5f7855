//! A JWK set turned into verification keys once, and the signature check against it.

use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::{Map, Value};

use crate::failure::JwtFailure;
use crate::token::{Alg, ParsedJwt, LENIENT_URL_SAFE};

/// Why a JWK set gave no usable key.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JwksError {
    /// Not JSON.
    #[error("Jwks is an invalid JSON")]
    InvalidJson,
    /// No `keys` array.
    #[error("Jwks does not have [keys] field")]
    NoKeys,
    /// Every key was malformed or of an unsupported type.
    #[error("Jwks doesn't have any valid public key")]
    NoValidKeys,
}

/// Key families; a key only verifies algorithms of its own family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    Rsa,
    Ec,
    Hmac,
    Okp,
}

struct Key {
    kid: Option<String>,
    alg: Option<String>,
    family: Family,
    key: DecodingKey,
}

/// The parsed keys of one issuer.
pub(crate) struct KeySet {
    keys: Vec<Key>,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySet")
            .field("keys", &self.keys.len())
            .finish()
    }
}

impl KeySet {
    /// A set with no keys: every token is refused for want of a matching key.
    pub fn empty() -> Self {
        Self { keys: Vec::new() }
    }

    /// Parses a JWK set; malformed keys are skipped, as Envoy skips them.
    pub fn parse(json: &str) -> Result<Self, JwksError> {
        let doc: Value = serde_json::from_str(json).map_err(|_| JwksError::InvalidJson)?;
        let Some(Value::Array(items)) = doc.get("keys") else {
            return Err(JwksError::NoKeys);
        };
        let keys: Vec<Key> = items
            .iter()
            .filter_map(|item| item.as_object().and_then(parse_key))
            .collect();
        if keys.is_empty() {
            return Err(JwksError::NoValidKeys);
        }
        Ok(Self { keys })
    }

    /// Number of usable keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Envoy's key search: a key is a candidate unless its `kid` or `alg` differ from the
    /// token's (when both sides name one); any candidate that verifies wins.
    pub fn verify(&self, jwt: &ParsedJwt<'_>) -> Result<(), JwtFailure> {
        let mut matched = false;
        // The crate takes the signature as base64url without padding.
        let signature = LENIENT_URL_SAFE.encode(&jwt.signature);
        for key in &self.keys {
            if let (Some(token_kid), Some(key_kid)) = (jwt.kid.as_deref(), key.kid.as_deref()) {
                if !token_kid.is_empty() && !key_kid.is_empty() && token_kid != key_kid {
                    continue;
                }
            }
            if key
                .alg
                .as_deref()
                .is_some_and(|alg| !alg.is_empty() && alg != jwt.alg_name)
            {
                continue;
            }
            matched = true;
            if signature_holds(key, jwt, &signature) {
                return Ok(());
            }
        }
        Err(if matched {
            JwtFailure::VerificationFails
        } else {
            JwtFailure::KidAlgMismatch
        })
    }
}

fn signature_holds(key: &Key, jwt: &ParsedJwt<'_>, signature: &str) -> bool {
    let Some((family, algorithm)) = crate_algorithm(jwt.alg) else {
        // ES512 is valid for Envoy but ring has no P-521: it cannot be verified here.
        return false;
    };
    // The crate trusts its caller to pair key and algorithm families; a mismatch would
    // reach an unreachable!() inside it.
    if family != key.family {
        return false;
    }
    jsonwebtoken::crypto::verify(signature, jwt.signed.as_bytes(), &key.key, algorithm)
        .unwrap_or(false)
}

fn crate_algorithm(alg: Alg) -> Option<(Family, Algorithm)> {
    Some(match alg {
        Alg::Hs256 => (Family::Hmac, Algorithm::HS256),
        Alg::Hs384 => (Family::Hmac, Algorithm::HS384),
        Alg::Hs512 => (Family::Hmac, Algorithm::HS512),
        Alg::Rs256 => (Family::Rsa, Algorithm::RS256),
        Alg::Rs384 => (Family::Rsa, Algorithm::RS384),
        Alg::Rs512 => (Family::Rsa, Algorithm::RS512),
        Alg::Ps256 => (Family::Rsa, Algorithm::PS256),
        Alg::Ps384 => (Family::Rsa, Algorithm::PS384),
        Alg::Ps512 => (Family::Rsa, Algorithm::PS512),
        Alg::Es256 => (Family::Ec, Algorithm::ES256),
        Alg::Es384 => (Family::Ec, Algorithm::ES384),
        Alg::EdDsa => (Family::Okp, Algorithm::EdDSA),
        Alg::Es512 => return None,
    })
}

/// One JWK; `None` when Envoy's key parser would reject it.
fn parse_key(jwk: &Map<String, Value>) -> Option<Key> {
    let string = |name: &str| jwk.get(name).and_then(Value::as_str);
    let kid = string("kid").map(str::to_owned);
    let alg = string("alg").map(str::to_owned);
    let alg_starts = |prefixes: &[&str]| {
        alg.as_deref()
            .is_none_or(|a| prefixes.iter().any(|p| a.starts_with(p)))
    };
    let (family, key) = match string("kty")? {
        "RSA" if alg_starts(&["RS", "PS"]) => {
            let n = LENIENT_URL_SAFE.decode(string("n")?).ok()?;
            let e = LENIENT_URL_SAFE.decode(string("e")?).ok()?;
            if n.is_empty() || e.is_empty() {
                return None;
            }
            (Family::Rsa, DecodingKey::from_rsa_raw_components(&n, &e))
        }
        "EC" if alg_starts(&["ES"]) => {
            let x = LENIENT_URL_SAFE.decode(string("x")?).ok()?;
            let y = LENIENT_URL_SAFE.decode(string("y")?).ok()?;
            let size = match string("crv").unwrap_or("P-256") {
                "P-256" => 32,
                "P-384" => 48,
                "P-521" => 66,
                _ => return None,
            };
            if x.len() != size || y.len() != size {
                return None;
            }
            // ring reads an uncompressed SEC1 point.
            let mut point = Vec::with_capacity(1 + 2 * size);
            point.push(4);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            (Family::Ec, DecodingKey::from_ec_der(&point))
        }
        "oct" if alg_starts(&["HS"]) => {
            let secret = LENIENT_URL_SAFE.decode(string("k")?).ok()?;
            (Family::Hmac, DecodingKey::from_secret(&secret))
        }
        "OKP" if alg.as_deref().is_none_or(|a| a == "EdDSA") => {
            if string("crv")? != "Ed25519" {
                return None;
            }
            let x = LENIENT_URL_SAFE.decode(string("x")?).ok()?;
            if x.len() != 32 {
                return None;
            }
            (Family::Okp, DecodingKey::from_ed_der(&x))
        }
        _ => return None,
    };
    Some(Key {
        kid,
        alg,
        family,
        key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_level_errors() {
        assert_eq!(KeySet::parse("{").unwrap_err(), JwksError::InvalidJson);
        assert_eq!(KeySet::parse("{}").unwrap_err(), JwksError::NoKeys);
        assert_eq!(
            KeySet::parse(r#"{"keys":[{"kty":"RSA"},{"kty":"XYZ"},7]}"#).unwrap_err(),
            JwksError::NoValidKeys
        );
    }

    #[test]
    fn keys_of_each_type_parse() {
        let json = r#"{"keys":[
            {"kty":"RSA","kid":"r","n":"AQAB","e":"AQAB"},
            {"kty":"EC","crv":"P-256","x":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","y":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"},
            {"kty":"oct","k":"c2VjcmV0"},
            {"kty":"OKP","crv":"Ed25519","x":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"},
            {"kty":"RSA","alg":"ES256","n":"AQAB","e":"AQAB"},
            {"kty":"EC","crv":"P-256","x":"AAAA","y":"AAAA"}
        ]}"#;
        assert_eq!(KeySet::parse(json).unwrap().len(), 4);
    }
}
