//! Shutdown under load: clients looping on keep-alive connections see every request answered.
//! HTTP/1.1 responses carry `Connection: close` once the drain has begun (the client then stops
//! using the connection), HTTP/2 connections get a GOAWAY; no request in flight is reset.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use sluice_test_support::*;
use tokio::net::TcpStream;

const HOST: &str = "app.default.svc.cluster.local";
/// Bound of each client's loop: far more than a drain lets through.
const MAX_REQUESTS: usize = 1_000_000;

/// How a client's loop ended.
#[derive(Debug)]
enum Ended {
    /// A response said `Connection: close` and the connection then closed.
    Closed { answered: usize },
    /// HTTP/2: the connection stopped taking new streams (GOAWAY) between requests.
    GoAway { answered: usize },
    /// A request got no response: what the drain must never do.
    Failed { answered: usize, error: String },
}

fn get() -> Request<Empty<Bytes>> {
    Request::get("/")
        .header("host", "app")
        .body(Empty::new())
        .unwrap()
}

async fn http1_client(addr: SocketAddr, answered_total: Arc<AtomicUsize>) -> Ended {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut tx, conn) = http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    for answered in 0..MAX_REQUESTS {
        if let Err(e) = tx.ready().await {
            return Ended::Failed {
                answered,
                error: format!("connection closed between requests: {e}"),
            };
        }
        let resp = match tx.send_request(get()).await {
            Ok(r) => r,
            Err(error) => {
                return Ended::Failed {
                    answered,
                    error: format!("HTTP/1.1: {error:?}"),
                }
            }
        };
        let close = resp
            .headers()
            .get(http::header::CONNECTION)
            .is_some_and(|v| v == "close");
        if let Err(e) = resp.into_body().collect().await {
            return Ended::Failed {
                answered,
                error: format!("body: {e}"),
            };
        }
        answered_total.fetch_add(1, Ordering::Relaxed);
        if close {
            return Ended::Closed {
                answered: answered + 1,
            };
        }
    }
    Ended::Failed {
        answered: MAX_REQUESTS,
        error: "never asked to close".into(),
    }
}

async fn http2_client(addr: SocketAddr, answered_total: Arc<AtomicUsize>) -> Ended {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut tx, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    for answered in 0..MAX_REQUESTS {
        // Refused before a stream opens: the GOAWAY reached the client.
        if tx.ready().await.is_err() || tx.is_closed() {
            return Ended::GoAway { answered };
        }
        let mut req = get();
        *req.uri_mut() = format!("http://app{}", req.uri()).parse().unwrap();
        let resp = match tx.send_request(req).await {
            Ok(r) => r,
            // The GOAWAY arrived while the request waited for its stream: the server never saw
            // it (RFC 9113 §6.8: safe to send again on a new connection).
            Err(error) if never_processed(&error) => return Ended::GoAway { answered },
            Err(error) => {
                return Ended::Failed {
                    answered,
                    error: format!("HTTP/2: {error:?}"),
                }
            }
        };
        if let Err(e) = resp.into_body().collect().await {
            return Ended::Failed {
                answered,
                error: format!("body: {e}"),
            };
        }
        answered_total.fetch_add(1, Ordering::Relaxed);
    }
    Ended::Failed {
        answered: MAX_REQUESTS,
        error: "never told to go away".into(),
    }
}

/// An HTTP/2 request refused by a graceful GOAWAY (`NO_ERROR`) or dropped with its connection
/// before it was handed to it: never processed by the server, unlike a reset.
fn never_processed(e: &hyper::Error) -> bool {
    if e.is_canceled() {
        return true;
    }
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        if let Some(h2) = c.downcast_ref::<h2::Error>() {
            return h2.is_go_away() && h2.is_remote() && h2.reason() == Some(h2::Reason::NO_ERROR);
        }
        cause = c.source();
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_under_keep_alive_load_fails_no_request() {
    let v1 = backend("app", "v1").await;
    let port = free_port();
    let dir = ConfigDir::new();
    dir.write("svc.yaml", &service_yaml(HOST, port, &[("v1", v1.addr())]));
    let p = proxy(dir.path(), |o| o.watch = false).await;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let answered = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for _ in 0..12 {
        clients.push(tokio::spawn(http1_client(addr, answered.clone())));
    }
    for _ in 0..3 {
        clients.push(tokio::spawn(http2_client(addr, answered.clone())));
    }
    assert_eventually(Duration::from_secs(10), "every client is looping", || {
        let n = answered.load(Ordering::Relaxed);
        async move { n >= 15 * 20 }
    })
    .await;
    let started = Instant::now();
    p.shutdown().await;
    let drained_in = started.elapsed();
    let mut ended = Vec::new();
    for c in clients {
        ended.push(
            tokio::time::timeout(Duration::from_secs(10), c)
                .await
                .expect("a client still running after the drain")
                .unwrap(),
        );
    }
    let mut failed = Vec::new();
    let mut counted = 0;
    for e in &ended {
        match e {
            Ended::Closed { answered } | Ended::GoAway { answered } => counted += answered,
            Ended::Failed { answered, error } => {
                failed.push(format!("after {answered} answers: {error}"))
            }
        }
    }
    assert!(failed.is_empty(), "failed requests: {failed:#?}");
    assert_eq!(counted, answered.load(Ordering::Relaxed));
    // Every request the backend saw was answered: none was cut after it was processed.
    assert_eq!(v1.requests() as usize, answered.load(Ordering::Relaxed));
    // Each HTTP/1.1 client was told to close; none hung until the drain deadline.
    assert!(
        ended[..12]
            .iter()
            .all(|e| matches!(e, Ended::Closed { .. })),
        "{ended:#?}"
    );
    assert!(
        drained_in < Duration::from_secs(4),
        "drain took {drained_in:?}"
    );
}
