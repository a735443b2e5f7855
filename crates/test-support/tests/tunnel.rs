//! DestinationRule `trafficPolicy.tunnel`: TCP to the destination is carried through the
//! endpoint, a forward proxy (Istio's "egress through a proxy" setup), in an HTTP/1.1 CONNECT
//! tunnel or as the bodies of an HTTP/1.1 POST (`protocol: POST`, Envoy's `use_post`). Small
//! tunnel proxies in the test (CONNECT by hand, POST on hyper's HTTP/1.1 server) record what
//! they are asked and relay to a real tcp-echo server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

use sluice_test_support::{free_port, proxy, tcp_line, Backend, BackendArgs, ConfigDir};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A forward proxy answering `CONNECT host:port` with 200 (or `refuse` with 403) and relaying
/// to the target; records every request line.
async fn connect_proxy(refuse: bool) -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                // Byte by byte so nothing after the head is consumed (bounded: 8 KiB).
                while !head.ends_with(b"\r\n\r\n") && head.len() < 8192 {
                    if client.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let text = String::from_utf8_lossy(&head).to_string();
                let line = text.lines().next().unwrap_or("").to_string();
                log.lock().unwrap().push(text.clone());
                let target = line.split_whitespace().nth(1).unwrap_or("").to_string();
                if refuse || !line.starts_with("CONNECT ") {
                    let _ = client.write_all(b"HTTP/1.1 403 Forbidden\r\n\r\n").await;
                    return;
                }
                let Ok(mut upstream) = TcpStream::connect(&target).await else {
                    let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
                    return;
                };
                if client
                    .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    .await
                    .is_err()
                {
                    return;
                }
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            });
        }
    });
    (addr, seen)
}

fn config(service_port: u16, proxy: SocketAddr, echo_port: u16, protocol: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: echo}}\nspec:\n  hosts: [echo.example.com]\n  location: MESH_EXTERNAL\n  resolution: STATIC\n  ports: [{{number: {service_port}, name: tcp, protocol: TCP}}]\n  endpoints:\n  - {{address: {}, ports: {{tcp: {}}}}}\n---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: echo}}\nspec:\n  host: echo.example.com\n  trafficPolicy:\n    tunnel: {{protocol: {protocol}, targetHost: 127.0.0.1, targetPort: {echo_port}}}\n",
        proxy.ip(),
        proxy.port()
    )
}

#[tokio::test]
async fn tcp_is_carried_in_a_connect_tunnel_through_the_endpoint() {
    let mut args = BackendArgs::ephemeral("tcp-echo", "v1");
    args.tcp_echo = Some("one".into());
    let echo = Backend::start(args).await.unwrap();
    let (forward_proxy, seen) = connect_proxy(false).await;
    let service_port = free_port();
    let dir = ConfigDir::new();
    dir.write(
        "echo.yaml",
        &config(service_port, forward_proxy, echo.addr().port(), "CONNECT"),
    );
    let _p = proxy(dir.path(), |o| {
        o.proxy.gateway_role = false;
        o.watch = false;
    })
    .await;
    let mesh = SocketAddr::from(([127, 0, 0, 1], service_port));
    for i in 0..3 {
        assert_eq!(
            tcp_line(mesh, &format!("hello {i}")).await,
            format!("one hello {i}")
        );
    }
    let heads = seen.lock().unwrap().clone();
    assert_eq!(heads.len(), 3, "{heads:?}");
    let want = format!("127.0.0.1:{}", echo.addr().port());
    for h in &heads {
        assert!(
            h.starts_with(&format!("CONNECT {want} HTTP/1.1\r\n")),
            "{h}"
        );
        assert!(h.contains(&format!("Host: {want}\r\n")), "{h}");
    }
}

#[tokio::test]
async fn a_refused_connect_closes_the_connection() {
    let (forward_proxy, seen) = connect_proxy(true).await;
    let service_port = free_port();
    let dir = ConfigDir::new();
    dir.write(
        "echo.yaml",
        &config(service_port, forward_proxy, 9, "CONNECT"),
    );
    let _p = proxy(dir.path(), |o| {
        o.proxy.gateway_role = false;
        o.watch = false;
    })
    .await;
    let mesh = SocketAddr::from(([127, 0, 0, 1], service_port));
    // Nothing of the proxy's refusal reaches the client: the connection just closes.
    assert_eq!(tcp_line(mesh, "hello").await, "");
    assert_eq!(seen.lock().unwrap().len(), 1);
}

/// What the POST tunnel proxy saw of one request: method, path, Host, Transfer-Encoding.
type Seen = Arc<Mutex<Vec<(String, String, String, String)>>>;

