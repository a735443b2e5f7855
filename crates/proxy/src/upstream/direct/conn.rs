//! One connection of the direct client: its socket, its receive buffer and one exchange of a
//! request head for a response head.

use std::io;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::head::{parse_response, HeadError, NameCache, Parsed, ResponseHead};

/// Bytes a read asks for at first; doubled while reads fill it.
const MIN_READ: usize = 8 * 1024;
/// Largest read.
const MAX_READ: usize = 256 * 1024;
/// Largest response head accepted (Envoy's default header limit is 60 KiB).
const MAX_HEAD: usize = 64 * 1024;
/// A buffer grown past this is not kept by an idle connection.
const MAX_IDLE_BUFFER: usize = 64 * 1024;

/// Why an exchange produced no response head.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ExchangeError {
    /// The request head could not be written.
    #[error("writing the request: {error}")]
    Write {
        /// The failure.
        error: io::Error,
        /// Part of the head had gone out before it.
        partly: bool,
    },
    /// Reading the response failed.
    #[error("reading the response: {error}")]
    Read {
        /// The failure.
        error: io::Error,
        /// Some response bytes had arrived.
        received: bool,
    },
    /// The peer closed the connection first.
    #[error("connection closed before the response head completed")]
    Closed {
        /// Some response bytes had arrived.
        received: bool,
    },
    /// The response head is malformed.
    #[error(transparent)]
    Head(#[from] HeadError),
    /// The response head is too large.
    #[error("response head larger than {MAX_HEAD} bytes")]
    HeadTooLarge,
}

impl ExchangeError {
    /// Nothing came back: a request on a connection the peer had already closed fails this way,
    /// and can go on another connection.
    pub(super) fn unanswered(&self) -> bool {
        matches!(
            self,
            ExchangeError::Write { .. }
                | ExchangeError::Read {
                    received: false,
                    ..
                }
                | ExchangeError::Closed { received: false }
        )
    }

    /// The request did not reach the peer whole.
    pub(super) fn unwritten(&self) -> bool {
        matches!(self, ExchangeError::Write { .. })
    }

    /// Some of the request had been written when the exchange failed.
    pub(super) fn request_sent(&self) -> bool {
        !matches!(self, ExchangeError::Write { partly: false, .. })
    }
}

/// An upstream HTTP/1.1 connection.
pub(crate) struct Connection {
    stream: TcpStream,
    /// The pool key of its endpoint (see [`super::super::connect::Target`]).
    pub(super) authority: Arc<str>,
    /// Received bytes not consumed yet.
    pub(super) buf: BytesMut,
    /// The request head to write; kept to reuse its allocation.
    pub(super) out: Vec<u8>,
    read_size: usize,
    names: NameCache,
}

impl Connection {
    /// A connection over `stream` to `authority`.
    pub(super) fn new(stream: TcpStream, authority: Arc<str>) -> Self {
        Connection {
            stream,
            authority,
            buf: BytesMut::new(),
            out: Vec::new(),
            read_size: MIN_READ,
            names: NameCache::default(),
        }
    }

    /// Whether the peer has neither closed the idle connection nor sent anything unasked.
    ///
    /// The runtime marks the socket readable when either happens; until then the probe read
    /// returns at once, without a system call.
    pub(super) fn reusable(&self) -> bool {
        let mut probe = [0u8; 1];
        matches!(self.stream.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }

    /// Leaves an idle connection with a small buffer after a large response.
    pub(super) fn trim(&mut self) {
        if self.buf.capacity() > MAX_IDLE_BUFFER {
            self.buf = BytesMut::new();
            self.read_size = MIN_READ;
        }
    }

    /// Reads more bytes into the buffer; `Ok(0)` is the end of the stream.
    pub(super) fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        // Reserving only when little room is left lets a buffer serve many small responses.
        if self.buf.capacity() - self.buf.len() < 1024 {
            self.buf.reserve(self.read_size);
        }
        let room = self.buf.capacity() - self.buf.len();
        let read =
            tokio_util::io::poll_read_buf(std::pin::Pin::new(&mut self.stream), cx, &mut self.buf);
        if let Poll::Ready(Ok(n)) = read {
            if n == room && self.read_size < MAX_READ {
                self.read_size *= 2;
            }
        }
        read
    }

    /// Writes the request head in `out` and reads the final response head.
    pub(super) async fn exchange(
        &mut self,
        head_request: bool,
    ) -> Result<ResponseHead, ExchangeError> {
        // `write_all`, counting: whether any byte went out decides `reset-before-request`.
        let mut written = 0;
        while written < self.out.len() {
            match self.stream.write(&self.out[written..]).await {
                Ok(0) => {
                    return Err(ExchangeError::Write {
                        error: io::ErrorKind::WriteZero.into(),
                        partly: written > 0,
                    })
                }
                Ok(n) => written += n,
                Err(error) => {
                    return Err(ExchangeError::Write {
                        error,
                        partly: written > 0,
                    })
                }
            }
        }
        let mut received = false;
        loop {
            if !self.buf.is_empty() {
                received = true;
                match parse_response(&mut self.buf, head_request, &mut self.names)? {
                    Parsed::Final(head) => return Ok(head),
                    Parsed::Informational => continue,
                    Parsed::Partial if self.buf.len() > MAX_HEAD => {
                        return Err(ExchangeError::HeadTooLarge)
                    }
                    Parsed::Partial => {}
                }
            }
            match std::future::poll_fn(|cx| self.poll_fill(cx)).await {
                Ok(0) => return Err(ExchangeError::Closed { received }),
                Ok(_) => {}
                Err(error) => return Err(ExchangeError::Read { error, received }),
            }
        }
    }
}
