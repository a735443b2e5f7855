//! Where tokens are found and what a verified token changes in the request.

mod support;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde_json::{json, Value};
use sluice_authn::{AuthnOutcome, ClaimToHeader, JwtFailure, JwtHeader};
use support::*;

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
