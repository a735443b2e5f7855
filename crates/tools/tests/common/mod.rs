//! Minimal HTTP client for poking the backend directly in tests.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

/// A fully read response.
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).expect("JSON body")
    }
}

/// Sends one request on a fresh connection.
pub async fn send(addr: SocketAddr, method: &str, path: &str, body: &str, h2: bool) -> Reply {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let io = TokioIo::new(stream);
    let builder = Request::builder().method(method).header("x-test", "yes");
    let req = if h2 {
        builder.uri(format!("http://{addr}{path}"))
    } else {
        builder.uri(path).header("host", addr.to_string())
    }
    .body(Full::new(Bytes::from(body.to_string())))
    .expect("request");
    let resp = if h2 {
        let (mut sender, conn) = http2::handshake(TokioExecutor::new(), io)
            .await
            .expect("h2 handshake");
        tokio::spawn(conn);
        sender.send_request(req).await.expect("h2 response")
    } else {
        let (mut sender, conn) = http1::handshake(io).await.expect("handshake");
        tokio::spawn(conn);
        sender.send_request(req).await.expect("response")
    };
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// HTTP/1.1 GET on a fresh connection.
pub async fn get(addr: SocketAddr, path: &str) -> Reply {
    send(addr, "GET", path, "", false).await
}

/// GET that gives up after `limit`; `None` means no answer in time.
pub async fn get_within(addr: SocketAddr, path: &str, limit: Duration) -> Option<Reply> {
    tokio::time::timeout(limit, get(addr, path)).await.ok()
}
