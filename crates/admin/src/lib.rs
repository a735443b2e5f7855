//! Admin HTTP API on its own port: readiness, effective config, routes. Read-only.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::json;
use sluice_proxy::ConfigHandle;
use tokio::net::TcpListener;

/// Says whether the proxy is ready, or why not.
pub type Readiness = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// What the admin server reads.
#[derive(Clone)]
pub struct AdminState {
    /// Published config.
    pub config: Arc<ConfigHandle>,
    /// Readiness check (listeners bound, first config active).
    pub readiness: Readiness,
}

/// Binds the admin server and serves it in the background; returns the bound address.
pub async fn serve(addr: SocketAddr, state: AdminState) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tokio::spawn(async move {
        let builder = auto::Builder::new(TokioExecutor::new());
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let state = state.clone();
            let svc = service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(respond(&state, &req)) }
            });
            let conn = builder
                .serve_connection(TokioIo::new(stream), svc)
                .into_owned();
            tokio::spawn(async move {
                let _ = conn.await;
            });
        }
    });
    Ok(local)
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain"),
    );
    r
}

fn json_reply(value: &serde_json::Value) -> Response<Full<Bytes>> {
    let body = serde_json::to_vec_pretty(value).unwrap_or_default();
    let mut r = Response::new(Full::new(Bytes::from(body)));
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

fn respond(state: &AdminState, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    match req.uri().path() {
        "/ready" => match (state.readiness)() {
            Ok(()) => text(StatusCode::OK, "LIVE\n"),
            Err(why) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: {why}\n"),
            ),
        },
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/config_dump" => json_reply(&config_dump(state)),
        "/routes" => json_reply(&routes(state)),
        _ => text(
            StatusCode::NOT_FOUND,
            "admin endpoints: /ready /healthz /config_dump /routes\n",
        ),
    }
}

fn config_dump(state: &AdminState) -> serde_json::Value {
    let snap = state.config.load();
    let rejected = state.config.last_rejected();
    json!({
        "version": snap.as_ref().map(|s| s.version),
        "proxy": snap.as_ref().map(|s| &s.proxy),
        "resources": snap.as_ref().map(|s| s.resources.as_slice()),
        "diagnostics": snap.as_ref().map(|s| &s.diagnostics),
        "registry": snap.as_ref().map(|s| &s.registry),
        "lastRejected": rejected.as_deref(),
    })
}

fn routes(state: &AdminState) -> serde_json::Value {
    let snap = state.config.load();
    json!({
        "version": snap.as_ref().map(|s| s.version),
        "listeners": snap.as_ref().map(|s| &s.listeners),
        "clusters": snap.as_ref().map(|s| &s.clusters),
    })
}
