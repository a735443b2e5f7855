//! Graceful drain of HTTP connections at shutdown: each connection finishes its in-flight
//! requests, then closes.
//!
//! Closing a keep-alive connection the moment the drain begins resets the clients that are
//! sending their next request on it (a client in a request loop always is). So a connection is
//! only asked to close once the future its server gives for the drain completes: at once for
//! HTTP/2 (its GOAWAY tells the client to stop), after a quiet spell for HTTP/1, whose responses
//! meanwhile carry `Connection: close` (see `downstream`).
//!
//! A connection polls one atomic flag per wake-up. Its task's waker is registered once (again
//! only if it changes), and shutdown wakes every registered connection so that idle ones notice
//! too. A watch channel per connection (hyper-util's `GracefulShutdown`) would take a lock on
//! every poll instead.

use std::collections::HashMap;
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Waker;

use hyper_util::server::graceful::GracefulConnection;
use tokio::sync::Notify;

/// Connections to drain together.
#[derive(Debug, Clone, Default)]
pub struct Drain(Arc<Shared>);

#[derive(Debug, Default)]
struct Shared {
    draining: AtomicBool,
    conns: Mutex<Conns>,
    /// Signalled when the last connection ends during a drain.
    idle: Notify,
}

#[derive(Debug, Default)]
struct Conns {
    next_id: u64,
    /// Wakers of the connections that have been polled, by id.
    wakers: HashMap<u64, Waker>,
    /// Connections watched and not yet finished (polled or not).
    open: usize,
}

impl Shared {
    fn conns(&self) -> MutexGuard<'_, Conns> {
        match self.conns.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }
}

impl Drain {
    /// A drain with no connections.
    pub fn new() -> Self {
        Drain::default()
    }

    /// Serves `conn` until it ends; at shutdown it is asked to close after its in-flight
    /// requests.
    pub fn watch<C: GracefulConnection>(
        &self,
        conn: C,
    ) -> impl Future<Output = Result<(), C::Error>> {
        self.watch_until(conn, std::future::pending(), std::future::pending, || {
            std::future::ready(())
        })
    }

    /// As [`Drain::watch`], and the connection is also asked to close when `close` completes
    /// (its idle timeout, say), and dropped if the future made by `force` then completes
    /// before it has closed; once the drain has begun, it is asked when the future made by
    /// `drained` completes, not before.
    pub fn watch_until<C, D, F, E>(
        &self,
        conn: C,
        close: impl Future<Output = ()>,
        force: impl FnOnce() -> F,
        drained: impl FnOnce() -> D,
    ) -> impl Future<Output = Result<(), E>>
    where
        C: GracefulConnection<Error = E>,
        D: Future<Output = ()>,
        F: Future<Output = ()>,
    {
        // Counted from now, not from the first poll: a drain waits for connections just
        // accepted too.
        let mut registration = Registration::new(self.0.clone());
        async move {
            let mut conn = pin!(conn);
            let mut close = pin!(close);
            // Made when the drain begins or the connection is asked to close, in place:
            // nothing allocated per connection.
            let mut draining = pin!(None::<D>);
            let mut drained = Some(drained);
            let mut forcing = pin!(None::<F>);
            let mut force = Some(force);
            let mut asked = false;
            std::future::poll_fn(|cx| {
                if !asked {
                    if registration.draining(cx.waker()) {
                        if let Some(make) = drained.take() {
                            draining.set(Some(make()));
                        }
                    }
                    let drain_done = draining
                        .as_mut()
                        .as_pin_mut()
                        .is_some_and(|d| d.poll(cx).is_ready());
                    if drain_done || close.as_mut().poll(cx).is_ready() {
                        asked = true;
                        conn.as_mut().graceful_shutdown();
                        if !drain_done {
                            if let Some(make) = force.take() {
                                forcing.set(Some(make()));
                            }
                        }
                    }
                }
                if let Some(f) = forcing.as_mut().as_pin_mut() {
                    if f.poll(cx).is_ready() {
                        return std::task::Poll::Ready(Ok(()));
                    }
                }
                conn.as_mut().poll(cx)
            })
            .await
        }
    }

    /// Whether the drain has begun (read on each HTTP/1 response, to add `Connection: close`).
    pub fn is_draining(&self) -> bool {
        self.0.draining.load(Ordering::Acquire)
    }

