//! DestinationRule `tunnel` (protocol CONNECT): a relayed TCP connection is carried in an
//! HTTP/1.1 CONNECT tunnel through the endpoint, a forward proxy, as Envoy's TCP proxy
//! `tunneling_config` does for Istio.

use sluice_config::policy::Tunnel;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The most bytes of the proxy's answer head read before giving up on it.
const MAX_HEAD: usize = 16 * 1024;

/// Asks the forward proxy on `stream` to connect to the tunnel's target; returns once it
/// answered 2xx, with any bytes it sent after its head (the start of the tunnelled stream).
pub(crate) async fn open(stream: &mut TcpStream, tunnel: &Tunnel) -> Result<Vec<u8>, String> {
    let authority = tunnel.authority();
    let request = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("sending CONNECT: {e}"))?;
    let mut head = Vec::with_capacity(256);
    let mut buf = [0u8; 1024];
    let end = loop {
        if let Some(i) = find_end(&head) {
            break i;
        }
        if head.len() > MAX_HEAD {
            return Err("CONNECT answer head too large".into());
        }
        let n = stream
            .read(&mut buf)
            .await
            .map_err(|e| format!("reading the CONNECT answer: {e}"))?;
        if n == 0 {
            return Err("the tunnel proxy closed the connection before answering CONNECT".into());
        }
        head.extend_from_slice(buf.get(..n).unwrap_or_default());
    };
    let status = status_code(head.get(..end).unwrap_or_default())
        .ok_or_else(|| "malformed CONNECT answer".to_string())?;
    if !(200..300).contains(&status) {
        return Err(format!("the tunnel proxy answered CONNECT with {status}"));
    }
    Ok(head.get(end..).unwrap_or_default().to_vec())
}

/// The index just past the blank line ending the head, if it is complete.
fn find_end(head: &[u8]) -> Option<usize> {
    head.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
}

/// The status of `HTTP/1.x NNN reason`.
fn status_code(head: &[u8]) -> Option<u16> {
    let line = head.split(|b| *b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split_whitespace();
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    parts.next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_parsed() {
        assert_eq!(
            status_code(b"HTTP/1.1 200 Connection established\r\n"),
            Some(200)
        );
        assert_eq!(status_code(b"HTTP/1.0 403 Forbidden\r\n"), Some(403));
        assert_eq!(status_code(b"SSH-2.0\r\n"), None);
        assert_eq!(find_end(b"HTTP/1.1 200 OK\r\n\r\nabc"), Some(19));
        assert_eq!(find_end(b"HTTP/1.1 200 OK\r\n"), None);
    }
}
