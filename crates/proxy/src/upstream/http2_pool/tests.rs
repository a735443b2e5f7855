use super::*;

use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::upstream::connect::ConnectSettings;

fn settings(f: impl FnOnce(&mut PoolSettings)) -> PoolSettings {
    let mut s = PoolSettings {
        connect: ConnectSettings {
            timeout: Duration::from_secs(2),
            keepalive: None,
            tls: None,
            proxy_protocol: None,
        },
        idle_timeout: None,
        max_requests_per_connection: 0,
        max_connection_duration: None,
        max_concurrent_streams: 0,
        h2_keepalive: None,
    };
    f(&mut s);
    s
}

/// An HTTP/2 server (hyper) answering each request after `delay`, counting connections.
async fn h2_server(delay: Duration) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |_req| async move {
                    tokio::time::sleep(delay).await;
                    Ok::<_, std::convert::Infallible>(Response::new(http_body_util::Full::new(
                        bytes::Bytes::from_static(b"ok"),
                    )))
                });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(s), service)
                    .await;
            });
        }
    });
    (addr, accepted)
}

fn request() -> Request<Body> {
    Request::builder()
        .uri("http://app/")
        .version(http::Version::HTTP_2)
        .body(Body::empty())
        .unwrap()
}

async fn get(pool: &Http2Pool, addr: &str) -> u16 {
    let (resp, slot) = pool.send(&Target::shared(addr), request()).await.unwrap();
    let status = resp.status().as_u16();
    resp.into_body().collect().await.unwrap();
    drop(slot);
    status
}

#[tokio::test]
async fn max_concurrent_streams_opens_another_connection() {
    let (addr, accepted) = h2_server(Duration::from_millis(300)).await;
    let pool = Http2Pool::new(settings(|s| s.max_concurrent_streams = 2));
    let sends = (0..5).map(|_| get(&pool, &addr));
    let statuses = futures_util::future::join_all(sends).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    // 2 + 2 + 1 streams.
    assert_eq!(accepted.load(Ordering::SeqCst), 3);
    // Every stream has ended: the next requests fit on the connections held.
    for _ in 0..3 {
        assert_eq!(get(&pool, &addr).await, 200);
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn without_a_stream_limit_one_connection_carries_all() {
    let (addr, accepted) = h2_server(Duration::from_millis(100)).await;
    let pool = Http2Pool::new(settings(|_| {}));
    assert_eq!(get(&pool, &addr).await, 200);
    let statuses = futures_util::future::join_all((0..5).map(|_| get(&pool, &addr))).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_aged_connection_finishes_its_stream_and_gets_no_new_one() {
    let (addr, accepted) = h2_server(Duration::from_millis(400)).await;
    let pool = Http2Pool::new(settings(|s| {
        s.max_connection_duration = Some(Duration::from_millis(150))
    }));
    // The stream outlives the connection's duration and still completes.
    assert_eq!(get(&pool, &addr).await, 200);
    assert_eq!(get(&pool, &addr).await, 200);
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
    // Left alone, an aged connection is dropped from the pool.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while pool.held() > 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(pool.held(), 0);
}

/// A peer that completes the HTTP/2 handshake but never answers a PING: counts the PINGs it
/// got and whether the client closed the connection.
async fn silent_h2_peer() -> (String, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let pings = Arc::new(AtomicUsize::new(0));
    let closed = Arc::new(AtomicUsize::new(0));
    let (p, c) = (pings.clone(), closed.clone());
    tokio::spawn(async move {
        let Ok((mut s, _)) = listener.accept().await else {
            return;
        };
        let mut preface = [0u8; 24];
        if s.read_exact(&mut preface).await.is_err() {
            return;
        }
        // Our (empty) SETTINGS, then the acknowledgement of the client's.
        let _ = s.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).await;
        let _ = s.write_all(&[0, 0, 0, 4, 1, 0, 0, 0, 0]).await;
        loop {
            let mut head = [0u8; 9];
            if s.read_exact(&mut head).await.is_err() {
                c.fetch_add(1, Ordering::SeqCst);
                return;
            }
            let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
            let mut payload = vec![0u8; len];
            if s.read_exact(&mut payload).await.is_err() {
                c.fetch_add(1, Ordering::SeqCst);
                return;
            }
            // A PING that is not itself an acknowledgement.
            if head[3] == 6 && head[4] & 1 == 0 {
                p.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    (addr, pings, closed)
}

#[tokio::test]
async fn an_unanswered_keepalive_ping_closes_the_connection() {
    let (addr, pings, closed) = silent_h2_peer().await;
    let pool = Http2Pool::new(settings(|s| {
        s.h2_keepalive = Some(sluice_config::policy::H2KeepAlive {
            interval: Duration::from_millis(100),
            timeout: Duration::from_millis(100),
        })
    }));
    // The peer never answers: the request fails when the keepalive gives up on the connection.
    let sent = tokio::time::timeout(
        Duration::from_secs(10),
        pool.send(&Target::shared(&addr), request()),
    )
    .await
    .expect("the keepalive closed the connection");
    assert!(sent.is_err());
    assert!(pings.load(Ordering::SeqCst) >= 1);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while closed.load(Ordering::SeqCst) == 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        closed.load(Ordering::SeqCst),
        1,
        "the connection was closed"
    );
}

#[tokio::test]
async fn answered_keepalive_pings_keep_the_connection() {
    let (addr, accepted) = h2_server(Duration::ZERO).await;
    let pool = Http2Pool::new(settings(|s| {
        s.h2_keepalive = Some(sluice_config::policy::H2KeepAlive {
            interval: Duration::from_millis(50),
            timeout: Duration::from_millis(200),
        })
    }));
    for _ in 0..3 {
        assert_eq!(get(&pool, &addr).await, 200);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}
