//! Accepting within the connection budget, with accept errors logged at most once a second and
//! backed off.
//!
//! At the open-files limit `accept` fails at once for as long as the limit holds: retrying every
//! 50 ms logged twenty lines a second per listener and kept a core busy. The first error is
//! logged, the next ones are counted and reported with the next line a second later, and the
//! pause between attempts doubles up to a second, back to the minimum after a success.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use super::limit::{ConnectionLimit, ConnectionPermit};

/// Shortest pause after a failed accept.
const MIN_BACKOFF: Duration = Duration::from_millis(10);
/// Longest pause after failed accepts in a row.
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// At most one log line per listener and kind of event in this period.
const LOG_PERIOD: Duration = Duration::from_secs(1);

/// Accepts connections for one listener.
#[derive(Debug)]
pub(crate) struct Acceptor {
    limit: Arc<ConnectionLimit>,
    /// The listener, as logs name it.
    name: String,
    backoff: Duration,
    errors: Throttle,
    refusals: Throttle,
}

impl Acceptor {
    /// An acceptor drawing on `limit`, logging as `name`.
    pub(crate) fn new(limit: Arc<ConnectionLimit>, name: impl Into<String>) -> Self {
        Acceptor {
            limit,
            name: name.into(),
            backoff: MIN_BACKOFF,
            errors: Throttle::default(),
            refusals: Throttle::default(),
        }
    }

    /// The next connection within the budget. Connections over it are closed as they come;
    /// errors are logged (throttled) and retried after a growing pause. Cancel-safe: nothing
    /// is held across an await but the pause.
    pub(crate) async fn accept(
        &mut self,
        listener: &TcpListener,
    ) -> (TcpStream, SocketAddr, ConnectionPermit) {
        loop {
            match listener.accept().await {
                Ok((stream, peer)) => {
                    self.backoff = MIN_BACKOFF;
                    if let Some(permit) = self.limit.try_acquire() {
                        return (stream, peer, permit);
                    }
                    drop(stream);
                    if let Some(suppressed) = self.refusals.admit(Instant::now()) {
                        tracing::warn!(listener = %self.name, max_connections = self.limit.max(), suppressed,
                            "connection limit reached: new connections are closed (--max-connections)");
                    }
                }
                Err(e) => {
                    if let Some(suppressed) = self.errors.admit(Instant::now()) {
                        tracing::warn!(listener = %self.name, error = %e, suppressed, retry_in = ?self.backoff, "accept failed");
                    }
                    tokio::time::sleep(self.backoff).await;
                    self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}

/// Lets one event a period through, counting the ones it holds back.
#[derive(Debug, Default)]
struct Throttle {
    last: Option<Instant>,
    suppressed: u64,
}

impl Throttle {
    /// `Some(events held back since the last one let through)` when this one may be logged.
    fn admit(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.saturating_duration_since(last) < LOG_PERIOD => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_event_a_second_is_let_through_with_the_count_held_back() {
        let mut t = Throttle::default();
        let start = Instant::now();
        assert_eq!(t.admit(start), Some(0));
        for i in 1..20 {
            assert_eq!(t.admit(start + Duration::from_millis(50 * i)), None);
        }
        assert_eq!(t.admit(start + Duration::from_millis(1000)), Some(19));
        assert_eq!(t.admit(start + Duration::from_millis(1500)), None);
        assert_eq!(t.admit(start + Duration::from_millis(2500)), Some(1));
    }

    #[tokio::test]
    async fn connections_over_the_budget_are_closed_and_the_next_one_accepted() {
        use tokio::io::AsyncReadExt;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let limit = ConnectionLimit::new(1, None);
        let mut acceptor = Acceptor::new(limit.clone(), "test");
        let first = TcpStream::connect(addr).await.unwrap();
        let (_held, _, permit) = acceptor.accept(&listener).await;
        let mut refused = vec![
            TcpStream::connect(addr).await.unwrap(),
            TcpStream::connect(addr).await.unwrap(),
        ];
        let accepting = tokio::spawn(async move {
            let (s, peer, p) = acceptor.accept(&listener).await;
            (s, peer, p, listener)
        });
        for s in &mut refused {
            let mut buf = [0u8; 1];
            // Closed at once: end of stream (or a reset).
            let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
                .await
                .unwrap();
            assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
        }
        assert!(!accepting.is_finished());
        drop(permit);
        let next = TcpStream::connect(addr).await.unwrap();
        let (_, peer, _p, _l) = tokio::time::timeout(Duration::from_secs(5), accepting)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(peer, next.local_addr().unwrap(), "the freed slot is taken");
        assert_eq!(limit.open(), 1);
        drop(first);
    }
}
