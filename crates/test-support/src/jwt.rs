//! Signed JWTs for tests: an ES256 key, its JWKS, and tokens with any claims (Istio's tasks use
//! the `testing@secure.istio.io` sample tokens; these are made the same way with a test key).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Value};

/// The issuer and subject of Istio's sample tokens.
pub const ISTIO_ISSUER: &str = "testing@secure.istio.io";

/// An ES256 signing key with a key id.
pub struct JwtSigner {
    pair: EcdsaKeyPair,
    kid: String,
}

impl JwtSigner {
    /// A fresh P-256 key named `kid`.
    pub fn new(kid: &str) -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        JwtSigner {
            pair,
            kid: kid.to_string(),
        }
    }

    /// The public key set (`{"keys": [...]}`) as JSON text, for `jwks:` or a JWKS server.
    pub fn jwks(&self) -> String {
        let point = self.pair.public_key().as_ref();
        json!({"keys": [{
            "kty": "EC",
            "crv": "P-256",
            "alg": "ES256",
            "kid": self.kid,
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        }]})
        .to_string()
    }

    /// A token carrying `claims`.
    pub fn sign(&self, claims: &Value) -> String {
        let header = json!({"alg": "ES256", "kid": self.kid, "typ": "JWT"});
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let sig = self
            .pair
            .sign(&SystemRandom::new(), input.as_bytes())
            .unwrap();
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
    }

    /// Istio's sample token shape (`iss` = `sub` = testing@secure.istio.io, far expiry), with
    /// `extra` claims merged in.
    pub fn istio_sample(&self, extra: Value) -> String {
        let mut claims = json!({
            "iss": ISTIO_ISSUER,
            "sub": ISTIO_ISSUER,
            "exp": 4_685_989_700u64,
            "iat": 1_532_389_700u64,
            "foo": "bar",
        });
        if let (Some(c), Some(e)) = (claims.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                c.insert(k.clone(), v.clone());
            }
        }
        self.sign(&claims)
    }
}
