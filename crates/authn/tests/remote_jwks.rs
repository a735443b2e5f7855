//! Key sets fetched over HTTP(S), by OpenID discovery and from files, refreshed in the
//! background against a real server on 127.0.0.1.

mod support;

use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use serde_json::json;
use sluice_authn::{
    AuthnOutcome, JwksCache, JwksSource, JwksSourceStatus, JwtAuthenticator, JwtFailure, JwtRule,
};
use support::*;

const ISSUER: &str = "https://idp.example";

fn outcome(auth: &JwtAuthenticator, token: &str) -> AuthnOutcome {
    let mut parts = request("/", &[("authorization", &format!("Bearer {token}"))]);
    auth.authenticate(&mut parts)
}

fn failure(auth: &JwtAuthenticator, token: &str) -> JwtFailure {
    match outcome(auth, token) {
        AuthnOutcome::Rejected(r) => r.failure,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

fn is_verified(auth: &JwtAuthenticator, token: &str) -> bool {
    matches!(outcome(auth, token), AuthnOutcome::Verified(_))
}

fn uri_rule(issuer: &str, uri: String) -> JwtRule {
    JwtRule::new(issuer, JwksSource::Uri(uri))
}

#[tokio::test]
async fn fetched_keys_verify_after_the_first_fetch() {
    let server = JwksServer::start().await;
    let signer = Signer::es256(Some("k1"));
    server.set("/keys", StatusCode::OK, jwks(&[signer.jwk()]));
    server.close();
    let cache = Arc::new(JwksCache::new());
    let auth = JwtAuthenticator::new(vec![uri_rule(ISSUER, server.url("/keys"))], cache.clone());
    let token = signer.sign(&json!({"iss": ISSUER, "sub": "u"}));

    // The fetch is held at the server: requests are refused, not delayed.
    assert!(!cache.is_ready());
    assert_eq!(failure(&auth, &token), JwtFailure::JwksFetchFailed);

    server.open();
    cache.ready().await;
    assert!(is_verified(&auth, &token));
    assert_eq!(
        cache.status(),
        vec![JwksSourceStatus {
            source: server.url("/keys"),
            keys: Some(1),
            attempted: true,
        }]
    );
}

#[tokio::test]
async fn failed_fetch_refuses_the_issuers_tokens() {
    let server = JwksServer::start().await;
    server.set("/keys", StatusCode::INTERNAL_SERVER_ERROR, "");
    server.set("/garbage", StatusCode::OK, "<html>");
    let signer = Signer::es256(None);
    let token = signer.sign(&json!({"iss": ISSUER}));
    for path in ["/keys", "/garbage", "/absent"] {
        let cache = Arc::new(JwksCache::new());
        let auth = JwtAuthenticator::new(vec![uri_rule(ISSUER, server.url(path))], cache.clone());
        cache.ready().await;
        let r = match outcome(&auth, &token) {
            AuthnOutcome::Rejected(r) => r,
            other => panic!("{path}: {other:?}"),
        };
        assert_eq!(r.body, "Jwks remote fetch is failed", "{path}");
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert_eq!(cache.status()[0].keys, None);
    }
}

#[tokio::test]
async fn refresh_now_picks_up_rotated_keys_and_keeps_them_through_failures() {
    let server = JwksServer::start().await;
    let old = Signer::es256(Some("old"));
    let new = Signer::ed25519(Some("new"));
    server.set("/keys", StatusCode::OK, jwks(&[old.jwk()]));
    let cache = Arc::new(JwksCache::new());
    let auth = JwtAuthenticator::new(vec![uri_rule(ISSUER, server.url("/keys"))], cache.clone());
    cache.refresh_now().await;
    let old_token = old.sign(&json!({"iss": ISSUER}));
    let new_token = new.sign(&json!({"iss": ISSUER}));
    assert!(is_verified(&auth, &old_token));
    assert_eq!(failure(&auth, &new_token), JwtFailure::KidAlgMismatch);

    server.set("/keys", StatusCode::OK, jwks(&[new.jwk()]));
    cache.refresh_now().await;
    assert!(is_verified(&auth, &new_token));
    assert_eq!(failure(&auth, &old_token), JwtFailure::KidAlgMismatch);

    // A failed refresh keeps the keys already in force.
    server.set("/keys", StatusCode::SERVICE_UNAVAILABLE, "");
    let before = server.hits();
    cache.refresh_now().await;
    assert!(server.hits() > before);
    assert!(is_verified(&auth, &new_token));
}

#[tokio::test]
async fn background_refresh_and_retry() {
    let server = JwksServer::start().await;
    let first = Signer::es256(Some("one"));
    let second = Signer::es256(Some("two"));
    server.set("/keys", StatusCode::INTERNAL_SERVER_ERROR, "");
    let cache = Arc::new(
        JwksCache::new().with_intervals(Duration::from_millis(20), Duration::from_millis(20)),
    );
    let auth = JwtAuthenticator::new(vec![uri_rule(ISSUER, server.url("/keys"))], cache.clone());
    let first_token = first.sign(&json!({"iss": ISSUER}));
    let second_token = second.sign(&json!({"iss": ISSUER}));

    cache.ready().await;
    assert_eq!(failure(&auth, &first_token), JwtFailure::JwksFetchFailed);

    // Retried after the failure, with no call from the test.
    server.set("/keys", StatusCode::OK, jwks(&[first.jwk()]));
    eventually(|| is_verified(&auth, &first_token)).await;

    // Refreshed again later: a rotation is picked up.
    server.set("/keys", StatusCode::OK, jwks(&[second.jwk()]));
    eventually(|| is_verified(&auth, &second_token)).await;
}

#[tokio::test]
async fn openid_discovery_finds_the_jwks_uri() {
    let server = JwksServer::start().await;
    let issuer = server.url("/realms/shop/");
    let signer = Signer::rsa("RS256", Some("k"));
    server.set(
        "/realms/shop/.well-known/openid-configuration",
        StatusCode::OK,
        json!({"issuer": issuer, "jwks_uri": server.url("/realms/shop/certs")}).to_string(),
    );
    server.set("/realms/shop/certs", StatusCode::OK, jwks(&[signer.jwk()]));
    let cache = Arc::new(JwksCache::new());
    let auth = JwtAuthenticator::new(
        vec![JwtRule::new(issuer.clone(), JwksSource::Discovery)],
        cache.clone(),
    );
    cache.ready().await;
    let token = signer.sign(&json!({"iss": issuer, "sub": "me"}));
    assert!(is_verified(&auth, &token));

    // A discovery document without jwks_uri is a failed fetch.
    let other_issuer = server.url("/broken");
    server.set(
        "/broken/.well-known/openid-configuration",
        StatusCode::OK,
        "{}",
    );
    let cache = Arc::new(JwksCache::new());
    let auth = JwtAuthenticator::new(
        vec![JwtRule::new(other_issuer.clone(), JwksSource::Discovery)],
        cache.clone(),
    );
    cache.ready().await;
    let token = signer.sign(&json!({"iss": other_issuer}));
    assert_eq!(failure(&auth, &token), JwtFailure::JwksFetchFailed);
}

#[tokio::test]
async fn https_jwks_uri() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server_config = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.cert.der().clone()],
            rustls_pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into()),
        )
        .unwrap();
    let server = JwksServer::start_with(Some(Arc::new(server_config))).await;
    let signer = Signer::es384(Some("tls"));
    server.set("/keys", StatusCode::OK, jwks(&[signer.jwk()]));
    let url = format!("https://localhost:{}/keys", server.addr.port());
    let token = signer.sign(&json!({"iss": ISSUER}));

    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let client_config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let cache = Arc::new(JwksCache::new().with_tls(Arc::new(client_config)));
    let auth = JwtAuthenticator::new(vec![uri_rule(ISSUER, url.clone())], cache.clone());
    cache.ready().await;
    assert!(is_verified(&auth, &token));

    // The platform's roots do not trust the test certificate: fail closed.
    let untrusting = Arc::new(JwksCache::new());
    let auth = JwtAuthenticator::new(vec![uri_rule(ISSUER, url)], untrusting.clone());
    untrusting.ready().await;
    assert_eq!(failure(&auth, &token), JwtFailure::JwksFetchFailed);
}

