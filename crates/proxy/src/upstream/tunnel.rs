//! DestinationRule `tunnel`: a relayed TCP connection is carried through the endpoint, a
//! forward proxy, as Envoy's TCP proxy `tunneling_config` does for Istio: in an HTTP/1.1 CONNECT
//! tunnel (the default), or as the bodies of an HTTP/1.1 POST (`protocol: POST`).

use sluice_config::policy::{Tunnel, TunnelMethod};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::either::Either;

use super::post_tunnel::{self, Framing, PostStream};

/// The most bytes of the proxy's answer head read before giving up on it.
const MAX_HEAD: usize = 16 * 1024;

/// The upstream side of a relay: raw bytes both ways (no tunnel, or a CONNECT tunnel once
/// established), or the stream as the bodies of a POST tunnel over the connection.
pub(crate) type Carried = Either<TcpStream, Box<PostStream<TcpStream>>>;

/// Asks the forward proxy on `stream` to carry the connection to the tunnel's target; returns
/// once it answered 2xx, with the stream to relay and any bytes to pass to the client first
/// (for CONNECT, what the proxy sent after its head; a POST stream decodes those itself).
pub(crate) async fn open(
    mut stream: TcpStream,
    tunnel: &Tunnel,
) -> Result<(Carried, Vec<u8>), String> {
    let authority = tunnel.authority();
    let (method, request) = match tunnel.method {
        TunnelMethod::Connect => (
            "CONNECT",
            format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n"),
        ),
        TunnelMethod::Post => ("POST", post_tunnel::request_head(&authority)),
    };
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("sending {method}: {e}"))?;
    let mut head = Vec::with_capacity(256);
    let mut buf = [0u8; 1024];
    let end = loop {
        if let Some(i) = find_end(&head) {
            break i;
        }
        if head.len() > MAX_HEAD {
            return Err(format!("{method} answer head too large"));
        }
        let n = stream
            .read(&mut buf)
            .await
            .map_err(|e| format!("reading the {method} answer: {e}"))?;
        if n == 0 {
            return Err(format!(
                "the tunnel proxy closed the connection before answering {method}"
            ));
        }
        head.extend_from_slice(buf.get(..n).unwrap_or_default());
    };
    let head_bytes = head.get(..end).unwrap_or_default();
    let status = status_code(head_bytes).ok_or_else(|| format!("malformed {method} answer"))?;
    // Any 2xx establishes an HTTP/1.1 tunnel, as Envoy accepts it.
    if !(200..300).contains(&status) {
        return Err(format!("the tunnel proxy answered {method} with {status}"));
    }
    let early = head.get(end..).unwrap_or_default();
    match tunnel.method {
        TunnelMethod::Connect => Ok((Either::Left(stream), early.to_vec())),
        TunnelMethod::Post => {
            let framing = Framing::of_head(status, &String::from_utf8_lossy(head_bytes));
            let post = PostStream::new(stream, framing, early)
                .map_err(|e| format!("the POST answer body: {e}"))?;
            Ok((Either::Right(Box::new(post)), Vec::new()))
        }
    }
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
