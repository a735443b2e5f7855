//! Request authentication and JWT-based authorization and routing at an ingress gateway, with
//! the YAML of Istio's tasks (JWT claim based routing, Authorization with JWT, copying JWT
//! claims to headers): real signed tokens, the gateway's answers as Istio gives them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::Path;

use serde_json::json;
use sluice_test_support::jwt::{JwtSigner, ISTIO_ISSUER};
use sluice_test_support::{
    backend, free_port, proxy, service_yaml, ConfigDir, ProxyHandle, Reply, TestClient,
};

fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// The httpbin gateway of Istio's tasks on `port`, `vs` bound to it, httpbin at `httpbin`.
fn gateway_yaml(port: u16, vs_http: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata:\n  name: httpbin-gateway\n  namespace: foo\nspec:\n  selector:\n    istio: ingressgateway\n  servers:\n  - port:\n      number: {port}\n      name: http\n      protocol: HTTP\n    hosts:\n    - \"*\"\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: httpbin\n  namespace: foo\nspec:\n  hosts:\n  - \"*\"\n  gateways:\n  - httpbin-gateway\n  http:\n{vs_http}"
    )
}

/// The task's RequestAuthentication for the ingress gateway, keys inline.
fn request_authentication(signer: &JwtSigner, extra: &str) -> String {
    format!(
        "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata:\n  name: ingress-jwt\n  namespace: istio-system\nspec:\n  selector:\n    matchLabels:\n      istio: ingressgateway\n  jwtRules:\n  - issuer: \"{ISTIO_ISSUER}\"\n    jwks: '{}'\n{extra}",
        signer.jwks()
    )
}

async fn gateway(dir: &Path, httpbin: SocketAddr) -> ProxyHandle {
    std::fs::write(
        dir.join("httpbin.yaml"),
        service_yaml("httpbin.foo.svc.cluster.local", 8000, &[("v1", httpbin)]),
    )
    .unwrap();
    proxy(dir, |o| {
        o.proxy
            .labels
            .insert("istio".into(), "ingressgateway".into());
        o.proxy.namespace = "istio-system".into();
        o.proxy.mesh_role = false;
    })
    .await
}

async fn get(port: u16, path: &str, token: Option<&str>) -> Reply {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth
        .as_deref()
        .map(|a| vec![("authorization", a)])
        .unwrap_or_default();
    TestClient::new()
        .get(local(port), "httpbin.example.com", path, &headers)
        .await
}

/// JWT claim based routing: a route matching `@request.auth.claims.groups` serves only tokens
/// whose `groups` holds `group1`; no token or a token without it gets 404, an invalid token 401.
#[tokio::test]
async fn jwt_claim_based_routing() {
    let httpbin = backend("httpbin", "v1").await;
    let signer = JwtSigner::new("k1");
    let dir = ConfigDir::new();
    let port = free_port();
    dir.write(
        "gw.yaml",
        &gateway_yaml(
            port,
            "  - match:\n    - uri:\n        prefix: /headers\n      headers:\n        \"@request.auth.claims.groups\":\n          exact: group1\n    route:\n    - destination:\n        port:\n          number: 8000\n        host: httpbin.foo.svc.cluster.local\n",
        ),
    );
    dir.write("ra.yaml", &request_authentication(&signer, ""));
    let p = gateway(dir.path(), httpbin.addr()).await;

    assert_eq!(get(port, "/headers", None).await.status, 404);
    let r = get(port, "/headers", Some("not.a.jwt")).await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(r
        .header("www-authenticate")
        .is_some_and(|v| v.contains("invalid_token")));
    let groups = signer.istio_sample(json!({"groups": ["group1", "group2"]}));
    assert_eq!(get(port, "/headers", Some(&groups)).await.status, 200);
    let demo = signer.istio_sample(json!({}));
    assert_eq!(get(port, "/headers", Some(&demo)).await.status, 404);
    // A token signed by a key the JWKS does not hold is invalid, whatever it claims.
    let other = JwtSigner::new("k1").istio_sample(json!({"groups": ["group1"]}));
    assert_eq!(get(port, "/headers", Some(&other)).await.status, 401);
    p.shutdown().await;
}

