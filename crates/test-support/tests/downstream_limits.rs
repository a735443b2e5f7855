//! What a client may cost: the header-read timeout, the header-size cap, the idle timeout and
//! the connection budget, each against a running proxy.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use sluice_test_support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const HOST: &str = "app.default.svc.cluster.local";

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Service `app` on one backend, with the proxy's options set by `configure`.
async fn setup(
    endpoint: SocketAddr,
    configure: impl FnOnce(&mut RunOptions),
) -> (ConfigDir, ProxyHandle, u16) {
    let port = free_port();
    let dir = ConfigDir::new();
    dir.write("svc.yaml", &service_yaml(HOST, port, &[("v1", endpoint)]));
    let p = proxy(dir.path(), configure).await;
    (dir, p, port)
}

/// Reads until the proxy closes the connection; what it sent, and how long that took. A reset
/// counts as a close.
async fn read_until_closed(s: &mut TcpStream, within: Duration) -> (String, Duration) {
    let started = Instant::now();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(within, s.read(&mut buf)).await {
            Err(_) => panic!(
                "still open after {within:?}; got {:?}",
                String::from_utf8_lossy(&out)
            ),
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
    (
        String::from_utf8_lossy(&out).into_owned(),
        started.elapsed(),
    )
}

/// Reads one response with a `content-length` body from a keep-alive connection.
async fn read_response(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("response timed out")
            .unwrap();
        assert!(n > 0, "closed before the response ended");
        out.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&out).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .expect("content-length");
            if body.len() >= length {
                return text;
            }
        }
    }
}

#[tokio::test]
async fn a_partial_request_head_is_closed_after_the_header_read_timeout() {
    let v1 = backend("app", "v1").await;
    let (_d, p, port) = setup(v1.addr(), |o| {
        o.options.downstream.header_read_timeout = Some(Duration::from_secs(1));
    })
    .await;
    // A head that never ends, dripped a byte at a time.
    let mut dripping = TcpStream::connect(addr(port)).await.unwrap();
    dripping
        .write_all(b"GET / HTTP/1.1\r\nhost: app\r\n")
        .await
        .unwrap();
    let drip = tokio::spawn(async move {
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if dripping.write_all(b"x").await.is_err() {
                break;
            }
        }
        dripping
    });
    // A connection that sends nothing at all is held to the same deadline.
    let mut silent = TcpStream::connect(addr(port)).await.unwrap();
    let (sent, took) = read_until_closed(&mut silent, Duration::from_secs(10)).await;
    assert!(sent.is_empty(), "{sent:?}");
    assert!(took >= Duration::from_millis(900), "closed early: {took:?}");
    let mut dripping = drip.await.unwrap();
    let (_, _) = read_until_closed(&mut dripping, Duration::from_secs(10)).await;
    assert_eq!(v1.requests(), 0);
    // A whole head in time is served.
    let r = TestClient::new().get(addr(port), "app", "/", &[]).await;
    assert_eq!(r.status, 200);
    p.shutdown().await;
}

