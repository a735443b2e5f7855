//! Verification with inline key sets: audiences, time, algorithms, key matching and every
//! failure text.

mod support;

use std::time::{Duration, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http::StatusCode;
use serde_json::{json, Value};
use sluice_authn::{JwksSource, JwtFailure, JwtRule};
use support::*;

#[test]
fn audiences() {
    let signer = Signer::es256(None);
    let mut with_aud = rule("iss", &[signer.jwk()]);
    with_aud.audiences = vec!["https://shop.example/".into(), "other".into()];
    let checked = authenticator(vec![with_aud]);
    let unchecked = authenticator(vec![rule("iss", &[signer.jwk()])]);

    let sign = |aud: Value| signer.sign(&json!({"iss": "iss", "sub": "s", "aud": aud}));
    for aud in [
        json!("shop.example"),
        json!(["x", "other"]),
        json!("http://shop.example"),
    ] {
        let mut parts = request("/", &[("authorization", &bearer(&sign(aud)))]);
        verified(checked.authenticate(&mut parts));
    }
    let token = sign(json!(["x", "y"]));
    let mut parts = request("/", &[("authorization", &bearer(&token))]);
    let r = rejected(checked.authenticate(&mut parts));
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.body, "Audiences in Jwt are not allowed");
    // The token stays when the request is refused.
    assert!(parts.headers.get("authorization").is_some());

    let no_aud = signer.sign(&json!({"iss": "iss"}));
    let mut parts = request("/", &[("authorization", &bearer(&no_aud))]);
    assert_eq!(
        rejected(checked.authenticate(&mut parts)).status,
        StatusCode::FORBIDDEN
    );

    // No audiences configured: none checked.
    let mut parts = request("/", &[("authorization", &bearer(&token))]);
    verified(unchecked.authenticate(&mut parts));
}

#[test]
fn clock_skew_of_sixty_seconds() {
    let (signer, rule) = istio();
    let auth = authenticator(vec![rule]);
    let at = |secs: u64| UNIX_EPOCH + Duration::from_secs(secs);
    let token = |claims: Value| {
        let mut all = demo_claims();
        for (k, v) in claims.as_object().unwrap() {
            all[k] = v.clone();
        }
        request("/", &[("authorization", &bearer(&signer.sign(&all)))])
    };
    let t = 2_000_000_000;
    verified(auth.authenticate_at(&mut token(json!({"exp": t})), at(t + 60)));
    let r = rejected(auth.authenticate_at(&mut token(json!({"exp": t})), at(t + 61)));
    assert_eq!(r.body, "Jwt is expired");
    assert_eq!(r.details, "jwt_authn_access_denied{Jwt_is_expired}");
    verified(auth.authenticate_at(&mut token(json!({"nbf": t})), at(t - 60)));
    let r = rejected(auth.authenticate_at(&mut token(json!({"nbf": t})), at(t - 61)));
    assert_eq!(r.body, "Jwt not yet valid");

    // And against the real clock.
    let now = now();
    verified(auth.authenticate(&mut token(json!({"exp": now - 30}))));
    let r = rejected(auth.authenticate(&mut token(json!({"exp": now - 3600}))));
    assert_eq!(r.failure, JwtFailure::Expired);
}

#[test]
fn failure_texts() {
    let (signer, rule) = istio();
    let auth = authenticator(vec![rule]);
    let other = Signer::es256(None);
    let good = signer.sign(&demo_claims());
    let (head, _) = good.rsplit_once('.').unwrap();
    let mut tampered_claims = demo_claims();
    tampered_claims["sub"] = json!("admin");
    let tampered = format!(
        "{}.{}.{}",
        head.split('.').next().unwrap(),
        URL_SAFE_NO_PAD.encode(tampered_claims.to_string()),
        good.rsplit('.').next().unwrap()
    );
    let mut unknown = demo_claims();
    unknown["iss"] = json!("someone@else");
    let kid_header = json!({"alg": "RS256", "kid": "not-this-one"});
    let cases: Vec<(String, &str)> = vec![
        (
            "abc.def".into(),
            "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections",
        ),
        (tampered, "Jwt verification fails"),
        (signer.sign(&unknown), "Jwt issuer is not configured"),
        (
            signer.sign_with_header(&kid_header, &demo_claims()),
            "Jwks doesn't have key to match kid or alg from Jwt",
        ),
        // An ES256 token against an RSA key without `alg`: the key is tried and fails.
        (other.sign(&demo_claims()), "Jwt verification fails"),
    ];
    for (token, text) in cases {
        let mut parts = request("/orders?id=7", &[("authorization", &bearer(&token))]);
        let r = rejected(auth.authenticate(&mut parts));
        assert_eq!(r.body, text);
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            r.www_authenticate,
            r#"Bearer realm="http://app.example/orders?id=7", error="invalid_token""#
        );
        assert_eq!(
            r.details,
            format!("jwt_authn_access_denied{{{}}}", text.replace(' ', "_"))
        );
    }
}

