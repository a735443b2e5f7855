//! Parsing a compact JWS the way Envoy's JWT library does, with its checks in its order, so a
//! malformed token is refused with the same text.

use base64::alphabet::URL_SAFE;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use serde_json::{Map, Value};

use crate::failure::JwtFailure;

/// base64url with or without padding, as the JWT library accepts it.
pub(crate) const LENIENT_URL_SAFE: GeneralPurpose = GeneralPurpose::new(
    &URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// Signature algorithms a token may name in `alg`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Alg {
    Hs256,
    Hs384,
    Hs512,
    Rs256,
    Rs384,
    Rs512,
    Ps256,
    Ps384,
    Ps512,
    Es256,
    Es384,
    Es512,
    EdDsa,
}

impl Alg {
    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "HS256" => Alg::Hs256,
            "HS384" => Alg::Hs384,
            "HS512" => Alg::Hs512,
            "RS256" => Alg::Rs256,
            "RS384" => Alg::Rs384,
            "RS512" => Alg::Rs512,
            "PS256" => Alg::Ps256,
            "PS384" => Alg::Ps384,
            "PS512" => Alg::Ps512,
            "ES256" => Alg::Es256,
            "ES384" => Alg::Es384,
            "ES512" => Alg::Es512,
            "EdDSA" => Alg::EdDsa,
            _ => return None,
        })
    }
}

/// A token that passed the format checks; the signature is not verified yet.
#[derive(Debug)]
pub(crate) struct ParsedJwt<'a> {
    /// `header.payload` exactly as sent: the signed bytes.
    pub signed: String,
    /// The payload section as sent (base64url), for `outputPayloadToHeader`.
    pub payload_b64: &'a str,
    /// The signature, decoded.
    pub signature: Vec<u8>,
    /// `alg`, parsed.
    pub alg: Alg,
    /// The `alg` text, compared with a key's `alg`.
    pub alg_name: String,
    /// `kid`, if any.
    pub kid: Option<String>,
    /// The payload object.
    pub payload: Map<String, Value>,
    /// `iss`, if any.
    pub iss: Option<String>,
    /// `sub`, if any.
    pub sub: Option<String>,
    /// 0 when absent.
    pub nbf: u64,
    /// 0 when absent (no expiry).
    pub exp: u64,
    /// `aud` as a list.
    pub audiences: Vec<String>,
}

impl<'a> ParsedJwt<'a> {
    /// Parses `token`, failing with the first problem Envoy would report.
    pub fn parse(token: &'a str) -> Result<Self, JwtFailure> {
        // Empty sections are skipped before counting, as the library splits.
        let mut sections = token.split('.').filter(|s| !s.is_empty());
        let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) = (
            sections.next(),
            sections.next(),
            sections.next(),
            sections.next(),
        ) else {
            return Err(JwtFailure::BadFormat);
        };

        let header_json = LENIENT_URL_SAFE
            .decode(header_b64)
            .map_err(|_| JwtFailure::HeaderBadBase64)?;
        let header: Map<String, Value> =
            serde_json::from_slice(&header_json).map_err(|_| JwtFailure::HeaderBadJson)?;
        let alg_name = match header.get("alg") {
            Some(Value::String(alg)) => alg.clone(),
            _ => return Err(JwtFailure::HeaderBadAlg),
        };
        let alg = Alg::parse(&alg_name).ok_or(JwtFailure::HeaderAlgNotImplemented)?;
        let kid = optional_string(&header, "kid").map_err(|()| JwtFailure::HeaderBadKid)?;

        let payload_json = LENIENT_URL_SAFE
            .decode(payload_b64)
            .map_err(|_| JwtFailure::PayloadBadBase64)?;
        let payload: Map<String, Value> =
            serde_json::from_slice(&payload_json).map_err(|_| JwtFailure::PayloadBadJson)?;
        let iss = optional_string(&payload, "iss").map_err(|()| JwtFailure::IssNotString)?;
        let sub = optional_string(&payload, "sub").map_err(|()| JwtFailure::SubNotString)?;
        time_claim(
            &payload,
            "iat",
            JwtFailure::IatNotInteger,
            JwtFailure::IatOutOfRange,
        )?;
        let nbf = time_claim(
            &payload,
            "nbf",
            JwtFailure::NbfNotInteger,
            JwtFailure::NbfOutOfRange,
        )?;
        let exp = time_claim(
            &payload,
            "exp",
            JwtFailure::ExpNotInteger,
            JwtFailure::ExpOutOfRange,
        )?;
        optional_string(&payload, "jti").map_err(|()| JwtFailure::JtiNotString)?;
        let audiences = audiences(&payload)?;

        let signature = LENIENT_URL_SAFE
            .decode(signature_b64)
            .map_err(|_| JwtFailure::SignatureBadBase64)?;

        Ok(Self {
            signed: format!("{header_b64}.{payload_b64}"),
            payload_b64,
            signature,
            alg,
            alg_name,
            kid,
            payload,
            iss,
            sub,
            nbf,
            exp,
            audiences,
        })
    }

    /// Envoy's time check: `nbf` first, then `exp`, both widened by `skew` seconds.
    pub fn check_time(&self, now: u64, skew: u64) -> Result<(), JwtFailure> {
        if now.saturating_add(skew) < self.nbf {
            return Err(JwtFailure::NotYetValid);
        }
        if self.exp != 0 && now > self.exp.saturating_add(skew) {
            return Err(JwtFailure::Expired);
        }
        Ok(())
    }
}

/// `Ok(None)` when absent, `Err` when present but not a string.
fn optional_string(map: &Map<String, Value>, key: &str) -> Result<Option<String>, ()> {
    match map.get(key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(()),
    }
}

