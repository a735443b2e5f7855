//! Telling HTTP from other TCP by the first bytes a client sends, without consuming them.

use std::time::Duration;

use tokio::net::TcpStream;

/// What the first bytes of a connection look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sniffed {
    /// An HTTP/1 request line or the HTTP/2 preface (`PRI * HTTP/2.0`).
    Http,
    /// A TLS handshake record (a ClientHello, SNI inside).
    Tls,
    /// Anything else (TLS, a binary protocol).
    Other,
    /// Nothing arrived in time (a server-first protocol, or an idle client).
    Silent,
    /// The client closed (or reset) before sending anything.
    Closed,
}

/// Peeks at the first bytes, waiting at most `wait`.
pub async fn sniff(stream: &TcpStream, wait: Duration) -> Sniffed {
    let mut buf = [0u8; 16];
    match tokio::time::timeout(wait, stream.peek(&mut buf)).await {
        Err(_) => Sniffed::Silent,
        Ok(Err(_)) | Ok(Ok(0)) => Sniffed::Closed,
        Ok(Ok(n)) => classify(buf.get(..n).unwrap_or_default()),
    }
}

/// HTTP starts with a method token (upper-case letters) followed by a space; the first peek may
/// hold only part of it, so a prefix of letters counts too.
pub fn classify(bytes: &[u8]) -> Sniffed {
    // Record type 22 (handshake), protocol major version 3.
    if bytes.first() == Some(&0x16) && bytes.get(1).is_none_or(|&b| b == 0x03) {
        return Sniffed::Tls;
    }
    let letters = bytes.iter().take_while(|b| b.is_ascii_uppercase()).count();
    match bytes.get(letters) {
        _ if letters == 0 => Sniffed::Other,
        None | Some(b' ') => Sniffed::Http,
        Some(_) => Sniffed::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_and_preface_are_http() {
        for b in [&b"GET / HTTP/1.1\r\n"[..], b"POST", b"PRI * HTTP/2.0", b"G"] {
            assert_eq!(classify(b), Sniffed::Http, "{b:?}");
        }
        for b in [&b"SSH-2.0"[..], b"get /", b" GET", b"\x16\x01"] {
            assert_eq!(classify(b), Sniffed::Other, "{b:?}");
        }
        assert_eq!(classify(b"\x16\x03\x01\x02\x00"), Sniffed::Tls);
    }
}