#[test]
fn key_alg_and_kid_matching() {
    let signer = Signer::rsa("RS256", Some("k1"));
    // A key whose `alg` differs is skipped.
    let mut jwk = signer.jwk();
    jwk["alg"] = json!("RS512");
    let auth = authenticator(vec![rule("iss", &[jwk])]);
    let token = signer.sign(&json!({"iss": "iss"}));
    let mut parts = request("/", &[("authorization", &bearer(&token))]);
    assert_eq!(
        rejected(auth.authenticate(&mut parts)).failure,
        JwtFailure::KidAlgMismatch
    );

    // A key without `kid` serves a token with one, and the other way round.
    let mut no_kid = signer.jwk_with_alg();
    no_kid.as_object_mut().unwrap().remove("kid");
    let auth = authenticator(vec![rule("iss", &[no_kid])]);
    let mut parts = request("/", &[("authorization", &bearer(&token))]);
    verified(auth.authenticate(&mut parts));
    let bare = Signer::rsa("RS256", None).sign(&json!({"iss": "iss"}));
    let auth = authenticator(vec![rule("iss", &[signer.jwk_with_alg()])]);
    let mut parts = request("/", &[("authorization", &bearer(&bare))]);
    verified(auth.authenticate(&mut parts));
}

#[test]
fn every_supported_algorithm() {
    let signers = vec![
        Signer::rsa("RS256", Some("rs256")),
        Signer::rsa("RS384", Some("rs384")),
        Signer::rsa("RS512", Some("rs512")),
        Signer::rsa("PS256", Some("ps256")),
        Signer::rsa("PS384", Some("ps384")),
        Signer::rsa("PS512", Some("ps512")),
        Signer::es256(Some("es256")),
        Signer::es384(Some("es384")),
        Signer::hmac(
            "HS256",
            Some("hs256"),
            b"a shared secret of at least 32 bytes",
        ),
        Signer::hmac(
            "HS384",
            Some("hs384"),
            b"a shared secret of at least 48 bytes ......",
        ),
        Signer::hmac("HS512", Some("hs512"), b"another shared secret"),
        Signer::ed25519(Some("eddsa")),
    ];
    let keys: Vec<Value> = signers.iter().map(Signer::jwk_with_alg).collect();
    let auth = authenticator(vec![rule("iss", &keys)]);
    for signer in &signers {
        let token = signer.sign(&json!({"iss": "iss", "sub": signer.alg}));
        let mut parts = request("/", &[("authorization", &bearer(&token))]);
        let v = verified(auth.authenticate(&mut parts));
        assert_eq!(v.subject.as_deref(), Some(signer.alg), "{}", signer.alg);
    }
    // A token signed by another key of the same kind fails.
    let stranger = Signer::es256(Some("es256")).sign(&json!({"iss": "iss"}));
    let mut parts = request("/", &[("authorization", &bearer(&stranger))]);
    assert_eq!(
        rejected(auth.authenticate(&mut parts)).body,
        "Jwt verification fails"
    );
    // ES512 is a valid `alg`, but ring has no P-521: a matching key cannot verify it.
    let es512 = format!(
        "{}.{}.c2ln",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"ES512"}"#),
        URL_SAFE_NO_PAD.encode(r#"{"iss":"iss"}"#)
    );
    // Every key here names another `alg`.
    let mut parts = request("/", &[("authorization", &bearer(&es512))]);
    assert_eq!(
        rejected(auth.authenticate(&mut parts)).failure,
        JwtFailure::KidAlgMismatch
    );
    let any_ec = authenticator(vec![rule("iss", &[Signer::es256(None).jwk()])]);
    let mut parts = request("/", &[("authorization", &bearer(&es512))]);
    assert_eq!(
        rejected(any_ec.authenticate(&mut parts)).body,
        "Jwt verification fails"
    );
    // `none` is not an algorithm.
    let none = format!(
        "{}.{}.sig",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#),
        URL_SAFE_NO_PAD.encode(r#"{"iss":"iss"}"#)
    );
    let mut parts = request("/", &[("authorization", &bearer(&none))]);
    assert_eq!(
        rejected(auth.authenticate(&mut parts)).body,
        "Jwt header [alg] is not supported"
    );
}

#[test]
fn unusable_inline_key_set_refuses_tokens() {
    let (signer, _) = istio();
    let token = signer.sign(&demo_claims());
    for jwks in ["not json", r#"{"keys":[{"kty":"RSA"}]}"#, "{}"] {
        let rule = JwtRule::new(ISTIO_ISSUER, JwksSource::Inline(jwks.into()));
        let auth = authenticator(vec![rule]);
        let mut parts = request("/", &[("authorization", &bearer(&token))]);
        let r = rejected(auth.authenticate(&mut parts));
        assert_eq!(r.body, "Jwks doesn't have key to match kid or alg from Jwt");
    }
}