/// A numeric date: any JSON number, truncated toward zero, in `0..u64::MAX`.
fn time_claim(
    map: &Map<String, Value>,
    key: &str,
    not_integer: JwtFailure,
    out_of_range: JwtFailure,
) -> Result<u64, JwtFailure> {
    let Some(value) = map.get(key) else {
        return Ok(0);
    };
    let Value::Number(number) = value else {
        return Err(not_integer);
    };
    if let Some(n) = number.as_u64() {
        return Ok(n);
    }
    match number.as_f64() {
        // The library reads numbers as doubles and truncates them.
        Some(f) if (0.0..u64::MAX as f64).contains(&f) => Ok(f as u64),
        _ => Err(out_of_range),
    }
}

/// `aud` as a list: a string is a list of one; absent is empty.
fn audiences(payload: &Map<String, Value>) -> Result<Vec<String>, JwtFailure> {
    match payload.get("aud") {
        None => Ok(Vec::new()),
        Some(Value::String(aud)) => Ok(vec![aud.clone()]),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                Value::String(aud) => Ok(aud.clone()),
                _ => Err(JwtFailure::AudNotString),
            })
            .collect(),
        Some(_) => Err(JwtFailure::AudNotString),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(json: &str) -> String {
        LENIENT_URL_SAFE.encode(json)
    }

    fn token(header: &str, payload: &str) -> String {
        format!("{}.{}.c2ln", b64(header), b64(payload))
    }

    fn fails(token: &str) -> JwtFailure {
        match ParsedJwt::parse(token) {
            Err(failure) => failure,
            Ok(jwt) => panic!("parsed {jwt:?}"),
        }
    }

    #[test]
    fn format_and_sections() {
        assert_eq!(fails("abc"), JwtFailure::BadFormat);
        assert_eq!(fails("a.b"), JwtFailure::BadFormat);
        assert_eq!(fails("a.b.c.d"), JwtFailure::BadFormat);
        assert_eq!(fails("a..b"), JwtFailure::BadFormat);
        assert_eq!(fails(""), JwtFailure::BadFormat);
        assert_eq!(fails("!!.b.c"), JwtFailure::HeaderBadBase64);
        assert_eq!(
            fails(&format!("{}.b.c", b64("[1]"))),
            JwtFailure::HeaderBadJson
        );
    }

    #[test]
    fn header_fields() {
        assert_eq!(fails(&token("{}", "{}")), JwtFailure::HeaderBadAlg);
        assert_eq!(
            fails(&token(r#"{"alg":1}"#, "{}")),
            JwtFailure::HeaderBadAlg
        );
        assert_eq!(
            fails(&token(r#"{"alg":"none"}"#, "{}")),
            JwtFailure::HeaderAlgNotImplemented
        );
        assert_eq!(
            fails(&token(r#"{"alg":"RS256","kid":7}"#, "{}")),
            JwtFailure::HeaderBadKid
        );
    }

    #[test]
    fn payload_fields() {
        let h = r#"{"alg":"RS256"}"#;
        assert_eq!(
            fails(&format!("{}.%%.c2ln", b64(h))),
            JwtFailure::PayloadBadBase64
        );
        assert_eq!(fails(&token(h, "nope")), JwtFailure::PayloadBadJson);
        assert_eq!(fails(&token(h, r#"{"iss":1}"#)), JwtFailure::IssNotString);
        assert_eq!(
            fails(&token(h, r#"{"sub":true}"#)),
            JwtFailure::SubNotString
        );
        assert_eq!(
            fails(&token(h, r#"{"iat":"1"}"#)),
            JwtFailure::IatNotInteger
        );
        assert_eq!(fails(&token(h, r#"{"nbf":-1}"#)), JwtFailure::NbfOutOfRange);
        assert_eq!(
            fails(&token(h, r#"{"exp":"x"}"#)),
            JwtFailure::ExpNotInteger
        );
        assert_eq!(fails(&token(h, r#"{"jti":2}"#)), JwtFailure::JtiNotString);
        assert_eq!(fails(&token(h, r#"{"aud":[1]}"#)), JwtFailure::AudNotString);
        assert_eq!(
            fails(&format!("{}.{}.***", b64(h), b64("{}"))),
            JwtFailure::SignatureBadBase64
        );
    }

    #[test]
    fn fields_are_read() {
        let t = token(
            r#"{"alg":"ES256","kid":"k1"}"#,
            r#"{"iss":"i","sub":"s","aud":"a","exp":20.9,"nbf":10}"#,
        );
        let jwt = ParsedJwt::parse(&t).unwrap();
        assert_eq!(jwt.alg, Alg::Es256);
        assert_eq!(jwt.kid.as_deref(), Some("k1"));
        assert_eq!(jwt.iss.as_deref(), Some("i"));
        assert_eq!(jwt.sub.as_deref(), Some("s"));
        assert_eq!(jwt.audiences, vec!["a".to_string()]);
        assert_eq!((jwt.nbf, jwt.exp), (10, 20));
        assert_eq!(jwt.signature, b"sig");
    }

    #[test]
    fn time_window_has_skew() {
        let t = token(r#"{"alg":"HS256"}"#, r#"{"nbf":1000,"exp":2000}"#);
        let jwt = ParsedJwt::parse(&t).unwrap();
        assert_eq!(jwt.check_time(939, 60), Err(JwtFailure::NotYetValid));
        assert_eq!(jwt.check_time(940, 60), Ok(()));
        assert_eq!(jwt.check_time(2060, 60), Ok(()));
        assert_eq!(jwt.check_time(2061, 60), Err(JwtFailure::Expired));
    }
}
