//! DestinationRule `tunnel.protocol: POST`: the relayed TCP stream rides as the body of an
//! HTTP/1.1 `POST /` to the endpoint (Envoy's TCP proxy `tunneling_config.use_post`, which Istio
//! sets for POST). Bytes from the client go out as the chunked request body; bytes back are the
//! response body, framed as the answer's head says (chunked, a length, or until close).

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The largest chunk-size line accepted from the tunnel proxy (hex digits and extensions).
const MAX_LINE: usize = 1024;

/// How the answer's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// `Content-Length: n`.
    Length(u64),
    /// Neither: the body runs until the proxy closes the connection.
    UntilClose,
}

impl Framing {
    /// The framing of a response head (status line and headers, without the blank line).
    pub(crate) fn of_head(status: u16, head: &str) -> Framing {
        if status == 204 || status == 304 {
            return Framing::Length(0);
        }
        let mut length = None;
        for line in head.lines().skip(1) {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            if name.trim().eq_ignore_ascii_case("transfer-encoding") {
                // Chunked is the last coding when present (RFC 9112 §6.1); it wins over a length.
                if value
                    .rsplit(',')
                    .next()
                    .is_some_and(|c| c.trim().eq_ignore_ascii_case("chunked"))
                {
                    return Framing::Chunked;
                }
            } else if name.trim().eq_ignore_ascii_case("content-length") {
                length = value.parse().ok();
            }
        }
        length.map_or(Framing::UntilClose, Framing::Length)
    }
}

/// The request head opening a POST tunnel to `authority`.
pub(crate) fn request_head(authority: &str) -> String {
    format!("POST / HTTP/1.1\r\nHost: {authority}\r\nTransfer-Encoding: chunked\r\n\r\n")
}

/// Where a chunked body's decoder stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Reading a chunk-size line.
    Size,
    /// This many data bytes of the current chunk are left.
    Data(u64),
    /// The CRLF after a chunk's data.
    DataEnd,
    /// Trailer lines after the last chunk, up to the empty one.
    Trailer,
    /// The body is complete.
    Done,
}

/// The response body decoder: framed bytes in, tunnelled bytes out.
#[derive(Debug)]
pub(crate) struct BodyDecoder {
    framing: Framing,
    chunk: Chunk,
    /// A partial line (chunk size or trailer) not yet ended by LF.
    line: Vec<u8>,
    /// Bytes left of a `Content-Length` body.
    left: u64,
}

/// A chunked body the proxy sent is malformed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DecodeError {
    /// A chunk-size line is not hex digits.
    #[error("malformed chunk size line")]
    BadSize,
    /// A line is longer than anything sensible.
    #[error("chunk line too long")]
    LineTooLong,
    /// A chunk's data is not followed by CRLF.
    #[error("chunk data not followed by CRLF")]
    MissingCrlf,
}

impl BodyDecoder {
    /// A decoder for a body framed as `framing`.
    pub(crate) fn new(framing: Framing) -> BodyDecoder {
        BodyDecoder {
            framing,
            chunk: Chunk::Size,
            line: Vec::new(),
            left: match framing {
                Framing::Length(n) => n,
                _ => 0,
            },
        }
    }

    /// Whether the body is complete (the end of the tunnelled stream from the endpoint).
    pub(crate) fn done(&self) -> bool {
        match self.framing {
            Framing::Chunked => self.chunk == Chunk::Done,
            Framing::Length(_) => self.left == 0,
            Framing::UntilClose => false,
        }
    }