/// Authorization with JWT: with `requestPrincipals` required, no token is 403, an invalid one
/// 401, a valid one 200; then a `request.auth.claims[groups]` condition refuses the token
/// without the group (403). The token is not forwarded upstream (forwardOriginalToken false).
#[tokio::test]
async fn authorization_with_jwt_request_principals_and_claims() {
    let httpbin = backend("httpbin", "v1").await;
    let signer = JwtSigner::new("k1");
    let dir = ConfigDir::new();
    let port = free_port();
    dir.write(
        "gw.yaml",
        &gateway_yaml(
            port,
            "  - route:\n    - destination:\n        port:\n          number: 8000\n        host: httpbin.foo.svc.cluster.local\n",
        ),
    );
    dir.write("ra.yaml", &request_authentication(&signer, ""));
    let policy = |when: &str| {
        format!("apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: require-jwt\n  namespace: istio-system\nspec:\n  selector:\n    matchLabels:\n      istio: ingressgateway\n  action: ALLOW\n  rules:\n  - from:\n    - source:\n        requestPrincipals: [\"{ISTIO_ISSUER}/{ISTIO_ISSUER}\"]\n{when}")
    };
    dir.write("ap.yaml", &policy(""));
    let p = gateway(dir.path(), httpbin.addr()).await;

    let none = get(port, "/headers", None).await;
    assert_eq!(
        (none.status.as_u16(), none.body.as_str()),
        (403, "RBAC: access denied")
    );
    assert_eq!(
        get(port, "/headers", Some("bad.token.here")).await.status,
        401
    );
    let demo = signer.istio_sample(json!({}));
    let ok = get(port, "/headers", Some(&demo)).await;
    assert_eq!(ok.status, 200);
    assert!(
        !ok.body.to_ascii_lowercase().contains("authorization"),
        "{}",
        ok.body
    );

    dir.write(
        "ap.yaml",
        &policy("    when:\n    - key: request.auth.claims[groups]\n      values: [\"group1\"]\n"),
    );
    p.reload().await.unwrap().unwrap();
    assert_eq!(get(port, "/headers", Some(&demo)).await.status, 403);
    let groups = signer.istio_sample(json!({"groups": ["group1", "group2"]}));
    assert_eq!(get(port, "/headers", Some(&groups)).await.status, 200);
    p.shutdown().await;
}

/// Copy JWT claims to HTTP headers: `outputClaimToHeaders` sets the header from the verified
/// token (nested claims with `.`), and a client cannot set it itself.
#[tokio::test]
async fn output_claim_to_headers_reaches_the_upstream() {
    let httpbin = backend("httpbin", "v1").await;
    let signer = JwtSigner::new("k1");
    let dir = ConfigDir::new();
    let port = free_port();
    dir.write(
        "gw.yaml",
        &gateway_yaml(
            port,
            "  - route:\n    - destination:\n        port:\n          number: 8000\n        host: httpbin.foo.svc.cluster.local\n",
        ),
    );
    dir.write(
        "ra.yaml",
        &request_authentication(
            &signer,
            "    outputClaimToHeaders:\n    - header: \"x-jwt-claim-foo\"\n      claim: \"foo\"\n    - header: \"x-jwt-tier\"\n      claim: \"account.tier\"\n",
        ),
    );
    let p = gateway(dir.path(), httpbin.addr()).await;
    let token = signer.istio_sample(json!({"account": {"tier": "gold"}}));
    let r = get(port, "/headers", Some(&token)).await;
    assert_eq!(r.status, 200);
    let doc: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(doc["headers"]["x-jwt-claim-foo"], "bar", "{}", r.body);
    assert_eq!(doc["headers"]["x-jwt-tier"], "gold", "{}", r.body);
    p.shutdown().await;
}
