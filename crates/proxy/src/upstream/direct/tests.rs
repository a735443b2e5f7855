use super::*;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::upstream::connect::ConnectSettings;

/// What the scripted server saw.
#[derive(Default)]
struct Seen {
    connections: AtomicUsize,
    requests: Mutex<Vec<String>>,
}

/// A server answering the n-th request head of each connection with `replies[n % len]`, and
/// closing a connection after `close_after` replies.
async fn server(replies: Vec<Vec<u8>>, close_after: Option<usize>) -> (String, Arc<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let seen = Arc::new(Seen::default());
    let stats = seen.clone();
    let replies = Arc::new(replies);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            stats.connections.fetch_add(1, Ordering::SeqCst);
            let stats = stats.clone();
            let replies = replies.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut pending = Vec::new();
                let mut answered = 0;
                loop {
                    let Ok(n) = s.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    pending.extend_from_slice(&buf[..n]);
                    while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head: Vec<u8> = pending.drain(..end + 4).collect();
                        stats
                            .requests
                            .lock()
                            .unwrap()
                            .push(String::from_utf8_lossy(&head).into_owned());
                        let reply = &replies[answered % replies.len()];
                        if s.write_all(reply).await.is_err() {
                            return;
                        }
                        answered += 1;
                        if close_after.is_some_and(|c| answered >= c) {
                            return;
                        }
                    }
                }
            });
        }
    });
    (addr, seen)
}

fn pool(idle: Option<Duration>, max_requests: u32) -> DirectPool {
    DirectPool::new(PoolSettings {
        connect: ConnectSettings {
            timeout: Duration::from_secs(2),
            keepalive: None,
            tls: None,
            proxy_protocol: None,
        },
        idle_timeout: idle,
        max_requests_per_connection: max_requests,
        max_connection_duration: None,
        max_concurrent_streams: 0,
        h2_keepalive: None,
    })
}

fn request(method: Method) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri("/p?q=1")
        .header(http::header::HOST, "app")
        .body(Body::empty())
        .unwrap()
}

/// Sends a GET and reads the whole response: status, body, trailers.
async fn get(pool: &DirectPool, addr: &str) -> (u16, Vec<u8>, Option<http::HeaderMap>) {
    exchange(pool, addr, Method::GET).await
}

async fn exchange(
    pool: &DirectPool,
    addr: &str,
    method: Method,
) -> (u16, Vec<u8>, Option<http::HeaderMap>) {
    let resp = pool
        .send(&Target::shared(addr), &Outgoing::of(&request(method), addr))
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let collected = resp.into_body().collect().await.unwrap();
    let trailers = collected.trailers().cloned();
    (status, collected.to_bytes().to_vec(), trailers)
}

const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";

#[tokio::test]
async fn keep_alive_reuses_one_connection_and_writes_the_head_as_given() {
    let (addr, seen) = server(vec![OK.to_vec()], None).await;
    let pool = pool(None, 0);
    for _ in 0..5 {
        assert_eq!(get(&pool, &addr).await, (200, b"ok".to_vec(), None));
    }
    assert_eq!(seen.connections.load(Ordering::SeqCst), 1);
    assert_eq!(pool.held(), 1);
    assert_eq!(
        seen.requests.lock().unwrap()[0],
        "GET /p?q=1 HTTP/1.1\r\nhost: app\r\n\r\n"
    );
}