    /// Decodes `input`, appending the body bytes to `out`; bytes after the body's end are dropped.
    pub(crate) fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), DecodeError> {
        match self.framing {
            Framing::UntilClose => out.extend_from_slice(input),
            Framing::Length(_) => {
                let take = usize::try_from(self.left)
                    .unwrap_or(usize::MAX)
                    .min(input.len());
                out.extend_from_slice(input.get(..take).unwrap_or_default());
                self.left -= take as u64;
            }
            Framing::Chunked => self.chunked(input, out)?,
        }
        Ok(())
    }

    fn chunked(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Result<(), DecodeError> {
        while !input.is_empty() {
            match self.chunk {
                Chunk::Done => return Ok(()),
                Chunk::Data(n) => {
                    let take = usize::try_from(n).unwrap_or(usize::MAX).min(input.len());
                    let (data, rest) = input.split_at(take);
                    out.extend_from_slice(data);
                    input = rest;
                    let left = n - take as u64;
                    self.chunk = if left == 0 {
                        Chunk::DataEnd
                    } else {
                        Chunk::Data(left)
                    };
                }
                Chunk::Size | Chunk::Trailer | Chunk::DataEnd => {
                    let Some(end) = input.iter().position(|b| *b == b'\n') else {
                        self.line.extend_from_slice(input);
                        if self.line.len() > MAX_LINE {
                            return Err(DecodeError::LineTooLong);
                        }
                        return Ok(());
                    };
                    let (part, rest) = input.split_at(end);
                    self.line.extend_from_slice(part);
                    input = rest.get(1..).unwrap_or_default();
                    let line = std::mem::take(&mut self.line);
                    let line = line.strip_suffix(b"\r").unwrap_or(&line);
                    self.chunk = match self.chunk {
                        Chunk::DataEnd if line.is_empty() => Chunk::Size,
                        Chunk::DataEnd => return Err(DecodeError::MissingCrlf),
                        Chunk::Trailer if line.is_empty() => Chunk::Done,
                        Chunk::Trailer => Chunk::Trailer,
                        _ => match chunk_size(line)? {
                            0 => Chunk::Trailer,
                            n => Chunk::Data(n),
                        },
                    };
                }
            }
        }
        Ok(())
    }
}

/// The size of a `chunk-size [; extensions]` line.
fn chunk_size(line: &[u8]) -> Result<u64, DecodeError> {
    let digits = line.split(|b| *b == b';').next().unwrap_or_default();
    let digits = std::str::from_utf8(digits).map_err(|_| DecodeError::BadSize)?;
    u64::from_str_radix(digits.trim(), 16).map_err(|_| DecodeError::BadSize)
}

/// A connection carrying a POST tunnel: writes become chunks of the request body (shutdown
/// sends the last chunk), reads return the decoded response body.
pub(crate) struct PostStream<S> {
    inner: S,
    decoder: BodyDecoder,
    /// Decoded body bytes not yet read, from `read_at`.
    decoded: Vec<u8>,
    read_at: usize,
    /// Encoded request bytes not yet written, from `write_at`.
    pending: Vec<u8>,
    write_at: usize,
    /// The last chunk was queued.
    finished: bool,
}

impl<S> PostStream<S> {
    /// Wraps `inner` after a 2xx answer framed as `framing`; `early` is what followed the head.
    pub(crate) fn new(inner: S, framing: Framing, early: &[u8]) -> Result<Self, DecodeError> {
        let mut decoder = BodyDecoder::new(framing);
        let mut decoded = Vec::new();
        decoder.decode(early, &mut decoded)?;
        Ok(PostStream {
            inner,
            decoder,
            decoded,
            read_at: 0,
            pending: Vec::new(),
            write_at: 0,
            finished: false,
        })
    }
}

