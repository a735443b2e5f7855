//! Clients over unix domain sockets, for listeners bound with `bind: unix://PATH`.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

/// Connects to the unix domain socket `path`; `@name` is a name in Linux's abstract namespace.
pub async fn connect(path: &Path) -> std::io::Result<UnixStream> {
    match path.to_str().and_then(|p| p.strip_prefix('@')) {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
            let s = std::os::unix::net::UnixStream::connect_addr(&addr)?;
            s.set_nonblocking(true)?;
            UnixStream::from_std(s)
        }
        None => UnixStream::connect(path).await,
    }
}

/// One HTTP/1.1 `GET /` with `Host: host` over the unix domain socket `path`: (status, body).
pub async fn http_get(path: &Path, host: &str) -> Result<(u16, String), String> {
    let stream = connect(path).await.map_err(|e| e.to_string())?;
    let (mut send, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req = http::Request::get("/")
        .header("host", host)
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let resp = tokio::time::timeout(Duration::from_secs(5), send.send_request(req))
        .await
        .map_err(|_| "timed out".to_string())?
        .map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    Ok((
        status,
        String::from_utf8_lossy(&body.to_bytes()).into_owned(),
    ))
}

/// One TCP exchange over the unix domain socket `path`, as [`crate::tcp_line`]: the line out,
/// the stream half-closed, everything sent back (trimmed); empty when closed without an answer.
pub async fn line(path: &Path, line: &str) -> Result<String, String> {
    let mut s = tokio::time::timeout(Duration::from_secs(5), connect(path))
        .await
        .map_err(|_| "connect timed out".to_string())?
        .map_err(|e| e.to_string())?;
    if s.write_all(format!("{line}\n").as_bytes()).await.is_err() || s.shutdown().await.is_err() {
        return Ok(String::new());
    }
    let mut out = String::new();
    match tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut out))
        .await
        .map_err(|_| "reply timed out".to_string())?
    {
        Ok(_) => Ok(out.trim_end().to_string()),
        Err(_) => Ok(String::new()),
    }
}