/// A POST tunnel proxy on hyper's HTTP/1.1 server: the request body is written to the TCP
/// target named by `Host` as it arrives, and what the target sends back streams out as the
/// (chunked) response body, both ways at once.
async fn post_proxy() -> (SocketAddr, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let log = log.clone();
                    async move { Ok::<_, Infallible>(tunnel_post(req, &log).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(conn), service)
                    .await;
            });
        }
    });
    (addr, seen)
}

type TunnelBody = http_body_util::combinators::UnsyncBoxBody<Bytes, Infallible>;

async fn tunnel_post(req: Request<Incoming>, log: &Seen) -> Response<TunnelBody> {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let host = header("host");
    log.lock().unwrap().push((
        req.method().to_string(),
        req.uri().to_string(),
        host.clone(),
        header("transfer-encoding"),
    ));
    let refuse = |status: u16| {
        Response::builder()
            .status(status)
            .body(Empty::new().boxed_unsync())
            .unwrap()
    };
    if req.method() != hyper::Method::POST {
        return refuse(405);
    }
    let Ok(target) = TcpStream::connect(&host).await else {
        return refuse(502);
    };
    let (from_target, mut to_target) = target.into_split();
    let mut body = req.into_body();
    tokio::spawn(async move {
        while let Some(Ok(frame)) = body.frame().await {
            if let Some(data) = frame.data_ref() {
                if to_target.write_all(data).await.is_err() {
                    return;
                }
            }
        }
        // The request body ended (the last chunk): the client finished sending.
        let _ = to_target.shutdown().await;
    });
    let back = futures_util::stream::unfold(from_target, |mut rd| async move {
        let mut buf = vec![0u8; 8192];
        match rd.read(&mut buf).await {
            Ok(0) | Err(_) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, Infallible>(Frame::data(Bytes::from(buf))), rd))
            }
        }
    });
    Response::new(StreamBody::new(back).boxed_unsync())
}

#[tokio::test]
async fn tcp_is_carried_as_post_bodies_through_the_endpoint() {
    let mut args = BackendArgs::ephemeral("tcp-echo", "v1");
    args.tcp_echo = Some("one".into());
    let echo = Backend::start(args).await.unwrap();
    let (forward_proxy, seen) = post_proxy().await;
    let service_port = free_port();
    let dir = ConfigDir::new();
    dir.write(
        "echo.yaml",
        &config(service_port, forward_proxy, echo.addr().port(), "POST"),
    );
    let _p = proxy(dir.path(), |o| {
        o.proxy.gateway_role = false;
        o.watch = false;
    })
    .await;
    let mesh = SocketAddr::from(([127, 0, 0, 1], service_port));
    // One connection, a conversation: each answer arrives while the POST is still open, so
    // the stream is relayed both ways at once, not stored and forwarded.
    let mut client = TcpStream::connect(mesh).await.unwrap();
    for i in 0..3 {
        client
            .write_all(format!("hello {i}\n").as_bytes())
            .await
            .unwrap();
        let want = format!("one hello {i}\n");
        let mut got = vec![0u8; want.len()];
        tokio::time::timeout(Duration::from_secs(5), client.read_exact(&mut got))
            .await
            .expect("answer timed out")
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&got), want);
    }
    // Closing the sending side ends the request body; the echo server then closes, which
    // ends the response body and so the client's connection.
    client.shutdown().await.unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut rest))
        .await
        .expect("close timed out")
        .unwrap();
    assert!(rest.is_empty(), "{rest:?}");
    // A second connection is a second POST.
    assert_eq!(tcp_line(mesh, "again").await, "one again");
    let want = format!("127.0.0.1:{}", echo.addr().port());
    let requests = seen.lock().unwrap().clone();
    assert_eq!(requests.len(), 2, "{requests:?}");
    for (method, path, host, encoding) in &requests {
        assert_eq!(method, "POST");
        assert_eq!(path, "/");
        assert_eq!(host, &want);
        assert_eq!(encoding, "chunked");
    }
}

#[tokio::test]
async fn a_refused_post_closes_the_connection() {
    let (forward_proxy, seen) = post_proxy().await;
    let service_port = free_port();
    let dir = ConfigDir::new();
    // Nothing listens on the target: the tunnel proxy answers 502.
    let closed = free_port();
    dir.write(
        "echo.yaml",
        &config(service_port, forward_proxy, closed, "POST"),
    );
    let _p = proxy(dir.path(), |o| {
        o.proxy.gateway_role = false;
        o.watch = false;
    })
    .await;
    let mesh = SocketAddr::from(([127, 0, 0, 1], service_port));
    assert_eq!(tcp_line(mesh, "hello").await, "");
    assert_eq!(seen.lock().unwrap().len(), 1);
}
