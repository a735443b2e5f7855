//! Admin HTTP API on its own port: readiness, effective config, routes, clusters, Prometheus
//! metrics, the live traffic graph and the dashboard that draws it. Read-only: GET and HEAD
//! only, and on a loopback address only for loopback or IP Host names (see `guard`).

mod canaries;
mod clusters;
mod config_dump;
mod dashboard;
mod explain;
mod graph;
mod graph_feed;
mod guard;
mod query;
mod reload;
mod routes;
mod virtual_services;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use sluice_proxy::ConfigHandle;
use sluice_telemetry::Telemetry;
use tokio::net::TcpListener;

pub use canaries::{CanaryApi, CommandOutcome};
pub use clusters::{ClusterStatus, EndpointStatus};

/// Says whether the proxy is ready, or why not.
pub type Readiness = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// Response body of every admin endpoint (buffered replies and the SSE stream alike).
pub type AdminBody = UnsyncBoxBody<Bytes, Infallible>;

/// What the admin server reads.
#[derive(Clone)]
pub struct AdminState {
    /// Published config.
    pub config: Arc<ConfigHandle>,
    /// Readiness check (listeners bound, first config active).
    pub readiness: Readiness,
    /// Metrics registry, access log and traffic graph (shared with the proxy).
    pub telemetry: Arc<Telemetry>,
    /// Live endpoint state for `/clusters` (health, outlier ejection, in-flight requests);
    /// `None` until the proxy provides it, and the columns are then `null`.
    pub cluster_status: Option<Arc<dyn ClusterStatus>>,
    /// Reloads the config now (`POST /api/reload`): the version made active, or why not.
    pub reload_now: Option<ReloadNow>,
    /// The canary controller (`/api/canaries`), when one runs.
    pub canaries: Option<Arc<dyn canaries::CanaryApi>>,
}

/// Reloads the config now and reports the version made active or the rejection's diagnostics.
pub type ReloadNow = Arc<
    dyn Fn() -> std::pin::Pin<
            Box<
                dyn std::future::Future<Output = Result<u64, Vec<sluice_model::Diagnostic>>> + Send,
            >,
        > + Send
        + Sync,
>;

impl AdminState {
    /// State with its own (empty) telemetry and no endpoint status source.
    pub fn new(config: Arc<ConfigHandle>, readiness: Readiness) -> AdminState {
        AdminState {
            config,
            readiness,
            telemetry: Arc::new(Telemetry::default()),
            cluster_status: None,
            reload_now: None,
            canaries: None,
        }
    }

    /// Serves `/api/canaries` from the canary controller.
    pub fn with_canaries(mut self, canaries: Arc<dyn canaries::CanaryApi>) -> AdminState {
        self.canaries = Some(canaries);
        self
    }

    /// Lets `POST /api/reload` reload the config on demand (`sluice reload`).
    pub fn with_reload(mut self, reload: ReloadNow) -> AdminState {
        self.reload_now = Some(reload);
        self
    }

    /// Uses the telemetry the proxy records into.
    pub fn with_telemetry(mut self, telemetry: Arc<Telemetry>) -> AdminState {
        self.telemetry = telemetry;
        self
    }

    /// Uses a live endpoint state source for `/clusters`.
    pub fn with_cluster_status(mut self, status: Arc<dyn ClusterStatus>) -> AdminState {
        self.cluster_status = Some(status);
        self
    }
}