#[tokio::test]
async fn fetch_is_bounded_by_the_rule_timeout() {
    let server = JwksServer::start().await;
    let signer = Signer::es256(None);
    server.set("/keys", StatusCode::OK, jwks(&[signer.jwk()]));
    server.close();
    let mut rule = uri_rule(ISSUER, server.url("/keys"));
    rule.timeout = Duration::from_millis(50);
    let cache = Arc::new(JwksCache::new());
    let auth = JwtAuthenticator::new(vec![rule], cache.clone());
    cache.ready().await;
    assert_eq!(
        failure(&auth, &signer.sign(&json!({"iss": ISSUER}))),
        JwtFailure::JwksFetchFailed
    );
    server.open();
}

#[tokio::test]
async fn key_files_in_file_mode() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwks.json");
    let signer = Signer::ed25519(Some("f"));
    std::fs::write(&path, jwks(&[signer.jwk()])).unwrap();
    let token = signer.sign(&json!({"iss": ISSUER}));
    let cache = Arc::new(JwksCache::new());
    for uri in [
        path.display().to_string(),
        format!("file://{}", path.display()),
    ] {
        let auth = JwtAuthenticator::new(vec![uri_rule(ISSUER, uri)], cache.clone());
        // Read when the rule is compiled: ready at once.
        assert!(is_verified(&auth, &token));
    }

    let rotated = Signer::ed25519(Some("g"));
    std::fs::write(&path, jwks(&[rotated.jwk()])).unwrap();
    let auth = JwtAuthenticator::new(
        vec![uri_rule(ISSUER, path.display().to_string())],
        cache.clone(),
    );
    cache.refresh_now().await;
    assert!(is_verified(&auth, &rotated.sign(&json!({"iss": ISSUER}))));

    let missing = uri_rule(ISSUER, dir.path().join("absent.json").display().to_string());
    let auth = JwtAuthenticator::new(vec![missing], cache.clone());
    cache.ready().await;
    assert_eq!(failure(&auth, &token), JwtFailure::JwksFetchFailed);
}

#[tokio::test]
async fn sources_are_shared_and_dropped_with_their_rules() {
    let server = JwksServer::start().await;
    let signer = Signer::es256(None);
    server.set("/keys", StatusCode::OK, jwks(&[signer.jwk()]));
    let cache = Arc::new(JwksCache::new());
    let first = JwtAuthenticator::new(vec![uri_rule(ISSUER, server.url("/keys"))], cache.clone());
    cache.ready().await;
    let hits = server.hits();
    // A reloaded configuration naming the same source reuses its keys without a fetch.
    let second = JwtAuthenticator::new(vec![uri_rule(ISSUER, server.url("/keys"))], cache.clone());
    assert!(is_verified(&second, &signer.sign(&json!({"iss": ISSUER}))));
    assert_eq!(server.hits(), hits);
    assert_eq!(cache.status().len(), 1);
    drop(first);
    drop(second);
    assert!(cache.status().is_empty());
}
