//! A reload compiles on a blocking thread: with a single-threaded runtime (`--workers 1`) the
//! admin API keeps answering while a reload of a large config is in progress.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use sluice::runtime::{start, RunOptions};
use sluice_kube::source::ConfigSource;
use sluice_model::{parse_text, Diagnostic, Resource};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::{watch, Notify};

/// `n` services (ServiceEntry, DestinationRule with two subsets, VirtualService with a split).
fn services(n: usize) -> Vec<Resource> {
    let mut text = String::new();
    for i in 0..n {
        let host = format!("svc-{i}.ns-{}.svc.cluster.local", i / 100);
        let ns = format!("ns-{}", i / 100);
        write!(
            text,
            "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: svc-{i}, namespace: {ns}}}
spec:
  hosts: [{host}]
  ports: [{{number: 9080, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints:
  - {{address: 10.0.{}.{}, labels: {{version: v1}}}}
  - {{address: 10.1.{}.{}, labels: {{version: v2}}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: svc-{i}, namespace: {ns}}}
spec:
  host: {host}
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: svc-{i}, namespace: {ns}}}
spec:
  hosts: [{host}]
  http:
  - route:
    - {{destination: {{host: {host}, subset: v1}}, weight: 90}}
    - {{destination: {{host: {host}, subset: v2}}, weight: 10}}
---
",
            i / 256,
            i % 256,
            i / 256,
            i % 256
        )
        .unwrap();
    }
    let parsed = parse_text(&text, None);
    assert!(parsed.diagnostics.is_empty(), "{:?}", parsed.diagnostics);
    parsed.resources
}

/// A config source whose second and later reads wait until the test opens the gate, so a
/// reload is in progress for as long as the test needs.
#[derive(Debug)]
struct GatedSource {
    resources: Vec<Resource>,
    reads: AtomicUsize,
    /// Signalled when a gated read has started.
    entered: Arc<Notify>,
    gate: Mutex<mpsc::Receiver<()>>,
    changes: watch::Sender<u64>,
}

impl ConfigSource for GatedSource {
    fn collect(&self) -> (Vec<Arc<Resource>>, Vec<Diagnostic>) {
        if self.reads.fetch_add(1, Ordering::SeqCst) > 0 {
            self.entered.notify_one();
            let _ = self.gate.lock().unwrap().recv();
        }
        let shared = self.resources.iter().cloned().map(Arc::new).collect();
        (shared, Vec::new())
    }

    fn is_ready(&self) -> bool {
        true
    }

    fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }
}

/// One HTTP/1.1 GET on the admin port: status line and body.
async fn get(admin: SocketAddr, path: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(admin).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

// `#[tokio::test]` runs on one thread: the runtime of `sluice --workers 1`.
#[tokio::test]
async fn the_admin_answers_while_a_reload_compiles() {
    let (open, gate) = mpsc::channel();
    let entered = Arc::new(Notify::new());
    let source = Arc::new(GatedSource {
        resources: services(2_000),
        reads: AtomicUsize::new(0),
        entered: entered.clone(),
        gate: Mutex::new(gate),
        changes: watch::channel(0).0,
    });
    let mut opts = RunOptions::new(Vec::new());
    opts.admin = SocketAddr::from(([127, 0, 0, 1], 0));
    opts.proxy.gateway_role = false;
    opts.proxy.mesh_role = false;
    opts.source = Some(source.clone());
    let proxy = Arc::new(start(opts).await.unwrap());
    let admin = proxy.admin_addr;
    assert_eq!(proxy.snapshot().unwrap().version, 1);

    let reloading = {
        let proxy = proxy.clone();
        tokio::spawn(async move { proxy.reload().await })
    };
    entered.notified().await;
    // The reload is in progress (its read waits at the gate) and the admin answers.
    for _ in 0..3 {
        let ready = get(admin, "/ready").await;
        assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
        assert!(!reloading.is_finished());
    }
    let dump = get(admin, "/api/reload").await;
    assert!(dump.starts_with("HTTP/1.1 200"), "{dump}");
    assert!(!reloading.is_finished());

    open.send(()).unwrap();
    // While the 2,000 services compile, the admin keeps answering too.
    let mut answered = 0;
    while !reloading.is_finished() && answered < 1_000 {
        let ready = get(admin, "/ready").await;
        assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
        answered += 1;
    }
    let version = reloading.await.unwrap().unwrap().unwrap();
    assert_eq!(version, 2);
    assert_eq!(proxy.snapshot().unwrap().version, 2);
    assert_eq!(source.reads.load(Ordering::SeqCst), 2);
    drop(open);
    Arc::into_inner(proxy).unwrap().shutdown().await;
}