impl<S: AsyncWrite + Unpin> PostStream<S> {
    /// Writes out what is queued; ready once nothing is left.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        while self.write_at < self.pending.len() {
            let rest = self.pending.get(self.write_at..).unwrap_or_default();
            match Pin::new(&mut self.inner).poll_write(cx, rest) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
                }
                Poll::Ready(Ok(n)) => self.write_at += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        self.pending.clear();
        self.write_at = 0;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for PostStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.read_at < this.decoded.len() {
                let rest = this.decoded.get(this.read_at..).unwrap_or_default();
                let n = rest.len().min(buf.remaining());
                buf.put_slice(rest.get(..n).unwrap_or_default());
                this.read_at += n;
                if this.read_at == this.decoded.len() {
                    this.decoded.clear();
                    this.read_at = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if this.decoder.done() {
                // The response body ended: the endpoint's side of the stream is over.
                return Poll::Ready(Ok(()));
            }
            let mut raw = [0u8; 8192];
            let mut raw_buf = ReadBuf::new(&mut raw);
            match Pin::new(&mut this.inner).poll_read(cx, &mut raw_buf) {
                Poll::Ready(Ok(())) => {
                    let got = raw_buf.filled();
                    if got.is_empty() {
                        // Closed: the end of an until-close body, or a truncated one; either
                        // way the stream from the endpoint is over.
                        return Poll::Ready(Ok(()));
                    }
                    this.decoder
                        .decode(got, &mut this.decoded)
                        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for PostStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        // One chunk queued at a time: the previous one must be out first.
        match this.poll_drain(cx) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        }
        if data.is_empty() {
            // An empty chunk would end the body.
            return Poll::Ready(Ok(0));
        }
        this.pending
            .extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
        this.pending.extend_from_slice(data);
        this.pending.extend_from_slice(b"\r\n");
        // The chunk is queued: it goes out now as far as the socket takes it, the rest on the
        // next write, flush or shutdown.
        if let Poll::Ready(Err(e)) = this.poll_drain(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        match this.poll_drain(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut this.inner).poll_flush(cx),
            other => other,
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if !this.finished {
            match this.poll_drain(cx) {
                Poll::Ready(Ok(())) => {}
                other => return other,
            }
            this.pending.extend_from_slice(b"0\r\n\r\n");
            this.finished = true;
        }
        // The last chunk ends the request, and so the client's side of the stream; the socket
        // stays open for the response (an HTTP/1.1 server may drop a connection whose client
        // half-closes) and closes when the relay ends.
        match this.poll_drain(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut this.inner).poll_flush(cx),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(framing: Framing, parts: &[&[u8]]) -> (Vec<u8>, bool) {
        let mut d = BodyDecoder::new(framing);
        let mut out = Vec::new();
        for p in parts {
            d.decode(p, &mut out).unwrap();
        }
        (out, d.done())
    }

    #[test]
    fn framing_follows_the_head() {
        let head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 3";
        assert_eq!(Framing::of_head(200, head), Framing::Chunked);
        let head = "HTTP/1.1 200 OK\r\ncontent-length: 12";
        assert_eq!(Framing::of_head(200, head), Framing::Length(12));
        assert_eq!(
            Framing::of_head(200, "HTTP/1.1 200 OK"),
            Framing::UntilClose
        );
        assert_eq!(
            Framing::of_head(204, "HTTP/1.1 204 No Content"),
            Framing::Length(0)
        );
    }

    #[test]
    fn chunked_bodies_decode_across_any_split() {
        let wire = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-T: 1\r\n\r\nignored";
        for split in 0..wire.len() {
            let (a, b) = wire.split_at(split);
            let (out, done) = decode_all(Framing::Chunked, &[a, b]);
            assert_eq!(out, b"hello world", "split at {split}");
            assert!(done, "split at {split}");
        }
        let (out, done) = decode_all(Framing::Chunked, &[b"3\r\nabc\r\n"]);
        assert_eq!(out, b"abc");
        assert!(!done);
    }

    #[test]
    fn malformed_chunks_are_errors() {
        let mut d = BodyDecoder::new(Framing::Chunked);
        assert!(d.decode(b"zz\r\n", &mut Vec::new()).is_err());
        let mut d = BodyDecoder::new(Framing::Chunked);
        assert!(d.decode(b"1\r\nab\r\n", &mut Vec::new()).is_err());
        let mut d = BodyDecoder::new(Framing::Chunked);
        assert!(d.decode(&[b'1'; 2000], &mut Vec::new()).is_err());
    }

    #[test]
    fn length_and_until_close_bodies() {
        let (out, done) = decode_all(Framing::Length(4), &[b"ab", b"cdef"]);
        assert_eq!(out, b"abcd");
        assert!(done);
        let (out, done) = decode_all(Framing::UntilClose, &[b"ab", b"cd"]);
        assert_eq!(out, b"abcd");
        assert!(!done);
    }

    #[test]
    fn the_request_head_names_the_target() {
        assert_eq!(
            request_head("10.0.0.1:8080"),
            "POST / HTTP/1.1\r\nHost: 10.0.0.1:8080\r\nTransfer-Encoding: chunked\r\n\r\n"
        );
    }
}
