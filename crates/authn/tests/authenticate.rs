//! Authentication with inline key sets: extraction, outcomes, outputs and every failure text.

mod support;

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use http::StatusCode;
use serde_json::{json, Value};
use sluice_authn::{
    AuthnOutcome, ClaimToHeader, JwksCache, JwksSource, JwtAuthenticator, JwtFailure, JwtHeader,
    JwtRule, Rejection, VerifiedToken,
};
use support::*;

fn rule(issuer: &str, keys: &[Value]) -> JwtRule {
    JwtRule::new(issuer, JwksSource::Inline(jwks(keys)))
}

fn authenticator(rules: Vec<JwtRule>) -> JwtAuthenticator {
    JwtAuthenticator::new(rules, Arc::new(JwksCache::new()))
}

fn istio() -> (Signer, JwtRule) {
    let signer = Signer::rsa("RS256", Some("DHFbpoIUqrY8t2zpA2qXfCmr5VO5ZEr4RzHU_-envvQ"));
    let rule = rule(ISTIO_ISSUER, &[signer.jwk()]);
    (signer, rule)
}

fn verified(outcome: AuthnOutcome) -> VerifiedToken {
    match outcome {
        AuthnOutcome::Verified(token) => token,
        other => panic!("expected a verified token, got {other:?}"),
    }
}

