//! Signing keys, token building and a JWKS server for the tests.
#![allow(dead_code, clippy::unwrap_used)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use bytes::Bytes;
use http::request::Parts;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use jsonwebtoken::{Algorithm, EncodingKey};
use ring::rand::SystemRandom;
use ring::signature::{self, KeyPair};
use serde_json::{json, Value};
use sluice_authn::{
    AuthnOutcome, JwksCache, JwksSource, JwtAuthenticator, JwtRule, Rejection, VerifiedToken,
};
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// The issuer (and subject) of Istio's sample tokens.
pub const ISTIO_ISSUER: &str = "testing@secure.istio.io";
/// `exp` of Istio's sample tokens (year 2118).
pub const FAR_FUTURE: u64 = 4_685_989_700;

/// A private key that signs tokens, and its public JWK.
pub struct Signer {
    pub alg: &'static str,
    pub kid: Option<String>,
    algorithm: Algorithm,
    key: EncodingKey,
    public: Value,
}

impl Signer {
    /// The RSA test key (2048 bits) signing with `alg` (RS*/PS*).
    pub fn rsa(alg: &'static str, kid: Option<&str>) -> Self {
        let pem = include_str!("../fixtures/rsa-2048.pem");
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let der = STANDARD.decode(body).unwrap();
        let public: Value =
            serde_json::from_str(include_str!("../fixtures/rsa-2048.public.json")).unwrap();
        Self::new(alg, kid, EncodingKey::from_rsa_der(&der), public)
    }

    /// A fresh P-256 key (ES256).
    pub fn es256(kid: Option<&str>) -> Self {
        Self::ec(
            "ES256",
            kid,
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            "P-256",
        )
    }

    /// A fresh P-384 key (ES384).
    pub fn es384(kid: Option<&str>) -> Self {
        Self::ec(
            "ES384",
            kid,
            &signature::ECDSA_P384_SHA384_FIXED_SIGNING,
            "P-384",
        )
    }

    fn ec(
        alg: &'static str,
        kid: Option<&str>,
        curve: &'static signature::EcdsaSigningAlgorithm,
        crv: &str,
    ) -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = signature::EcdsaKeyPair::generate_pkcs8(curve, &rng).unwrap();
        let pair = signature::EcdsaKeyPair::from_pkcs8(curve, pkcs8.as_ref(), &rng).unwrap();
        let point = pair.public_key().as_ref();
        let size = (point.len() - 1) / 2;
        let public = json!({
            "kty": "EC",
            "crv": crv,
            "x": URL_SAFE_NO_PAD.encode(&point[1..=size]),
            "y": URL_SAFE_NO_PAD.encode(&point[1 + size..]),
        });
        Self::new(alg, kid, EncodingKey::from_ec_der(pkcs8.as_ref()), public)
    }

    /// A fresh Ed25519 key (EdDSA).
    pub fn ed25519(kid: Option<&str>) -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let pair = signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let public = json!({
            "kty": "OKP",
            "crv": "Ed25519",
            "x": URL_SAFE_NO_PAD.encode(pair.public_key().as_ref()),
        });
        Self::new(
            "EdDSA",
            kid,
            EncodingKey::from_ed_der(pkcs8.as_ref()),
            public,
        )
    }

    /// A shared secret signing with `alg` (HS*).
    pub fn hmac(alg: &'static str, kid: Option<&str>, secret: &[u8]) -> Self {
        let public = json!({"kty": "oct", "k": URL_SAFE_NO_PAD.encode(secret)});
        Self::new(alg, kid, EncodingKey::from_secret(secret), public)
    }

    fn new(alg: &'static str, kid: Option<&str>, key: EncodingKey, mut public: Value) -> Self {
        let algorithm: Algorithm = alg.parse().unwrap();
        if let Some(kid) = kid {
            public["kid"] = json!(kid);
        }
        Self {
            alg,
            kid: kid.map(str::to_owned),
            algorithm,
            key,
            public,
        }
    }

    /// The public JWK, with `alg` set as well.
    pub fn jwk_with_alg(&self) -> Value {
        let mut jwk = self.public.clone();
        jwk["alg"] = json!(self.alg);
        jwk
    }

    /// The public JWK (no `alg`).
    pub fn jwk(&self) -> Value {
        self.public.clone()
    }

    /// A token with this signer's `alg` and `kid` over `claims`.
    pub fn sign(&self, claims: &Value) -> String {
        let mut header = json!({"alg": self.alg, "typ": "JWT"});
        if let Some(kid) = &self.kid {
            header["kid"] = json!(kid);
        }
        self.sign_with_header(&header, claims)
    }

    /// A token with exactly this header over `claims`, signed with this key.
    pub fn sign_with_header(&self, header: &Value, claims: &Value) -> String {
        let signed = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature =
            jsonwebtoken::crypto::sign(signed.as_bytes(), &self.key, self.algorithm).unwrap();
        format!("{signed}.{signature}")
    }
}

/// A JWK set of these keys.
pub fn jwks(keys: &[Value]) -> String {
    json!({ "keys": keys }).to_string()
}

/// Seconds since the epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The claims of Istio's `demo.jwt`.
pub fn demo_claims() -> Value {
    json!({
        "iss": ISTIO_ISSUER,
        "sub": ISTIO_ISSUER,
        "exp": FAR_FUTURE,
        "iat": 1_532_389_700u64,
        "foo": "bar",
    })
}