#[tokio::test]
async fn chunked_body_with_trailers_and_the_connection_is_reused() {
    let reply = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n\
        5\r\nhello\r\n6\r\n world\r\n0\r\ngrpc-status: 0\r\n\r\n";
    let (addr, seen) = server(vec![reply.to_vec()], None).await;
    let pool = pool(None, 0);
    for _ in 0..2 {
        let (status, body, trailers) = get(&pool, &addr).await;
        assert_eq!((status, body.as_slice()), (200, &b"hello world"[..]));
        assert_eq!(trailers.unwrap()["grpc-status"], "0");
    }
    assert_eq!(seen.connections.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_body_larger_than_one_read_arrives_whole() {
    let body: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let mut reply =
        format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len()).into_bytes();
    reply.extend_from_slice(&body);
    let (addr, seen) = server(vec![reply], None).await;
    let pool = pool(None, 0);
    for _ in 0..2 {
        let resp = pool
            .send(
                &Target::shared(&addr),
                &Outgoing::of(&request(Method::GET), &addr),
            )
            .await
            .unwrap();
        assert_eq!(resp.body().size_hint().exact(), Some(body.len() as u64));
        let got = resp.into_body().collect().await.unwrap().to_bytes();
        assert!(got[..] == body[..], "{} bytes", got.len());
    }
    assert_eq!(seen.connections.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_body_delimited_by_close_ends_the_connection() {
    let reply = b"HTTP/1.1 200 OK\r\n\r\nuntil close";
    let (addr, seen) = server(vec![reply.to_vec()], Some(1)).await;
    let pool = pool(None, 0);
    for _ in 0..2 {
        assert_eq!(
            get(&pool, &addr).await,
            (200, b"until close".to_vec(), None)
        );
    }
    assert_eq!(seen.connections.load(Ordering::SeqCst), 2);
    assert_eq!(pool.held(), 0);
}

#[tokio::test]
async fn informational_responses_are_skipped() {
    let reply = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n\
        HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\nok";
    let (addr, _) = server(vec![reply.to_vec()], None).await;
    let pool = pool(None, 0);
    assert_eq!(get(&pool, &addr).await, (201, b"ok".to_vec(), None));
    assert_eq!(get(&pool, &addr).await, (201, b"ok".to_vec(), None));
}

#[tokio::test]
async fn head_and_no_content_responses_have_no_body() {
    let (addr, seen) = server(
        vec![
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n".to_vec(),
            b"HTTP/1.1 204 No Content\r\n\r\n".to_vec(),
            OK.to_vec(),
        ],
        None,
    )
    .await;
    let pool = pool(None, 0);
    let (status, body, _) = exchange(&pool, &addr, Method::HEAD).await;
    assert_eq!((status, body.len()), (200, 0));
    let (status, body, _) = exchange(&pool, &addr, Method::DELETE).await;
    assert_eq!((status, body.len()), (204, 0));
    assert_eq!(get(&pool, &addr).await, (200, b"ok".to_vec(), None));
    assert_eq!(seen.connections.load(Ordering::SeqCst), 1);
    assert!(seen.requests.lock().unwrap()[0].starts_with("HEAD /p?q=1 HTTP/1.1\r\n"));
}

#[tokio::test]
async fn a_connection_the_server_closed_is_replaced() {
    // One reply per connection, then a close without `connection: close`: every request after
    // the first finds its pooled connection closed, with no pause for the close to be noticed.
    let (addr, seen) = server(vec![OK.to_vec()], Some(1)).await;
    let pool = pool(None, 0);
    for _ in 0..5 {
        assert_eq!(get(&pool, &addr).await, (200, b"ok".to_vec(), None));
    }
    assert_eq!(seen.connections.load(Ordering::SeqCst), 5);
}

#[tokio::test]
async fn the_reaper_drops_idle_connections_past_the_timeout() {
    let (addr, seen) = server(vec![OK.to_vec()], None).await;
    let pool = pool(Some(Duration::from_millis(50)), 0);
    assert_eq!(get(&pool, &addr).await.0, 200);
    assert_eq!(pool.held(), 1);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while pool.held() > 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(pool.held(), 0);
    assert_eq!(get(&pool, &addr).await.0, 200);
    assert_eq!(seen.connections.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn max_requests_per_connection_opens_new_connections() {
    let (addr, seen) = server(vec![OK.to_vec()], None).await;
    let pool = pool(None, 2);
    for _ in 0..5 {
        assert_eq!(get(&pool, &addr).await.0, 200);
    }
    assert_eq!(seen.connections.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_truncated_body_is_an_error_and_a_dropped_one_closes_the_connection() {
    let (addr, seen) = server(
        vec![b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc".to_vec()],
        Some(1),
    )
    .await;
    let pool = pool(None, 0);
    let resp = pool
        .send(
            &Target::shared(&addr),
            &Outgoing::of(&request(Method::GET), &addr),
        )
        .await
        .unwrap();
    assert!(resp.into_body().collect().await.is_err());
    // A body dropped half-read leaves its connection unusable: it is not pooled.
    let resp = pool
        .send(
            &Target::shared(&addr),
            &Outgoing::of(&request(Method::GET), &addr),
        )
        .await
        .unwrap();
    drop(resp);
    assert_eq!(pool.held(), 0);
    assert_eq!(seen.connections.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn bad_or_missing_responses_are_resets() {
    for reply in [
        &b"garbage\r\n\r\n"[..],
        b"HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n",
        b"",
    ] {
        let (addr, _) = server(vec![reply.to_vec()], Some(1)).await;
        let pool = pool(None, 0);
        match pool
            .send(
                &Target::shared(&addr),
                &Outgoing::of(&request(Method::GET), &addr),
            )
            .await
        {
            Err(SendError::Reset { error, .. }) => assert!(!error.to_string().is_empty()),
            other => panic!("{reply:?}: expected a reset, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn only_bodiless_requests_are_carried() {
    assert!(carries(&request(Method::GET)));
    let mut announced = request(Method::POST);
    announced.headers_mut().insert(
        http::header::CONTENT_LENGTH,
        http::HeaderValue::from_static("3"),
    );
    assert!(!carries(&announced));
    let with_body = Request::post("/").body(Body::full("abc")).unwrap();
    assert!(!carries(&with_body));
}