fn rejected(outcome: AuthnOutcome) -> Rejection {
    match outcome {
        AuthnOutcome::Rejected(rejection) => rejection,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

#[test]
fn istio_demo_token_in_authorization_header() {
    let (signer, rule) = istio();
    let auth = authenticator(vec![rule]);
    let token = signer.sign(&demo_claims());
    let mut parts = request("/headers", &[("authorization", &bearer(&token))]);
    let v = verified(auth.authenticate(&mut parts));
    assert_eq!(v.issuer.as_deref(), Some(ISTIO_ISSUER));
    assert_eq!(v.subject.as_deref(), Some(ISTIO_ISSUER));
    assert_eq!(
        v.principal.as_deref(),
        Some("testing@secure.istio.io/testing@secure.istio.io")
    );
    assert_eq!(v.claims["foo"], json!("bar"));
    // Not forwarded by default.
    assert!(parts.headers.get("authorization").is_none());
}

#[test]
fn groups_and_scope_claims() {
    let (signer, mut rule) = istio();
    rule.space_delimited_claims = vec!["roles".into()];
    let auth = authenticator(vec![rule]);
    let token = signer.sign(&groups_scope_claims());
    let mut parts = request("/", &[("authorization", &bearer(&token))]);
    let v = verified(auth.authenticate(&mut parts));
    assert_eq!(v.claims["groups"], json!(["group1", "group2"]));
    assert_eq!(v.claims["scope"], json!(["scope1", "scope2"]));

    let mut claims = demo_claims();
    claims["scope"] = json!("read write");
    claims["permission"] = json!("admin");
    claims["roles"] = json!("a b");
    claims["other"] = json!("c d");
    let token = signer.sign(&claims);
    let mut parts = request("/", &[("authorization", &bearer(&token))]);
    let v = verified(auth.authenticate(&mut parts));
    assert_eq!(v.claims["scope"], json!(["read", "write"]));
    assert_eq!(v.claims["permission"], json!(["admin"]));
    assert_eq!(v.claims["roles"], json!(["a", "b"]));
    assert_eq!(v.claims["other"], json!("c d"));
}

#[test]
fn principal_needs_issuer_and_subject() {
    let signer = Signer::es256(None);
    let auth = authenticator(vec![rule("", &[signer.jwk()])]);
    let token = signer.sign(&json!({"iss": "only-issuer"}));
    let mut parts = request("/", &[("authorization", &bearer(&token))]);
    let v = verified(auth.authenticate(&mut parts));
    assert_eq!(v.issuer.as_deref(), Some("only-issuer"));
    assert_eq!(v.subject, None);
    assert_eq!(v.principal, None);
}

#[test]
fn no_token_passes_untouched() {
    let (_, rule) = istio();
    let auth = authenticator(vec![rule]);
    let mut parts = request("/x?a=1", &[("authorization", "Basic dXNlcjpwYXNz")]);
    assert_eq!(auth.authenticate(&mut parts), AuthnOutcome::NoToken);
    assert_eq!(parts.headers["authorization"], "Basic dXNlcjpwYXNz");
    let mut parts = request("/x", &[]);
    assert_eq!(auth.authenticate(&mut parts), AuthnOutcome::NoToken);
    // The prefix is case-sensitive.
    let (signer, _) = istio();
    let token = signer.sign(&demo_claims());
    let mut parts = request("/", &[("authorization", &format!("bearer {token}"))]);
    assert_eq!(auth.authenticate(&mut parts), AuthnOutcome::NoToken);
}

#[test]
fn access_token_query_parameter_by_default() {
    let (signer, rule) = istio();
    let auth = authenticator(vec![rule]);
    let token = signer.sign(&demo_claims());
    let mut parts = request(&format!("/p?a=1&access_token={token}&b=2"), &[]);
    verified(auth.authenticate(&mut parts));
    assert_eq!(parts.uri.path_and_query().unwrap().as_str(), "/p?a=1&b=2");
}

#[test]
fn configured_header_with_prefix() {
    let (signer, mut rule) = istio();
    rule.from_headers = vec![JwtHeader {
        name: "X-Jwt-Assertion".into(),
        prefix: "Token ".into(),
    }];
    let auth = authenticator(vec![rule]);
    let token = signer.sign(&demo_claims());

    let mut parts = request("/", &[("x-jwt-assertion", &format!("Token {token}"))]);
    verified(auth.authenticate(&mut parts));
    assert!(parts.headers.get("x-jwt-assertion").is_none());

    // Without its prefix the header holds no token.
    let mut parts = request("/", &[("x-jwt-assertion", &token)]);
    assert_eq!(auth.authenticate(&mut parts), AuthnOutcome::NoToken);

    // Configured locations replace the defaults.
    let mut parts = request(
        &format!("/?access_token={token}"),
        &[("authorization", &bearer(&token))],
    );
    assert_eq!(auth.authenticate(&mut parts), AuthnOutcome::NoToken);
}

#[test]
fn header_without_prefix_takes_the_whole_value() {
    let (signer, mut rule) = istio();
    rule.from_headers = vec![JwtHeader {
        name: "x-token".into(),
        prefix: String::new(),
    }];
    let auth = authenticator(vec![rule]);
    let token = signer.sign(&demo_claims());
    let mut parts = request("/", &[("x-token", &token)]);
    verified(auth.authenticate(&mut parts));
    let mut parts = request("/", &[("x-token", &format!("junk {token}"))]);
    let r = rejected(auth.authenticate(&mut parts));
    assert_eq!(r.failure, JwtFailure::HeaderBadBase64);
}

#[test]
fn params_and_cookies() {
    let (signer, mut rule) = istio();
    rule.from_params = vec!["jwt".into()];
    rule.from_cookies = vec!["session".into()];
    let auth = authenticator(vec![rule]);
    let token = signer.sign(&demo_claims());

    let mut parts = request(&format!("/?jwt={token}"), &[]);
    verified(auth.authenticate(&mut parts));
    assert_eq!(parts.uri.query(), None);

    let cookie = format!("theme=dark; session=\"{token}\"");
    let mut parts = request("/", &[("cookie", &cookie)]);
    verified(auth.authenticate(&mut parts));
    // Envoy leaves cookies in place.
    assert_eq!(parts.headers["cookie"], cookie.as_str());

    let mut parts = request(&format!("/?access_token={token}"), &[]);
    assert_eq!(auth.authenticate(&mut parts), AuthnOutcome::NoToken);
}

#[test]
fn forward_original_token_keeps_it() {
    let (signer, mut rule) = istio();
    rule.forward_original_token = true;
    let auth = authenticator(vec![rule]);
    let token = signer.sign(&demo_claims());
    let mut parts = request(
        &format!("/?access_token={token}"),
        &[("authorization", &bearer(&token))],
    );
    verified(auth.authenticate(&mut parts));
    assert_eq!(parts.headers["authorization"], bearer(&token).as_str());
    assert_eq!(parts.uri.query().unwrap(), format!("access_token={token}"));
}

#[test]
fn payload_and_claims_to_headers() {
    let (signer, mut rule) = istio();
    rule.output_payload_to_header = Some("x-jwt-payload".into());
    rule.output_claim_to_headers = [
        ("x-foo", "foo"),
        ("x-tier", "account.tier"),
        ("x-level", "account.level"),
        ("x-admin", "admin"),
        ("x-groups", "groups"),
        ("x-missing", "nope"),
    ]
    .iter()
    .map(|(header, claim)| ClaimToHeader {
        header: (*header).into(),
        claim: (*claim).into(),
    })
    .collect();
    let auth = authenticator(vec![rule]);
    let mut claims = demo_claims();
    claims["account"] = json!({"tier": "gold", "level": 3});
    claims["admin"] = json!(true);
    claims["groups"] = json!(["g1"]);
    let token = signer.sign(&claims);
    let mut parts = request(
        "/",
        &[
            ("authorization", &bearer(&token)),
            ("x-foo", "spoofed"),
            ("x-missing", "spoofed"),
        ],
    );
    verified(auth.authenticate(&mut parts));
    let h = &parts.headers;
    assert_eq!(h["x-foo"], "bar");
    assert_eq!(h.get_all("x-foo").iter().count(), 1);
    assert_eq!(h["x-tier"], "gold");
    assert_eq!(h["x-level"], "3");
    assert_eq!(h["x-admin"], "true");
    assert_eq!(h["x-groups"], STANDARD.encode(r#"["g1"]"#).as_str());
    assert!(h.get("x-missing").is_none());
    let payload = URL_SAFE_NO_PAD
        .decode(h["x-jwt-payload"].to_str().unwrap())
        .unwrap();
    let payload: Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(payload, claims);
    assert_eq!(
        h["x-jwt-payload"].to_str().unwrap(),
        token.split('.').nth(1).unwrap()
    );
}

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
fn several_tokens_must_all_be_valid() {
    let (signer, mut rule) = istio();
    rule.from_headers = vec![
        JwtHeader {
            name: "x-a".into(),
            prefix: String::new(),
        },
        JwtHeader {
            name: "x-b".into(),
            prefix: String::new(),
        },
    ];
    let auth = authenticator(vec![rule]);
    let good = signer.sign(&demo_claims());
    let mut expired = demo_claims();
    expired["exp"] = json!(1000);
    let bad = signer.sign(&expired);

    let mut parts = request("/", &[("x-a", &good), ("x-b", &good)]);
    verified(auth.authenticate(&mut parts));
    assert!(parts.headers.get("x-a").is_none() && parts.headers.get("x-b").is_none());

    let mut parts = request("/", &[("x-a", &good), ("x-b", &bad)]);
    assert_eq!(
        rejected(auth.authenticate(&mut parts)).body,
        "Jwt is expired"
    );
    let mut parts = request("/", &[("x-a", &bad), ("x-b", &good)]);
    assert_eq!(
        rejected(auth.authenticate(&mut parts)).body,
        "Jwt is expired"
    );
}

#[test]
fn rules_for_two_issuers() {
    let a = Signer::es256(Some("a"));
    let b = Signer::ed25519(Some("b"));
    let mut rule_b = rule("issuer-b", &[b.jwk()]);
    rule_b.from_headers = vec![JwtHeader {
        name: "x-b".into(),
        prefix: String::new(),
    }];
    let auth = authenticator(vec![rule("issuer-a", &[a.jwk()]), rule_b]);
    let token_a = a.sign(&json!({"iss": "issuer-a", "sub": "x"}));
    let token_b = b.sign(&json!({"iss": "issuer-b", "sub": "y"}));

    let mut parts = request("/", &[("x-b", &token_b)]);
    let v = verified(auth.authenticate(&mut parts));
    assert_eq!(v.principal.as_deref(), Some("issuer-b/y"));

    let mut parts = request(
        "/",
        &[("authorization", &bearer(&token_a)), ("x-b", &token_b)],
    );
    let v = verified(auth.authenticate(&mut parts));
    assert_eq!(v.principal.as_deref(), Some("issuer-a/x"));

    // issuer-b's token in issuer-a's location: that issuer is not configured there.
    let mut parts = request("/", &[("authorization", &bearer(&token_b))]);
    let r = rejected(auth.authenticate(&mut parts));
    assert_eq!(r.body, "Jwt issuer is not configured");
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

#[test]
fn cors_preflight_is_not_checked() {
    let (_, rule) = istio();
    let auth = authenticator(vec![rule]);
    let mut parts = request(
        "/",
        &[
            ("authorization", "Bearer garbage"),
            ("origin", "https://web.example"),
            ("access-control-request-method", "POST"),
        ],
    );
    parts.method = http::Method::OPTIONS;
    assert_eq!(auth.authenticate(&mut parts), AuthnOutcome::NoToken);
    // An OPTIONS request that is not a preflight is checked.
    let mut parts = request("/", &[("authorization", "Bearer garbage")]);
    parts.method = http::Method::OPTIONS;
    rejected(auth.authenticate(&mut parts));
}

#[test]
fn no_rules_means_nothing_to_do() {
    let auth = authenticator(Vec::new());
    assert!(auth.is_empty());
    let mut parts = request("/", &[("authorization", "Bearer garbage")]);
    assert_eq!(auth.authenticate(&mut parts), AuthnOutcome::NoToken);
}