/// Binds the admin server and serves it in the background; returns the bound address.
pub async fn serve(addr: SocketAddr, state: AdminState) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let guard = guard::Guard::new(local);
    tokio::spawn(async move {
        let builder = auto::Builder::new(TokioExecutor::new());
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(c) => c,
                Err(_) => {
                    // At the open-files limit accept fails at once until a descriptor is freed:
                    // retrying at once kept a core spinning.
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let state = state.clone();
            let svc = service_fn(move |req: Request<Incoming>| {
                let state = state.clone();
                async move {
                    if let Some(refused) = guard.refuse(&req) {
                        return Ok::<_, Infallible>(refused);
                    }
                    if req.method() == http::Method::POST {
                        if req.uri().path().starts_with("/api/canaries/") {
                            return Ok(canaries::post(&state, req.uri().path()).await);
                        }
                        return Ok(reload::reload_now(&state).await);
                    }
                    // Documents that grow with the config are built on a blocking thread, so
                    // a large one delays neither `/ready` nor the traffic on the same worker.
                    if is_large(req.uri().path()) {
                        let (parts, _) = req.into_parts();
                        let built = tokio::task::spawn_blocking(move || {
                            respond(&state, &parts.uri, &parts.headers)
                        })
                        .await;
                        return Ok(built.unwrap_or_else(|_| {
                            text(StatusCode::INTERNAL_SERVER_ERROR, "internal error\n")
                        }));
                    }
                    Ok(respond(&state, req.uri(), req.headers()))
                }
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

fn full(body: impl Into<Bytes>) -> AdminBody {
    Full::new(body.into()).boxed_unsync()
}

fn reply(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<AdminBody> {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    r
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<AdminBody> {
    reply(status, "text/plain", body)
}

fn json_reply(value: &impl serde::Serialize) -> Response<AdminBody> {
    let body = serde_json::to_vec_pretty(value).unwrap_or_default();
    reply(StatusCode::OK, "application/json", body)
}

const ENDPOINTS: &str = "admin endpoints: / (dashboard) /ready /healthz /config_dump /routes \
                         /clusters /stats/prometheus /metrics /api/graph /api/graph/stream \
                         /api/virtualservices /api/reload /api/explain /api/canaries\n";

/// Endpoints whose answer grows with the config or the traffic.
fn is_large(path: &str) -> bool {
    matches!(
        path,
        "/config_dump"
            | "/routes"
            | "/clusters"
            | "/api/graph"
            | "/api/virtualservices"
            | "/api/reload"
            | "/api/explain"
    )
}

fn respond(state: &AdminState, uri: &http::Uri, headers: &http::HeaderMap) -> Response<AdminBody> {
    let query = || query::Query::parse(uri.query());
    match uri.path() {
        "/ready" => match (state.readiness)() {
            Ok(()) => text(StatusCode::OK, "LIVE\n"),
            Err(why) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: {why}\n"),
            ),
        },
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/config_dump" => match query() {
            Ok(q) => json_reply(&config_dump::config_dump(state, &q)),
            Err(e) => text(StatusCode::BAD_REQUEST, format!("{e}\n")),
        },
        "/routes" => match query() {
            Ok(q) => reply(
                StatusCode::OK,
                "application/json",
                routes::routes(state, &q),
            ),
            Err(e) => text(StatusCode::BAD_REQUEST, format!("{e}\n")),
        },
        "/clusters" => match query() {
            Ok(q) => json_reply(&clusters::clusters(state, &q)),
            Err(e) => text(StatusCode::BAD_REQUEST, format!("{e}\n")),
        },
        "/stats/prometheus" | "/metrics" => {
            let accept = headers
                .get(http::header::ACCEPT)
                .and_then(|v| v.to_str().ok());
            let (content_type, body) = state.telemetry.scrape(accept);
            reply(StatusCode::OK, content_type, body)
        }
        "/api/graph" => match query() {
            Ok(q) => reply(StatusCode::OK, "application/json", graph::graph(state, &q)),
            Err(e) => text(StatusCode::BAD_REQUEST, format!("{e}\n")),
        },
        "/api/graph/stream" => graph_feed::stream(&state.telemetry),
        "/api/virtualservices" => match query() {
            Ok(q) => json_reply(&virtual_services::virtual_services(state, &q)),
            Err(e) => text(StatusCode::BAD_REQUEST, format!("{e}\n")),
        },
        "/api/reload" => json_reply(&reload::reload_status(state)),
        "/api/explain" => explain::explain(state, uri.query()),
        path if path == "/api/canaries" || path.starts_with("/api/canaries/") => {
            canaries::get(state, path)
        }
        path => dashboard::asset(path).unwrap_or_else(|| text(StatusCode::NOT_FOUND, ENDPOINTS)),
    }
}

#[cfg(test)]
mod tests;