/// The claims of Istio's `groups-scope.jwt`.
pub fn groups_scope_claims() -> Value {
    let mut claims = demo_claims();
    claims["groups"] = json!(["group1", "group2"]);
    claims["scope"] = json!(["scope1", "scope2"]);
    claims
}

/// Request parts for `GET uri` with `headers`.
pub fn request(uri: &str, headers: &[(&str, &str)]) -> Parts {
    let mut builder = Request::get(uri).header("host", "app.example");
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(()).unwrap().into_parts().0
}

/// What the JWKS server answers, by path.
#[derive(Default)]
struct Routes {
    answers: Vec<(String, StatusCode, String)>,
}

/// A JWKS (and discovery) server on 127.0.0.1:0 whose answers tests change at will.
pub struct JwksServer {
    pub addr: SocketAddr,
    routes: Arc<Mutex<Routes>>,
    hits: Arc<AtomicUsize>,
    gate: Arc<Gate>,
}

/// Holds answers back until opened, to observe requests while a fetch is in flight.
#[derive(Default)]
struct Gate {
    closed: Mutex<bool>,
    opened: Notify,
}

impl JwksServer {
    /// Starts a plain HTTP server.
    pub async fn start() -> Self {
        Self::start_with(None).await
    }

    /// Starts a server; with `tls`, it speaks HTTPS.
    pub async fn start_with(tls: Option<Arc<rustls::ServerConfig>>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let routes = Arc::new(Mutex::new(Routes::default()));
        let hits = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(Gate::default());
        let (r, h, g) = (routes.clone(), hits.clone(), gate.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (r, h, g, tls) = (r.clone(), h.clone(), g.clone(), tls.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                        let (r, h, g) = (r.clone(), h.clone(), g.clone());
                        async move { Ok::<_, Infallible>(answer(&r, &h, &g, req.uri().path()).await) }
                    });
                    let builder = hyper::server::conn::http1::Builder::new();
                    match tls {
                        Some(config) => {
                            let acceptor = tokio_rustls::TlsAcceptor::from(config);
                            if let Ok(stream) = acceptor.accept(stream).await {
                                let _ = builder
                                    .serve_connection(TokioIo::new(stream), service)
                                    .await;
                            }
                        }
                        None => {
                            let _ = builder
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        }
                    }
                });
            }
        });
        Self {
            addr,
            routes,
            hits,
            gate,
        }
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Answers `path` with `status` and `body` from now on.
    pub fn set(&self, path: &str, status: StatusCode, body: impl Into<String>) {
        let mut routes = self.routes.lock().unwrap();
        routes.answers.retain(|(p, _, _)| p != path);
        routes.answers.push((path.to_owned(), status, body.into()));
    }

    /// Requests answered so far.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// Holds every answer until [`JwksServer::open`].
    pub fn close(&self) {
        *self.gate.closed.lock().unwrap() = true;
    }

    /// Releases held answers.
    pub fn open(&self) {
        *self.gate.closed.lock().unwrap() = false;
        self.gate.opened.notify_waiters();
    }
}

async fn answer(
    routes: &Mutex<Routes>,
    hits: &AtomicUsize,
    gate: &Gate,
    path: &str,
) -> Response<Full<Bytes>> {
    loop {
        let opened = gate.opened.notified();
        if !*gate.closed.lock().unwrap() {
            break;
        }
        opened.await;
    }
    hits.fetch_add(1, Ordering::SeqCst);
    let found = routes
        .lock()
        .unwrap()
        .answers
        .iter()
        .find(|(p, _, _)| p == path)
        .map(|(_, status, body)| (*status, body.clone()));
    let (status, body) = found.unwrap_or((StatusCode::NOT_FOUND, String::new()));
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

/// Polls `condition` until it holds; the test's own timeout bounds the wait.
pub async fn eventually(mut condition: impl FnMut() -> bool) {
    while !condition() {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// A rule for `issuer` with these keys inline.
pub fn rule(issuer: &str, keys: &[Value]) -> JwtRule {
    JwtRule::new(issuer, JwksSource::Inline(jwks(keys)))
}

/// An authenticator with a cache of its own.
pub fn authenticator(rules: Vec<JwtRule>) -> JwtAuthenticator {
    JwtAuthenticator::new(rules, Arc::new(JwksCache::new()))
}

/// A signer and rule like Istio's samples (issuer `testing@secure.istio.io`).
pub fn istio() -> (Signer, JwtRule) {
    let signer = Signer::rsa("RS256", Some("DHFbpoIUqrY8t2zpA2qXfCmr5VO5ZEr4RzHU_-envvQ"));
    let rule = rule(ISTIO_ISSUER, &[signer.jwk()]);
    (signer, rule)
}

/// The verified token, or a panic naming the outcome.
pub fn verified(outcome: AuthnOutcome) -> VerifiedToken {
    match outcome {
        AuthnOutcome::Verified(token) => token,
        other => panic!("expected a verified token, got {other:?}"),
    }
}

/// The rejection, or a panic naming the outcome.
pub fn rejected(outcome: AuthnOutcome) -> Rejection {
    match outcome {
        AuthnOutcome::Rejected(rejection) => rejection,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

/// `Bearer <token>`.
pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}
