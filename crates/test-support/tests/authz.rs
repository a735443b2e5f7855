//! AuthorizationPolicy with the YAML of Istio's tasks: Authorization for TCP traffic (tcp-echo
//! on three ports of one workload), Explicit deny, Ingress access control by IP, Dry run.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::Path;

use sluice_test_support::{
    backend, free_port, proxy, service_yaml, tcp_line, Backend, BackendArgs, BackendHandle,
    ConfigDir, ProxyHandle, TestClient,
};

fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

async fn tcp_echo(prefix: &str) -> BackendHandle {
    let mut args = BackendArgs::ephemeral("tcp-echo", "v1");
    args.tcp_echo = Some(prefix.to_string());
    Backend::start(args).await.unwrap()
}

/// The tcp-echo workload in namespace foo: one TCP ingress port per entry of `ports`, each in
/// front of `echo`.
async fn tcp_echo_sidecar(dir: &Path, ports: &[u16], echo: SocketAddr) -> ProxyHandle {
    let ingress: String = ports
        .iter()
        .map(|p| format!("  - port:\n      number: {p}\n      protocol: TCP\n      name: tcp-{p}\n    defaultEndpoint: {echo}\n"))
        .collect();
    std::fs::write(
        dir.join("sidecar.yaml"),
        format!("apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata:\n  name: tcp-echo\n  namespace: foo\nspec:\n  workloadSelector:\n    labels:\n      app: tcp-echo\n  ingress:\n{ingress}"),
    )
    .unwrap();
    proxy(dir, |o| {
        o.proxy.namespace = "foo".into();
        o.proxy.labels.insert("app".into(), "tcp-echo".into());
    })
    .await
}

fn tcp_policy(action: &str, operation: &str) -> String {
    format!("apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: tcp-policy\n  namespace: foo\nspec:\n  selector:\n    matchLabels:\n      app: tcp-echo\n  action: {action}\n  rules:\n  - to:\n    - operation:\n{operation}")
}

/// Authorization for TCP traffic: ALLOW by port, ALLOW with an HTTP-only field (the rule is
/// dropped, so nothing is allowed), DENY with an HTTP-only field (all denied), DENY scoped by
/// port (only that port denied). A denied connection is closed without an answer.
#[tokio::test]
async fn authorization_for_tcp_traffic() {
    let echo = tcp_echo("hello").await;
    let dir = ConfigDir::new();
    let (p9000, p9001, p9002) = (free_port(), free_port(), free_port());
    let ports = |a: u16, b: Option<u16>| match b {
        Some(b) => format!("        ports: [\"{a}\", \"{b}\"]\n"),
        None => format!("        ports: [\"{a}\"]\n"),
    };
    dir.write("ap.yaml", &tcp_policy("ALLOW", &ports(p9000, Some(p9001))));
    let p = tcp_echo_sidecar(dir.path(), &[p9000, p9001, p9002], echo.addr()).await;
    let answered = |port: u16| async move { tcp_line(local(port), "world").await == "hello world" };

    assert!(answered(p9000).await);
    assert!(answered(p9001).await);
    assert!(
        !answered(p9002).await,
        "a port outside the ALLOW list got through"
    );

    dir.write(
        "ap.yaml",
        &tcp_policy(
            "ALLOW",
            &format!("        methods: [\"GET\"]\n{}", ports(p9000, None)),
        ),
    );
    p.reload().await.unwrap().unwrap();
    assert!(
        !answered(p9000).await,
        "ALLOW with methods matched a TCP connection"
    );
    assert!(!answered(p9001).await);

    dir.write(
        "ap.yaml",
        &tcp_policy("DENY", "        methods: [\"GET\"]\n"),
    );
    p.reload().await.unwrap().unwrap();
    assert!(
        !answered(p9000).await,
        "DENY made of HTTP-only fields must deny all TCP"
    );
    assert!(!answered(p9001).await);

    dir.write(
        "ap.yaml",
        &tcp_policy(
            "DENY",
            &format!("        methods: [\"GET\"]\n{}", ports(p9000, None)),
        ),
    );
    p.reload().await.unwrap().unwrap();
    assert!(!answered(p9000).await);
    assert!(
        answered(p9001).await,
        "DENY scoped to another port denied this one"
    );
    p.shutdown().await;
}

