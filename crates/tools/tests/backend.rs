//! End-to-end tests of the test backend over real loopback sockets.

// Helpers outside #[test] fns are not covered by clippy.toml's test allowances.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use clap::Parser;
use common::{get, get_within, send};
use sluice_tools::{Backend, BackendArgs};

async fn start(args: BackendArgs) -> sluice_tools::BackendHandle {
    Backend::start(args).await.expect("backend starts")
}

#[tokio::test]
async fn default_route_counts_requests() {
    let backend = start(BackendArgs::ephemeral("app-backend", "v2")).await;
    for n in 1..=3 {
        let reply = get(backend.addr(), "/some/path?x=1").await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.body, format!("app-backend v2 - request {n}\n"));
        assert_eq!(reply.headers["x-service"], "app-backend");
        assert_eq!(reply.headers["x-version"], "v2");
        assert_eq!(reply.headers["content-type"], "text/plain");
    }
    assert_eq!(backend.requests(), 3);
    let received = backend.received();
    assert_eq!(received.len(), 3);
    let last = backend.last_received().unwrap();
    assert_eq!(last.path, "/some/path?x=1");
    assert_eq!(last.method, "GET");
    assert_eq!(last.version, "HTTP/1.1");
    assert_eq!(last.header("x-test"), Some("yes"));
    assert_eq!(last.host(), Some(backend.addr().to_string().as_str()));
    assert!(last.peer.ip().is_loopback());
    backend.clear_received();
    assert!(backend.received().is_empty());
    assert_eq!(backend.requests(), 3);
}

#[tokio::test]
async fn headers_route_echoes_request() {
    let backend = start(BackendArgs::ephemeral("httpbin", "v1")).await;
    let doc = get(backend.addr(), "/headers").await.json();
    assert_eq!(doc["headers"]["x-test"], "yes");
    assert_eq!(doc["headers"]["host"], backend.addr().to_string());
    assert_eq!(doc["method"], "GET");
    assert_eq!(doc["path"], "/headers");
    assert_eq!(doc["version"], "HTTP/1.1");
}

#[tokio::test]
async fn anything_route_echoes_body() {
    let backend = start(BackendArgs::ephemeral("httpbin", "v1")).await;
    let reply = send(
        backend.addr(),
        "POST",
        "/anything/x?a=b",
        "hello body",
        false,
    )
    .await;
    assert_eq!(reply.headers["content-type"], "application/json");
    let doc = reply.json();
    assert_eq!(doc["method"], "POST");
    assert_eq!(doc["path"], "/anything/x");
    assert_eq!(doc["query"], "a=b");
    assert_eq!(doc["body"], "hello body");
    assert_eq!(doc["body_len"], 10);
    assert_eq!(backend.last_received().unwrap().body_len, 10);
}

#[tokio::test]
async fn status_and_delay_routes() {
    let backend = start(BackendArgs::ephemeral("httpbin", "v1")).await;
    let reply = get(backend.addr(), "/status/418").await;
    assert_eq!(reply.status, 418);
    assert_eq!(reply.headers["x-version"], "v1");
    assert_eq!(get(backend.addr(), "/status/abc").await.status, 400);
    assert_eq!(get(backend.addr(), "/status/101").await.status, 400);

    let started = Instant::now();
    let reply = get(backend.addr(), "/delay/0.1").await;
    assert_eq!(reply.status, 200);
    assert!(started.elapsed() >= Duration::from_millis(100));
    assert_eq!(get(backend.addr(), "/delay/-1").await.status, 400);
}

#[tokio::test]
async fn hang_after_stops_answering() {
    let args = BackendArgs {
        hang_after: Some(2),
        ..BackendArgs::ephemeral("app-backend", "v1")
    };
    let backend = start(args).await;
    let limit = Duration::from_millis(300);
    assert!(get_within(backend.addr(), "/", limit).await.is_some());
    assert!(get_within(backend.addr(), "/", limit).await.is_some());
    assert!(get_within(backend.addr(), "/", limit).await.is_none());
    assert!(get_within(backend.addr(), "/headers", limit)
        .await
        .is_none());
    assert_eq!(backend.requests(), 4);
}

#[tokio::test]
async fn fail_rate_and_delay_faults() {
    let args = BackendArgs {
        fail_rate: 1.0,
        ..BackendArgs::ephemeral("app-backend", "v1")
    };
    let backend = start(args).await;
    let reply = get(backend.addr(), "/").await;
    assert_eq!(reply.status, 503);
    assert_eq!(reply.headers["x-service"], "app-backend");

    let args = BackendArgs {
        delay: Some(Duration::from_millis(100)),
        ..BackendArgs::ephemeral("slow", "v1")
    };
    let slow = start(args).await;
    let started = Instant::now();
    assert_eq!(get(slow.addr(), "/").await.status, 200);
    assert!(started.elapsed() >= Duration::from_millis(100));
}

#[tokio::test]
async fn serves_h2c_prior_knowledge() {
    let backend = start(BackendArgs::ephemeral("httpbin", "v1")).await;
    let reply = send(backend.addr(), "GET", "/headers", "", true).await;
    assert_eq!(reply.status, 200);
    let doc = reply.json();
    assert_eq!(doc["version"], "HTTP/2.0");
    assert_eq!(doc["headers"]["host"], backend.addr().to_string());
    let last = backend.last_received().unwrap();
    assert_eq!(last.version, "HTTP/2.0");
    assert_eq!(last.header("host"), None);
    assert_eq!(last.host(), Some(backend.addr().to_string().as_str()));
}

#[tokio::test]
async fn start_on_and_shutdown_release_the_port() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend = Backend::start_on(listener, BackendArgs::ephemeral("a", "v1"))
        .await
        .unwrap();
    let addr = backend.addr();
    assert_eq!(get(addr, "/").await.status, 200);
    backend.shutdown().await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn rejects_invalid_arguments() {
    let args = BackendArgs {
        fail_rate: 1.5,
        ..BackendArgs::ephemeral("a", "v1")
    };
    assert!(Backend::start(args).await.is_err());
    let args = BackendArgs::ephemeral("bad\nname", "v1");
    assert!(Backend::start(args).await.is_err());
}

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    backend: BackendArgs,
}

#[test]
fn cli_flags_parse() {
    let cli = Cli::try_parse_from(["b"]).unwrap();
    assert_eq!(
        format!("{:?}", cli.backend),
        format!("{:?}", BackendArgs::default())
    );
    let cli = Cli::try_parse_from([
        "b",
        "--listen",
        "127.0.0.1:0",
        "--name",
        "reviews",
        "--version",
        "v3",
        "--hang-after",
        "5",
        "--fail-rate",
        "0.25",
        "--delay",
        "1.5s",
    ])
    .unwrap();
    let b = cli.backend;
    assert_eq!(
        (b.listen.as_str(), b.name.as_str(), b.version.as_str()),
        ("127.0.0.1:0", "reviews", "v3")
    );
    assert_eq!(b.hang_after, Some(5));
    assert_eq!(b.fail_rate, 0.25);
    assert_eq!(b.delay, Some(Duration::from_millis(1500)));
    assert!(Cli::try_parse_from(["b", "--fail-rate", "2"]).is_err());
    assert!(Cli::try_parse_from(["b", "--delay", "100"]).is_err());
}
