//! The request's authority as Envoy settles it: the URI authority replaces Host, a missing or
//! repeated Host is refused with 400, CONNECT with 403, and HTTP/2's `:authority` keeps working.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;

use sluice_test_support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Two services on one mesh port, told apart by Host only.
async fn two_hosts() -> (ConfigDir, ProxyHandle, u16, BackendHandle, BackendHandle) {
    let a = backend("a", "v1").await;
    let b = backend("b", "v1").await;
    let port = free_port();
    let dir = ConfigDir::new();
    dir.write(
        "a.yaml",
        &service_yaml("a.example.com", port, &[("v1", a.addr())]),
    );
    dir.write(
        "b.yaml",
        &service_yaml("b.example.com", port, &[("v1", b.addr())]),
    );
    let p = proxy(dir.path(), |o| o.watch = false).await;
    (dir, p, port, a, b)
}

/// Sends `bytes` on a fresh connection and returns everything until the proxy closes it.
async fn raw(port: u16, bytes: &str) -> String {
    let mut s = TcpStream::connect(addr(port)).await.unwrap();
    s.write_all(bytes.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("the proxy kept the connection open")
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn the_absolute_form_authority_routes_and_is_forwarded_as_host() {
    let (_dir, p, port, a, b) = two_hosts().await;
    let resp = raw(
        port,
        "GET http://a.example.com/x HTTP/1.1\r\nhost: b.example.com\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let got = a.last_received().expect("a got the request");
    assert_eq!(got.header_all("host"), ["a.example.com"]);
    assert_eq!(got.path, "/x");
    assert_eq!(b.requests(), 0);
    p.shutdown().await;
}

#[tokio::test]
async fn a_missing_or_repeated_host_is_400_and_connect_is_403() {
    let (_dir, p, port, a, b) = two_hosts().await;
    let cases = [
        ("GET / HTTP/1.1\r\nconnection: close\r\n\r\n", "HTTP/1.1 400"),
        ("GET / HTTP/1.0\r\n\r\n", "HTTP/1.0 400"),
        (
            "GET / HTTP/1.1\r\nhost: a.example.com\r\nhost: b.example.com\r\nconnection: close\r\n\r\n",
            "HTTP/1.1 400",
        ),
        (
            "CONNECT a.example.com:443 HTTP/1.1\r\nhost: a.example.com:443\r\nconnection: close\r\n\r\n",
            "HTTP/1.1 403",
        ),
    ];
    for (request, want) in cases {
        let resp = raw(port, request).await;
        assert!(resp.starts_with(want), "{request:?} got {resp}");
    }
    assert_eq!(a.requests() + b.requests(), 0);
    // HTTP/1.0 with a Host is served.
    let resp = raw(port, "GET / HTTP/1.0\r\nhost: b.example.com\r\n\r\n").await;
    assert!(resp.contains(" 200 "), "{resp}");
    assert_eq!(b.requests(), 1);
    p.shutdown().await;
}

#[tokio::test]
async fn http2_authority_routes_and_reaches_an_http1_upstream_as_host() {
    let (_dir, p, port, a, _b) = two_hosts().await;
    let mut args = sluice_tools::TrafficArgs::new(format!("http://127.0.0.1:{port}/"));
    args.requests = 2;
    args.http2 = true;
    args.headers = vec!["Host: a.example.com".into()];
    let report = sluice_tools::run_traffic(&args).await.unwrap();
    assert_eq!(report.status_count(200), 2, "{}", report.render());
    let got = a.last_received().unwrap();
    assert_eq!(got.version, "HTTP/1.1");
    assert_eq!(got.header_all("host"), ["a.example.com"]);
    p.shutdown().await;
}

/// The most common mistake, a Host the listener does not serve, gets Envoy's empty `404 NR`;
/// the access log says which Host was not found and which hosts the listener serves (the
/// first five, then a count).
#[tokio::test]
async fn a_host_no_virtual_host_serves_is_named_in_the_access_log() {
    let a = backend("a", "v1").await;
    let port = free_port();
    let dir = ConfigDir::new();
    for i in 0..7 {
        dir.write(
            &format!("a{i}.yaml"),
            &service_yaml(&format!("a{i}.example.com"), port, &[("v1", a.addr())]),
        );
    }
    let log = dir.path().join("access.log");
    let target = log.clone();
    let p = proxy(dir.path(), |o| {
        o.watch = false;
        o.telemetry.access_log.enabled = true;
        o.telemetry.access_log.target = sluice_telemetry::AccessLogTarget::File(target);
    })
    .await;
    let resp = raw(
        port,
        "GET / HTTP/1.1\r\nhost: app-backend\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 404"), "{resp}");
    assert!(resp.ends_with("\r\n\r\n"), "the body stays empty: {resp}");
    let expected = format!(
        "\"response_code_details\":\"route_not_found: no virtual host for Host \\\"app-backend\\\" on 127.0.0.1_{port}; it serves a0.example.com, a1.example.com, a2.example.com, a3.example.com, a4.example.com and 2 more\""
    );
    assert_eventually(Duration::from_secs(5), "the access log line", || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let ok = text.contains(&expected) && text.contains("\"response_flags\":\"NR\"");
        async move { ok }
    })
    .await;
    assert_eq!(a.requests(), 0);
    p.shutdown().await;
}
