//! Test harness: free loopback ports, config directories, an in-process proxy and a small client.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
pub mod dns;
pub mod jwt;
pub mod paced_load;
pub mod pki;
pub mod unix;

pub use sluice::runtime::{ProxyHandle, RunOptions};
pub use sluice_tools::{Backend, BackendArgs, BackendHandle};

/// A port that was free a moment ago on 127.0.0.1 (config files need concrete ports).
///
/// Taken below the kernel's ephemeral range (32768-60999 by default), in an order no other
/// caller of this process repeats: a port from `:0` lies in that range, where an outgoing
/// connection or another test's `:0` listener could take it before the test binds it (a rare
/// `Address already in use` under a loaded CI run).
pub fn free_port() -> u16 {
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    // Test binaries of one run start at different places (their pids differ).
    let start = std::process::id().wrapping_mul(7_919) % SPAN;
    for _ in 0..SPAN {
        let i = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = u16::try_from(LOW + (start + i) % SPAN).unwrap();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A temporary config directory.
pub struct ConfigDir {
    dir: tempfile::TempDir,
}

impl ConfigDir {
    /// A new, empty directory.
    pub fn new() -> Self {
        ConfigDir {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes (atomically, as editors do: write then rename) a file in it.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        let tmp = self.dir.path().join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        path
    }
}

impl Default for ConfigDir {
    fn default() -> Self {
        Self::new()
    }
}

/// Starts a backend `name`/`version` on 127.0.0.1:0.
pub async fn backend(name: &str, version: &str) -> BackendHandle {
    Backend::start(BackendArgs::ephemeral(name, version))
        .await
        .unwrap()
}

/// A backend that answers every request with 503.
pub async fn failing_backend(name: &str, version: &str) -> BackendHandle {
    let mut args = BackendArgs::ephemeral(name, version);
    args.fail_rate = 1.0;
    Backend::start(args).await.unwrap()
}

/// A backend that never answers (the tutorial's hung v1, from its first request).
pub async fn hung_backend(name: &str, version: &str) -> BackendHandle {
    let mut args = BackendArgs::ephemeral(name, version);
    args.hang_after = Some(0);
    Backend::start(args).await.unwrap()
}

/// Starts the proxy on a config directory with the admin API on a free port, gateway on 127.0.0.1.
pub async fn proxy(dir: &Path, configure: impl FnOnce(&mut RunOptions)) -> ProxyHandle {
    let mut opts = RunOptions::new(vec![dir.to_path_buf()]);
    opts.admin = "127.0.0.1:0".parse().unwrap();
    opts.proxy.gateway_address = "127.0.0.1".parse().unwrap();
    opts.debounce = Duration::from_millis(50);
    opts.drain = Duration::from_secs(5);
    configure(&mut opts);
    sluice::runtime::start(opts).await.unwrap()
}

/// A response as tests look at it.
#[derive(Debug)]
pub struct Reply {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body as text.
    pub body: String,
}

impl Reply {
    /// The first line of the body (`NAME VERSION - request N` for the test backend).
    pub fn first_line(&self) -> &str {
        self.body.lines().next().unwrap_or("")
    }

    /// A header as a string.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A keep-alive HTTP/1.1 client.
#[derive(Clone)]
pub struct TestClient {
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Default for TestClient {
    fn default() -> Self {
        Self::new()
    }
}

impl TestClient {
    /// A new HTTP/1.1 client.
    pub fn new() -> Self {
        TestClient {
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// A client speaking HTTP/2 with prior knowledge (its `:authority` is the socket address).
    pub fn h2() -> Self {
        TestClient {
            client: Client::builder(TokioExecutor::new())
                .http2_only(true)
                .build_http(),
        }
    }

    /// `GET http://addr{path}` with a Host header and extra headers.
    pub async fn get(
        &self,
        addr: SocketAddr,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Reply {
        self.request("GET", addr, host, path, headers, Bytes::new())
            .await
    }

    /// `GET {path}` on the admin API, with its address as Host as local tools send it (a
    /// loopback admin refuses other names).
    pub async fn admin(&self, admin: SocketAddr, path: &str) -> Reply {
        self.get(admin, &admin.to_string(), path, &[]).await
    }

    /// Any request.
    pub async fn request(
        &self,
        method: &str,
        addr: SocketAddr,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Reply {
        self.try_request(method, addr, host, path, headers, body)
            .await
            .expect("request failed")
    }

    /// Any request; a connection refused, closed or reset before the answer is an error.
    pub async fn try_request(
        &self,
        method: &str,
        addr: SocketAddr,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<Reply, String> {
        let mut b = Request::builder()
            .method(method)
            .uri(format!("http://{addr}{path}"))
            .header("host", host);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let req = b.body(Full::new(body)).unwrap();
        let resp = tokio::time::timeout(Duration::from_secs(10), self.client.request(req))
            .await
            .expect("request timed out")
            .map_err(|e| format!("{e:?}"))?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok(Reply {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }
}

/// One TCP exchange, as `echo LINE | nc -N ADDR`: the line out, the connection half-closed,
/// everything the peer sends back (trimmed). A connection closed or reset without an answer
/// gives an empty string.
pub async fn tcp_line(addr: SocketAddr, line: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr))
        .await
        .expect("connect timed out")
        .expect("connect failed");
    if s.write_all(format!("{line}\n").as_bytes()).await.is_err() || s.shutdown().await.is_err() {
        return String::new();
    }
    let mut out = String::new();
    match tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut out))
        .await
        .expect("reply timed out")
    {
        Ok(_) => out.trim_end().to_string(),
        Err(_) => String::new(),
    }
}

/// Polls `check` until it returns true or `timeout` passes.
pub async fn assert_eventually<F, Fut>(timeout: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not true within {timeout:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A ServiceEntry + WorkloadEntries for `host` on `port` with one endpoint per (version, addr).
pub fn service_yaml(host: &str, port: u16, endpoints: &[(&str, SocketAddr)]) -> String {
    let app = host.split('.').next().unwrap_or(host);
    let mut out = format!(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata:\n  name: {app}\nspec:\n  hosts: [{host}]\n  ports:\n  - {{number: {port}, name: http, protocol: HTTP}}\n  resolution: STATIC\n  workloadSelector:\n    labels: {{app: {app}}}\n"
    );
    for (version, addr) in endpoints {
        out.push_str(&format!(
            "---\napiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata:\n  name: {app}-{version}-{p}\nspec:\n  address: {ip}\n  ports: {{http: {p}}}\n  labels: {{app: {app}, version: {version}}}\n",
            ip = addr.ip(),
            p = addr.port()
        ));
    }
    out
}

/// A VirtualService named `host` for the short host `host` with the given `http:` rules (YAML
/// list items indented two spaces).
pub fn virtual_service_yaml(host: &str, http: &str) -> String {
    format!("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: {host}}}\nspec:\n  hosts: [{host}]\n  http:\n{http}")
}

/// A DestinationRule with one subset per version label.
pub fn subsets_yaml(host: &str, versions: &[&str]) -> String {
    let app = host.split('.').next().unwrap_or(host);
    let mut out = format!("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: {app}\nspec:\n  host: {host}\n  subsets:\n");
    for v in versions {
        out.push_str(&format!("  - name: {v}\n    labels: {{version: {v}}}\n"));
    }
    out
}

/// The SNI an east-west client sends for `reviews` subset v2 on port 9080 (AUTO_PASSTHROUGH).
pub const REVIEWS_V2_SNI: &str = "outbound_.9080_.v2_.reviews.default.svc.cluster.local";

/// The `reviews` service of an AUTO_PASSTHROUGH test: v1 and v2 serving TLS with one
/// certificate naming both subsets' SNIs, and the config declaring them.
pub struct MeshReviews {
    /// The backends' certificate, to compare with what a client was shown.
    pub leaf: pki::Leaf,
    /// Subset v1's backend.
    pub v1: BackendHandle,
    /// Subset v2's backend.
    pub v2: BackendHandle,
    /// The ServiceEntry (TLS port 9080), WorkloadEntries and DestinationRule (subsets v1, v2).
    pub config: String,
}

/// Starts [`MeshReviews`] with a certificate from `ca`, its files written to `dir`.
pub async fn mesh_reviews(ca: &pki::TestCa, dir: &Path) -> MeshReviews {
    let host = "reviews.default.svc.cluster.local";
    let leaf = ca.issue(&[
        REVIEWS_V2_SNI,
        "outbound_.9080_.v1_.reviews.default.svc.cluster.local",
    ]);
    let (cert, key) = leaf.write(dir, "reviews");
    let https = |version: &str| BackendArgs {
        tls_cert: Some(cert.clone()),
        tls_key: Some(key.clone()),
        ..BackendArgs::ephemeral("reviews", version)
    };
    let v1 = Backend::start(https("v1")).await.unwrap();
    let v2 = Backend::start(https("v2")).await.unwrap();
    let config = format!(
        "{}---\n{}",
        service_yaml(host, 9080, &[("v1", v1.addr()), ("v2", v2.addr())])
            .replace("name: http, protocol: HTTP}", "name: tls, protocol: TLS}")
            .replace("ports: {http:", "ports: {tls:"),
        subsets_yaml(host, &["v1", "v2"])
    );
    MeshReviews {
        leaf,
        v1,
        v2,
        config,
    }
}
