//! A bound on the HTTP/2 control frames a client sends (PING and SETTINGS, each of which the
//! server must answer with a frame of its own). A client reading the answers can otherwise
//! flood one connection with PINGs and keep a core busy answering them; past the bound the
//! connection is closed, as Envoy does past its control-frame limits.
//!
//! The client's bytes are read as they pass: the HTTP/2 connection preface switches frame
//! counting on, anything else (HTTP/1.1) switches it off after its first byte or two.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// The HTTP/2 client connection preface.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Control frames allowed per window: far above what keep-alive and BDP pings need.
pub(crate) const MAX_CONTROL_FRAMES: u32 = 1000;
/// The window the bound applies to.
const WINDOW: Duration = Duration::from_secs(1);

const FRAME_SETTINGS: u8 = 0x4;
const FRAME_PING: u8 = 0x6;
const FLAG_ACK: u8 = 0x1;

#[derive(Debug)]
enum Mode {
    /// Matching the preface; `matched` bytes so far.
    Preface { matched: usize },
    /// Reading frames: the header so far, then the payload to skip.
    Frames {
        header: [u8; 9],
        have: usize,
        skip: usize,
    },
    /// Not HTTP/2: nothing to count.
    Off,
}

/// Counts control frames per window and says when the bound is passed.
#[derive(Debug)]
struct Counter {
    window_start: Option<Instant>,
    count: u32,
    max: u32,
}

impl Counter {
    fn frame(&mut self) -> bool {
        let now = Instant::now();
        match self.window_start {
            Some(start) if now.duration_since(start) < WINDOW => self.count += 1,
            _ => {
                self.window_start = Some(now);
                self.count = 1;
            }
        }
        self.count <= self.max
    }
}

/// The frame reader's state.
#[derive(Debug)]
struct Scanner {
    mode: Mode,
    counter: Counter,
}

impl Scanner {
    fn new(max: u32) -> Self {
        Scanner {
            mode: Mode::Preface { matched: 0 },
            counter: Counter {
                window_start: None,
                count: 0,
                max,
            },
        }
    }

    /// Reads `bytes` (the next ones the client sent); false once the bound is passed.
    fn feed(&mut self, mut bytes: &[u8]) -> bool {
        while !bytes.is_empty() {
            match &mut self.mode {
                Mode::Off => return true,
                Mode::Preface { matched } => {
                    let want = &PREFACE[*matched..];
                    let n = want.len().min(bytes.len());
                    if bytes[..n] != want[..n] {
                        self.mode = Mode::Off;
                        return true;
                    }
                    *matched += n;
                    bytes = &bytes[n..];
                    if *matched == PREFACE.len() {
                        self.mode = Mode::Frames {
                            header: [0; 9],
                            have: 0,
                            skip: 0,
                        };
                    }
                }
                Mode::Frames { header, have, skip } => {
                    if *skip > 0 {
                        let n = (*skip).min(bytes.len());
                        *skip -= n;
                        bytes = &bytes[n..];
                        continue;
                    }
                    let n = (9 - *have).min(bytes.len());
                    header[*have..*have + n].copy_from_slice(&bytes[..n]);
                    *have += n;
                    bytes = &bytes[n..];
                    if *have == 9 {
                        let len = usize::from(header[0]) << 16
                            | usize::from(header[1]) << 8
                            | usize::from(header[2]);
                        let (kind, flags) = (header[3], header[4]);
                        *have = 0;
                        *skip = len;
                        let control =
                            matches!(kind, FRAME_PING | FRAME_SETTINGS) && flags & FLAG_ACK == 0;
                        if control && !self.counter.frame() {
                            return false;
                        }
                    }
                }
            }
        }
        true
    }
}

/// A downstream connection whose HTTP/2 control frames are counted.
#[derive(Debug)]
pub(crate) struct ControlFrameLimit<I> {
    inner: I,
    scanner: Scanner,
}

impl<I> ControlFrameLimit<I> {
    pub(crate) fn new(inner: I) -> Self {
        Self::with_max(inner, MAX_CONTROL_FRAMES)
    }

    fn with_max(inner: I, max: u32) -> Self {
        ControlFrameLimit {
            inner,
            scanner: Scanner::new(max),
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for ControlFrameLimit<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = result {
            if matches!(this.scanner.mode, Mode::Off) {
                return result;
            }
            let fresh = buf.filled().get(before..).unwrap_or_default();
            if !this.scanner.feed(fresh) {
                tracing::debug!("HTTP/2 control frame flood (more than {MAX_CONTROL_FRAMES} PING/SETTINGS a second); connection closed");
                return Poll::Ready(Err(io::Error::other("HTTP/2 control frame flood")));
            }
        }
        result
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for ControlFrameLimit<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
        let len = payload.len();
        let mut f = vec![
            (len >> 16) as u8,
            (len >> 8) as u8,
            len as u8,
            kind,
            flags,
            0,
            0,
            0,
            0,
        ];
        f.extend_from_slice(payload);
        f
    }

    #[tokio::test(start_paused = true)]
    async fn pings_past_the_bound_in_one_window_are_refused_acks_and_data_are_not_counted() {
        let mut s = Scanner::new(3);
        assert!(s.feed(PREFACE));
        assert!(s.feed(&frame(FRAME_SETTINGS, 0, &[0; 6])));
        // ACKs and other frames never count; a payload split across reads is skipped whole.
        let data = frame(0x0, 0, &[7; 100]);
        assert!(s.feed(&data[..50]) && s.feed(&data[50..]));
        assert!(s.feed(&frame(FRAME_PING, FLAG_ACK, &[0; 8])));
        assert!(s.feed(&frame(FRAME_PING, 0, &[0; 8])));
        assert!(s.feed(&frame(FRAME_PING, 0, &[0; 8])));
        assert!(!s.feed(&frame(FRAME_PING, 0, &[0; 8])));
    }

    #[tokio::test(start_paused = true)]
    async fn the_count_restarts_each_window() {
        let mut s = Scanner::new(2);
        assert!(s.feed(PREFACE));
        for _ in 0..5 {
            assert!(s.feed(&frame(FRAME_PING, 0, &[0; 8])));
            assert!(s.feed(&frame(FRAME_PING, 0, &[0; 8])));
            tokio::time::advance(WINDOW).await;
        }
    }

    #[test]
    fn http1_turns_counting_off_at_once() {
        let mut s = Scanner::new(0);
        assert!(s.feed(b"POST / HTTP/1.1\r\n"));
        assert!(matches!(s.mode, Mode::Off));
        let mut s = Scanner::new(0);
        assert!(s.feed(b"G"));
        assert!(matches!(s.mode, Mode::Off));
    }

    #[test]
    fn a_preface_split_across_reads_is_recognised() {
        let mut s = Scanner::new(0);
        assert!(s.feed(&PREFACE[..5]));
        assert!(s.feed(&PREFACE[5..]));
        assert!(!s.feed(&frame(FRAME_PING, 0, &[0; 8])));
    }
}