/// An ingress gateway in front of httpbin with `policies` applied to it.
async fn gateway(dir: &Path, httpbin: SocketAddr, port: u16) -> ProxyHandle {
    std::fs::write(
        dir.join("httpbin.yaml"),
        format!(
            "{}---\napiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata:\n  name: httpbin-gateway\n  namespace: foo\nspec:\n  selector:\n    istio: ingressgateway\n  servers:\n  - port:\n      number: {port}\n      name: http\n      protocol: HTTP\n    hosts:\n    - \"*\"\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: httpbin\n  namespace: foo\nspec:\n  hosts:\n  - \"*\"\n  gateways:\n  - httpbin-gateway\n  http:\n  - route:\n    - destination:\n        port:\n          number: 8000\n        host: httpbin.foo.svc.cluster.local\n",
            service_yaml("httpbin.foo.svc.cluster.local", 8000, &[("v1", httpbin)])
        ),
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

fn gateway_policy(name: &str, spec: &str) -> String {
    format!("apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: {name}\n  namespace: istio-system\nspec:\n  selector:\n    matchLabels:\n      istio: ingressgateway\n{spec}")
}

/// Explicit deny: a DENY on `x-token` not being `admin` refuses requests without it (403) and
/// lets `x-token: admin` through; DENY wins over an ALLOW that matches.
#[tokio::test]
async fn explicit_deny_overrides_allow() {
    let httpbin = backend("httpbin", "v1").await;
    let dir = ConfigDir::new();
    let port = free_port();
    dir.write(
        "deny.yaml",
        &gateway_policy(
            "deny-method-get",
            "  action: DENY\n  rules:\n  - to:\n    - operation:\n        methods: [\"GET\"]\n    when:\n    - key: request.headers[x-token]\n      notValues: [\"admin\"]\n",
        ),
    );
    dir.write(
        "allow.yaml",
        &gateway_policy(
            "allow-path-ip",
            "  action: ALLOW\n  rules:\n  - to:\n    - operation:\n        paths: [\"/ip\", \"/headers\", \"/status/*\"]\n",
        ),
    );
    let p = gateway(dir.path(), httpbin.addr(), port).await;
    let client = TestClient::new();
    let get = |path: &'static str, token: Option<&'static str>| {
        let client = client.clone();
        async move {
            let headers: Vec<(&str, &str)> =
                token.map(|t| vec![("x-token", t)]).unwrap_or_default();
            client
                .get(local(port), "httpbin.example.com", path, &headers)
                .await
        }
    };
    let r = get("/headers", None).await;
    assert_eq!(
        (r.status.as_u16(), r.body.as_str()),
        (403, "RBAC: access denied")
    );
    assert_eq!(get("/headers", Some("guest")).await.status, 403);
    assert_eq!(get("/headers", Some("admin")).await.status, 200);
    // Allowed by no ALLOW rule: denied although the DENY does not match.
    assert_eq!(get("/get", Some("admin")).await.status, 403);
    p.shutdown().await;
}

/// Ingress access control by IP: `ipBlocks` matches the connection's peer, so an ALLOW for
/// another network refuses the local client and one for 127.0.0.1 admits it; an
/// `X-Forwarded-For` a client sends is not trusted for `remoteIpBlocks` (no trusted proxy).
#[tokio::test]
async fn ingress_access_control_by_ip_blocks() {
    let httpbin = backend("httpbin", "v1").await;
    let dir = ConfigDir::new();
    let port = free_port();
    let allow = |blocks: &str| {
        gateway_policy(
            "ingress-policy",
            &format!("  action: ALLOW\n  rules:\n  - from:\n    - source:\n        {blocks}\n"),
        )
    };
    dir.write("ap.yaml", &allow("ipBlocks: [\"10.0.0.0/8\"]"));
    let p = gateway(dir.path(), httpbin.addr(), port).await;
    let get = |xff: Option<&'static str>| async move {
        let headers: Vec<(&str, &str)> = xff
            .map(|v| vec![("x-forwarded-for", v)])
            .unwrap_or_default();
        TestClient::new()
            .get(local(port), "httpbin.example.com", "/ip", &headers)
            .await
            .status
    };
    assert_eq!(get(None).await, 403);
    dir.write("ap.yaml", &allow("ipBlocks: [\"127.0.0.1\"]"));
    p.reload().await.unwrap().unwrap();
    assert_eq!(get(None).await, 200);
    dir.write("ap.yaml", &allow("remoteIpBlocks: [\"10.1.2.3\"]"));
    p.reload().await.unwrap().unwrap();
    assert_eq!(
        get(Some("10.1.2.3")).await,
        403,
        "a client-sent X-Forwarded-For was trusted"
    );
    dir.write("ap.yaml", &allow("remoteIpBlocks: [\"127.0.0.0/8\"]"));
    p.reload().await.unwrap().unwrap();
    assert_eq!(get(Some("10.1.2.3")).await, 200);
    p.shutdown().await;
}

/// Dry run: a DENY marked `istio.io/dry-run: "true"` leaves traffic alone.
#[tokio::test]
async fn dry_run_policy_does_not_deny() {
    let httpbin = backend("httpbin", "v1").await;
    let dir = ConfigDir::new();
    let port = free_port();
    dir.write(
        "ap.yaml",
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: deny-path-headers\n  namespace: istio-system\n  annotations:\n    \"istio.io/dry-run\": \"true\"\nspec:\n  selector:\n    matchLabels:\n      istio: ingressgateway\n  action: DENY\n  rules:\n  - to:\n    - operation:\n        paths: [\"/headers\"]\n",
    );
    let p = gateway(dir.path(), httpbin.addr(), port).await;
    let r = TestClient::new()
        .get(local(port), "httpbin.example.com", "/headers", &[])
        .await;
    assert_eq!(r.status, 200);
    p.shutdown().await;
}

/// Path normalization (Istio's default BASE): a DENY on `/headers` cannot be bypassed with dot
/// segments, escapes or backslashes, the upstream gets the normalized path, `%00` is refused.
#[tokio::test]
async fn a_deny_on_a_path_is_not_bypassed_by_unnormalized_forms() {
    let httpbin = backend("httpbin", "v1").await;
    let dir = ConfigDir::new();
    let port = free_port();
    dir.write(
        "deny.yaml",
        &gateway_policy(
            "deny-headers",
            "  action: DENY\n  rules:\n  - to:\n    - operation:\n        paths: [\"/headers\"]\n",
        ),
    );
    let p = gateway(dir.path(), httpbin.addr(), port).await;
    for path in [
        "/headers",
        "/status/../headers",
        "/%68eaders",
        "/./headers",
        "/status/%2e%2e/headers",
    ] {
        let r = TestClient::new()
            .get(local(port), "httpbin.example.com", path, &[])
            .await;
        assert_eq!(r.status, 403, "{path} got through: {}", r.body);
    }
    let r = TestClient::new()
        .get(
            local(port),
            "httpbin.example.com",
            "/anything/a/../b?x=/../y",
            &[],
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(httpbin.last_received().unwrap().path, "/anything/b?x=/../y");
    let r = TestClient::new()
        .get(local(port), "httpbin.example.com", "/a%00b", &[])
        .await;
    assert_eq!(r.status, 400);
    p.shutdown().await;
}
