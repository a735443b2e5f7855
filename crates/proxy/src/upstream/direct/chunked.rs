//! The chunked transfer coding, decoded from a receive buffer (RFC 9112 §7.1).

use bytes::{Bytes, BytesMut};
use http::HeaderMap;

use super::head::{parse_trailers, HeadError};

/// Longest chunk-size line accepted (size, extensions and CRLF).
const MAX_SIZE_LINE: usize = 4096;
/// Largest trailer section accepted.
const MAX_TRAILERS: usize = 64 * 1024;

/// Where the decoder is in the coded body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Chunked {
    /// Expecting a chunk-size line.
    Size,
    /// Inside a chunk, with this many data bytes left.
    Data(u64),
    /// Expecting the CRLF after a chunk's data.
    DataEnd,
    /// After the last chunk: trailer fields or the final CRLF.
    Trailers,
    /// The body is complete.
    Done,
}

/// What one decoding step produced.
#[derive(Debug)]
pub(super) enum Decoded {
    /// Body bytes.
    Data(Bytes),
    /// The trailer fields; the body is complete.
    Trailers(HeaderMap),
    /// The body is complete.
    End,
    /// More bytes are needed.
    NeedMore,
}

/// A malformed chunked body.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ChunkError {
    /// A chunk-size line that is not hex digits (with optional extensions).
    #[error("invalid chunk size line")]
    Size,
    /// Chunk data not followed by CRLF.
    #[error("missing CRLF after chunk data")]
    DataEnd,
    /// A chunk-size line or trailer section over the limits.
    #[error("chunk size line or trailers too long")]
    TooLong,
    /// Bad trailer fields.
    #[error("invalid trailers: {0}")]
    Trailers(#[from] HeadError),
}

impl Chunked {
    /// Decodes what it can from the start of `buf`, consuming it.
    pub(super) fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, ChunkError> {
        loop {
            match *self {
                Chunked::Size => {
                    let Some(end) = find_crlf(buf) else {
                        return more(buf.len() > MAX_SIZE_LINE);
                    };
                    let size = chunk_size(&buf[..end])?;
                    let _ = buf.split_to(end + 2);
                    *self = if size == 0 {
                        Chunked::Trailers
                    } else {
                        Chunked::Data(size)
                    };
                }
                Chunked::Data(left) => {
                    if buf.is_empty() {
                        return Ok(Decoded::NeedMore);
                    }
                    let n = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                    let left = left - n as u64;
                    *self = if left == 0 {
                        Chunked::DataEnd
                    } else {
                        Chunked::Data(left)
                    };
                    return Ok(Decoded::Data(buf.split_to(n).freeze()));
                }
                Chunked::DataEnd => {
                    if buf.len() < 2 {
                        return Ok(Decoded::NeedMore);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(ChunkError::DataEnd);
                    }
                    let _ = buf.split_to(2);
                    *self = Chunked::Size;
                }
                Chunked::Trailers => {
                    if buf.starts_with(b"\r\n") {
                        let _ = buf.split_to(2);
                        *self = Chunked::Done;
                        return Ok(Decoded::End);
                    }
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        return more(buf.len() > MAX_TRAILERS);
                    };
                    let block = buf.split_to(end + 4).freeze();
                    *self = Chunked::Done;
                    return Ok(Decoded::Trailers(parse_trailers(&block)?));
                }
                Chunked::Done => return Ok(Decoded::End),
            }
        }
    }
}

fn more(too_long: bool) -> Result<Decoded, ChunkError> {
    if too_long {
        Err(ChunkError::TooLong)
    } else {
        Ok(Decoded::NeedMore)
    }
}

fn find_crlf(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\r\n")
}

/// The size of a chunk-size line: hex digits, then optional whitespace and `;extensions`.
fn chunk_size(line: &[u8]) -> Result<u64, ChunkError> {
    let digits = line
        .iter()
        .position(|b| !b.is_ascii_hexdigit())
        .map_or(line, |i| &line[..i]);
    let rest = line[digits.len()..].trim_ascii_start();
    let rest_ok = rest.is_empty() || rest.starts_with(b";");
    if digits.is_empty() || digits.len() > 15 || !rest_ok {
        return Err(ChunkError::Size);
    }
    digits.iter().try_fold(0u64, |n, d| {
        let v = char::from(*d).to_digit(16).ok_or(ChunkError::Size)?;
        Ok(n << 4 | u64::from(v))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `raw` fed in pieces of `step` bytes; returns the data, the trailers and the state.
    fn decode_in_steps(raw: &[u8], step: usize) -> (Vec<u8>, Option<HeaderMap>, Chunked) {
        let mut dec = Chunked::Size;
        let mut buf = BytesMut::new();
        let mut data = Vec::new();
        let mut trailers = None;
        for piece in raw.chunks(step) {
            buf.extend_from_slice(piece);
            loop {
                match dec.decode(&mut buf).unwrap() {
                    Decoded::Data(b) => data.extend_from_slice(&b),
                    Decoded::Trailers(t) => trailers = Some(t),
                    Decoded::End | Decoded::NeedMore => break,
                }
            }
        }
        (data, trailers, dec)
    }

    #[test]
    fn decodes_whatever_the_read_boundaries() {
        let raw = b"5\r\nhello\r\n1;ext=1\r\n \r\nA\r\n0123456789\r\n0\r\n\r\n";
        for step in [1, 2, 3, 7, raw.len()] {
            let (data, trailers, state) = decode_in_steps(raw, step);
            assert_eq!(data, b"hello 0123456789", "step {step}");
            assert!(trailers.is_none());
            assert_eq!(state, Chunked::Done);
        }
    }

    #[test]
    fn trailers_end_the_body() {
        let raw = b"2\r\nok\r\n0\r\ngrpc-status: 0\r\n\r\n";
        for step in [1, 5, raw.len()] {
            let (data, trailers, state) = decode_in_steps(raw, step);
            assert_eq!(data, b"ok");
            assert_eq!(trailers.unwrap()["grpc-status"], "0");
            assert_eq!(state, Chunked::Done);
        }
    }

    #[test]
    fn malformed_bodies_are_errors() {
        for bad in [
            &b"x\r\n"[..],
            b"5\r\nhelloXX",
            b"-1\r\n",
            b"10000000000000000\r\n",
            b"5 x\r\n",
        ] {
            let mut buf = BytesMut::from(bad);
            let mut dec = Chunked::Size;
            let mut failed = false;
            for _ in 0..4 {
                match dec.decode(&mut buf) {
                    Err(_) => failed = true,
                    Ok(Decoded::NeedMore | Decoded::End) => break,
                    Ok(_) => continue,
                }
                break;
            }
            assert!(failed, "{bad:?}");
        }
        let mut endless = BytesMut::from(&[b'1'; MAX_SIZE_LINE + 1][..]);
        assert!(Chunked::Size.decode(&mut endless).is_err());
    }
}