    /// Connections not finished yet.
    pub fn count(&self) -> usize {
        self.0.conns().open
    }

    /// Asks every connection to close after its in-flight requests and waits until all have.
    pub async fn shutdown(&self) {
        self.0.draining.store(true, Ordering::SeqCst);
        let wakers: Vec<Waker> = self.0.conns().wakers.values().cloned().collect();
        for w in wakers {
            w.wake();
        }
        loop {
            let mut idle = pin!(self.0.idle.notified());
            // Registered before the count is read, so a connection ending in between is seen.
            idle.as_mut().enable();
            if self.count() == 0 {
                return;
            }
            idle.await;
        }
    }
}

/// One connection's place in a [`Drain`].
struct Registration {
    shared: Arc<Shared>,
    id: u64,
    /// The waker registered last.
    waker: Option<Waker>,
}

impl Registration {
    fn new(shared: Arc<Shared>) -> Self {
        let id = {
            let mut conns = shared.conns();
            conns.next_id += 1;
            conns.open += 1;
            conns.next_id
        };
        Registration {
            shared,
            id,
            waker: None,
        }
    }

    /// Whether the connection must close; registers `waker` to be told so later.
    fn draining(&mut self, waker: &Waker) -> bool {
        if self.shared.draining.load(Ordering::SeqCst) {
            return true;
        }
        if self.waker.as_ref().is_some_and(|w| w.will_wake(waker)) {
            return false;
        }
        self.shared.conns().wakers.insert(self.id, waker.clone());
        self.waker = Some(waker.clone());
        // A shutdown that collected the wakers just before this one was inserted set the flag
        // first: reading it again after the insert cannot miss it.
        self.shared.draining.load(Ordering::SeqCst)
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let last = {
            let mut conns = self.shared.conns();
            conns.wakers.remove(&self.id);
            conns.open = conns.open.saturating_sub(1);
            conns.open == 0
        };
        if last && self.shared.draining.load(Ordering::SeqCst) {
            self.shared.idle.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use bytes::Bytes;
    use http_body_util::Full;
    use hyper::service::service_fn;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::server::conn::auto;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    /// Serves one connection on a loopback listener, answering after `delay`.
    async fn serve_one(drain: Drain, delay: Duration) -> (TcpStream, tokio::task::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (stream, _) = listener.accept().await.unwrap();
        let svc = service_fn(move |_req| async move {
            tokio::time::sleep(delay).await;
            Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(Bytes::from("done"))))
        });
        let conn = auto::Builder::new(TokioExecutor::new())
            .serve_connection(TokioIo::new(stream), svc)
            .into_owned();
        let served = drain.watch(conn);
        let task = tokio::spawn(async move {
            let _ = served.await;
        });
        (client, task)
    }

    #[tokio::test]
    async fn idle_connections_close_and_shutdown_returns() {
        let drain = Drain::new();
        let (mut client, task) = serve_one(drain.clone(), Duration::ZERO).await;
        tokio::task::yield_now().await;
        assert_eq!(drain.count(), 1);
        tokio::time::timeout(Duration::from_secs(5), drain.shutdown())
            .await
            .expect("drain finished");
        task.await.unwrap();
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).await.unwrap();
        assert!(
            rest.is_empty(),
            "an idle connection closes without a response"
        );
        assert_eq!(drain.count(), 0);
    }

    #[tokio::test]
    async fn in_flight_requests_finish_before_the_connection_closes() {
        let drain = Drain::new();
        let (mut client, task) = serve_one(drain.clone(), Duration::from_millis(200)).await;
        client
            .write_all(b"GET / HTTP/1.1\r\nhost: a\r\n\r\n")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        tokio::time::timeout(Duration::from_secs(5), drain.shutdown())
            .await
            .expect("drain finished");
        task.await.unwrap();
        let mut answer = String::new();
        client.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
        assert!(answer.ends_with("done"), "{answer}");
    }

    #[tokio::test]
    async fn a_connection_watched_after_shutdown_began_closes_at_once() {
        let drain = Drain::new();
        drain.shutdown().await;
        let (mut client, task) = serve_one(drain.clone(), Duration::ZERO).await;
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("connection closed")
            .unwrap();
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
    }
}
