//! A test HTTP service standing in for the tutorials' app-backend and httpbin (or, with
//! `--tcp-echo`, the TCP echo server of Istio's tcp-echo sample).
//!
//! One port speaks both HTTP/1.1 and cleartext HTTP/2 (prior knowledge), so a
//! single instance can sit behind the proxy whichever protocol it upstreams.

mod record;
mod service;
mod tcp_echo;
mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

pub use record::{ReceivedRequest, RECEIVED_CAPACITY};
use service::State;

use crate::duration::parse_duration;

/// Command-line options of `sluice backend`.
#[derive(clap::Args, Clone, Debug)]
pub struct BackendArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Service name reported in bodies and the x-service header.
    #[arg(long, default_value = "backend")]
    pub name: String,
    /// Version reported in bodies and the x-version header.
    #[arg(long, default_value = "v1")]
    pub version: String,
    /// After this many requests, never answer again (simulates a hung instance).
    #[arg(long, value_name = "N")]
    pub hang_after: Option<u64>,
    /// After this many requests, answer every request with 503 (a version that goes bad).
    #[arg(long, value_name = "N")]
    pub fail_after: Option<u64>,
    /// Fraction of requests (0..=1) answered with 503, evenly spaced.
    #[arg(long, value_name = "R", default_value_t = 0.0, value_parser = parse_fail_rate)]
    pub fail_rate: f64,
    /// Extra latency before every answer, Go-style (e.g. 100ms, 1.5s).
    #[arg(long, value_name = "D", value_parser = parse_duration)]
    pub delay: Option<Duration>,
    /// Speak plain TCP instead of HTTP, as Istio's tcp-echo sample: every line is answered
    /// with PREFIX, a space and the line (`one`/`two` in the TCP traffic shifting task).
    #[arg(long, value_name = "PREFIX")]
    pub tcp_echo: Option<String>,
    /// Serve HTTPS with this PEM certificate chain (with `--tls-key`), as the HTTPS backends
    /// of Istio's TLS passthrough and origination tasks.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// The PEM private key of `--tls-cert`.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,
}

impl Default for BackendArgs {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".to_string(),
            name: "backend".to_string(),
            version: "v1".to_string(),
            hang_after: None,
            fail_after: None,
            fail_rate: 0.0,
            delay: None,
            tcp_echo: None,
            tls_cert: None,
            tls_key: None,
        }
    }
}

impl BackendArgs {
    /// Defaults with a name and version, listening on an ephemeral loopback port.
    pub fn ephemeral(name: &str, version: &str) -> Self {
        Self {
            listen: "127.0.0.1:0".to_string(),
            name: name.to_string(),
            version: version.to_string(),
            ..Self::default()
        }
    }
}

fn parse_fail_rate(s: &str) -> Result<f64, String> {
    let rate: f64 = s.parse().map_err(|_| format!("{s:?} is not a number"))?;
    if (0.0..=1.0).contains(&rate) {
        Ok(rate)
    } else {
        Err(format!("{rate} is outside 0..=1"))
    }
}

/// Entry point for starting test backends.
#[derive(Debug)]
pub struct Backend;

impl Backend {
    /// Binds `args.listen` and starts serving in the background.
    pub async fn start(args: BackendArgs) -> anyhow::Result<BackendHandle> {
        let listener = TcpListener::bind(&args.listen)
            .await
            .with_context(|| format!("binding backend listener on {}", args.listen))?;
        Self::start_on(listener, args).await
    }

    /// Serves on an already-bound listener; `args.listen` is ignored.
    pub async fn start_on(
        listener: TcpListener,
        args: BackendArgs,
    ) -> anyhow::Result<BackendHandle> {
        let addr = listener
            .local_addr()
            .context("reading backend listener address")?;
        let state = Arc::new(State::new(&args)?);
        let tcp_echo: Option<Arc<str>> = args.tcp_echo.as_deref().map(Arc::from);
        let tls = match (&args.tls_cert, &args.tls_key) {
            (Some(cert), Some(key)) => Some(tls::acceptor(cert, key)?),
            _ => None,
        };
        let https = tls.is_some();
        let task = tokio::spawn(accept_loop(listener, Arc::clone(&state), tcp_echo, tls));
        Ok(BackendHandle {
            addr,
            state,
            task,
            https,
        })
    }
}

/// A running backend; dropping it stops the listener and all its connections.
#[derive(Debug)]
pub struct BackendHandle {
    addr: SocketAddr,
    state: Arc<State>,
    task: JoinHandle<()>,
    https: bool,
}

impl BackendHandle {
    /// The address actually bound (useful with port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Base URL of the backend, e.g. `http://127.0.0.1:40123` (`https://` with TLS).
    pub fn url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Requests received so far, including any left hanging by `--hang-after`.
    pub fn requests(&self) -> u64 {
        self.state.requests()
    }

    /// The last [`RECEIVED_CAPACITY`] requests received, oldest first.
    pub fn received(&self) -> Vec<ReceivedRequest> {
        self.state.log.snapshot()
    }

    /// The most recently received request.
    pub fn last_received(&self) -> Option<ReceivedRequest> {
        self.state.log.last()
    }

    /// Forgets the retained requests (the request counter keeps counting).
    pub fn clear_received(&self) {
        self.state.log.clear();
    }

    /// Stops accepting, drops every open connection and waits until the port is released.
    pub async fn shutdown(mut self) {
        self.task.abort();
        // Awaiting the aborted task guarantees the listener has been dropped.
        let _ = (&mut self.task).await;
    }
}

impl Drop for BackendHandle {
    fn drop(&mut self) {
        // Aborting the accept loop drops its JoinSet, which aborts every
        // connection, including requests parked by --hang-after.
        self.task.abort();
    }
}

/// Runs `sluice backend` until Ctrl-C.
pub async fn run(args: BackendArgs) -> anyhow::Result<()> {
    let (name, version) = (args.name.clone(), args.version.clone());
    let kind = match (&args.tcp_echo, &args.tls_cert) {
        (Some(prefix), _) => format!("tcp-echo (prefix {prefix:?})"),
        (None, Some(_)) => "HTTPS backend".to_string(),
        (None, None) => "backend".to_string(),
    };
    let handle = Backend::start(args).await?;
    println!("{kind} {name} {version} listening on {}", handle.addr());
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    handle.shutdown().await;
    Ok(())
}

async fn accept_loop(
    listener: TcpListener,
    state: Arc<State>,
    tcp_echo: Option<Arc<str>>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    let builder = auto::Builder::new(TokioExecutor::new());
    // Connections live in this set so that aborting this task tears them down.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(_) => {
                        // Usually EMFILE; back off instead of spinning.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                if let Some(prefix) = &tcp_echo {
                    let prefix = Arc::clone(prefix);
                    connections.spawn(async move { tcp_echo::serve(stream, &prefix).await });
                    continue;
                }
                let builder = builder.clone();
                let state = Arc::clone(&state);
                let tls = tls.clone();
                connections.spawn(async move {
                    let service = service_fn(move |req| Arc::clone(&state).handle(req, peer));
                    // Client resets, failed handshakes and half-closed sockets are routine for
                    // a test backend, so connection errors are not reported.
                    match tls {
                        Some(acceptor) => {
                            if let Ok(s) = acceptor.accept(stream).await {
                                let _ = builder.serve_connection(TokioIo::new(s), service).await;
                            }
                        }
                        None => {
                            let _ = builder.serve_connection(TokioIo::new(stream), service).await;
                        }
                    }
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}