#[tokio::test]
async fn a_100_kib_header_gets_431_on_http1_and_is_refused_on_http2() {
    let v1 = backend("app", "v1").await;
    let (_d, p, port) = setup(v1.addr(), |_| {}).await;
    let big = "b".repeat(100 * 1024);

    let mut s = TcpStream::connect(addr(port)).await.unwrap();
    let head = format!("GET / HTTP/1.1\r\nhost: app\r\nx-big: {big}\r\n\r\n");
    // The proxy may close before it has read it all: a failed write is part of the answer.
    let _ = s.write_all(head.as_bytes()).await;
    let (answer, _) = read_until_closed(&mut s, Duration::from_secs(10)).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer:?}");

    // One HTTP/2 connection per request, with prior knowledge and `:authority` app.
    let send = |value: String| async move {
        let io = TokioIo::new(TcpStream::connect(addr(port)).await.unwrap());
        let (mut sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .unwrap();
        tokio::spawn(conn);
        let req = http::Request::get("http://app/")
            .header("x-big", value)
            .body(Full::new(Bytes::new()))
            .unwrap();
        match tokio::time::timeout(Duration::from_secs(10), sender.send_request(req))
            .await
            .expect("HTTP/2 request timed out")
        {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let _ = resp.into_body().collect().await;
                Some(status)
            }
            Err(_) => None,
        }
    };
    let refused = send(big.clone()).await;
    assert_eq!(refused, Some(431));
    assert_eq!(v1.requests(), 0, "no oversized head reached the backend");

    // Under the cap both protocols carry it (HTTP/2 advertised 16 KiB before).
    let medium = "m".repeat(30 * 1024);
    assert_eq!(send(medium.clone()).await, Some(200));
    let r = TestClient::new()
        .get(addr(port), "app", "/", &[("x-medium", &medium)])
        .await;
    assert_eq!(r.status, 200);
    p.shutdown().await;
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_but_a_slow_request_is_not() {
    let mut args = BackendArgs::ephemeral("app", "v1");
    args.delay = Some(Duration::from_millis(1500));
    let slow = Backend::start(args).await.unwrap();
    let (_d, p, port) = setup(slow.addr(), |o| {
        o.options.downstream.idle_timeout = Some(Duration::from_secs(1));
    })
    .await;
    let mut s = TcpStream::connect(addr(port)).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nhost: app\r\n\r\n")
        .await
        .unwrap();
    // In flight longer than the idle timeout: not idle.
    let first = read_response(&mut s).await;
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    // Kept alive for a second request...
    s.write_all(b"GET / HTTP/1.1\r\nhost: app\r\n\r\n")
        .await
        .unwrap();
    assert!(read_response(&mut s).await.starts_with("HTTP/1.1 200"));
    // ...then closed once idle for the timeout.
    let (rest, took) = read_until_closed(&mut s, Duration::from_secs(10)).await;
    assert!(rest.is_empty(), "{rest:?}");
    assert!(took >= Duration::from_millis(900), "closed early: {took:?}");
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_refuses_the_next_connection_while_admin_answers() {
    let v1 = backend("app", "v1").await;
    let (_d, p, port) = setup(v1.addr(), |o| {
        o.options.downstream.max_connections = 3;
    })
    .await;
    let c = TestClient::new();
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(TcpStream::connect(addr(port)).await.unwrap());
    }
    // The accept queue is first in, first out: the fourth finds the budget spent.
    let mut refused = TcpStream::connect(addr(port)).await.unwrap();
    let (sent, _) = read_until_closed(&mut refused, Duration::from_secs(5)).await;
    assert!(sent.is_empty(), "{sent:?}");
    assert_eq!(c.admin(p.admin_addr, "/ready").await.status, 200);
    // The held connections are served.
    held[0]
        .write_all(b"GET / HTTP/1.1\r\nhost: app\r\n\r\n")
        .await
        .unwrap();
    assert!(read_response(&mut held[0])
        .await
        .starts_with("HTTP/1.1 200"));
    let metrics = c.admin(p.admin_addr, "/stats/prometheus").await.body;
    let refusals: f64 = metrics
        .lines()
        .find(|l| l.starts_with("sluice_downstream_connections_refused_total "))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("{metrics}"));
    assert!(refusals >= 1.0, "{refusals}");
    // A slot given back is taken by the next client.
    drop(held.pop());
    assert_eventually(
        Duration::from_secs(5),
        "a new connection is served",
        || async {
            let Ok(mut s) = TcpStream::connect(addr(port)).await else {
                return false;
            };
            if s.write_all(b"GET / HTTP/1.1\r\nhost: app\r\nconnection: close\r\n\r\n")
                .await
                .is_err()
            {
                return false;
            }
            let mut answer = String::new();
            let _ =
                tokio::time::timeout(Duration::from_secs(2), s.read_to_string(&mut answer)).await;
            answer.starts_with("HTTP/1.1 200")
        },
    )
    .await;
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfinished_oversized_heads_are_answered_and_closed_not_held() {
    let v1 = backend("app", "v1").await;
    let (_d, p, port) = setup(v1.addr(), |_| {}).await;
    // Each sends 200 KiB of a head that never ends (the issue held 1,000 × 400 KB this way).
    let mut tasks = Vec::new();
    for _ in 0..50 {
        tasks.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(addr(port)).await.unwrap();
            let mut head = b"GET / HTTP/1.1\r\nhost: app\r\nx-a: ".to_vec();
            head.extend(std::iter::repeat_n(b'a', 200 * 1024));
            let _ = s.write_all(&head).await;
            read_until_closed(&mut s, Duration::from_secs(10)).await.0
        }));
    }
    for t in tasks {
        let answer = t.await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 431"), "{answer:?}");
    }
    assert_eq!(v1.requests(), 0);
    assert_eventually(
        Duration::from_secs(5),
        "every connection closed",
        || async {
            let metrics = TestClient::new()
                .admin(p.admin_addr, "/stats/prometheus")
                .await
                .body;
            metrics
                .lines()
                .any(|l| l == "sluice_downstream_connections_active 0")
        },
    )
    .await;
    p.shutdown().await;
}

/// An HTTP/2 PING flood is cut: past 1,000 control frames a second the connection is closed,
/// so a client cannot keep a core busy answering PINGs; the proxy keeps serving others.
#[tokio::test]
async fn an_http2_ping_flood_closes_the_connection() {
    let v1 = backend("app", "v1").await;
    let (_d, p, port) = setup(v1.addr(), |_| {}).await;
    let mut s = TcpStream::connect(addr(port)).await.unwrap();
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
    for i in 0..5000u32 {
        out.extend_from_slice(&[0, 0, 8, 6, 0, 0, 0, 0, 0]);
        out.extend_from_slice(&u64::from(i).to_be_bytes());
    }
    let (mut rd, mut wr) = s.split();
    let writer = async {
        // The proxy may close before it has read everything: a failed write is part of the answer.
        let _ = wr.write_all(&out).await;
    };
    let reader = async {
        let mut got = 0usize;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match tokio::time::timeout(Duration::from_secs(10), rd.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break got,
                Ok(Ok(n)) => got += n,
                Err(_) => panic!("the flooding connection was not closed"),
            }
        }
    };
    let ((), received) = tokio::join!(writer, reader);
    // Every PONG is 17 bytes: far fewer than 5,000 of them came back.
    assert!(received < 5000 * 17, "{received} bytes answered");
    let r = TestClient::new().get(addr(port), "app", "/", &[]).await;
    assert_eq!(r.status, 200);
    p.shutdown().await;
}
