//! `sluice demo --canary`: the canary tutorial automated. A healthy v2 is mirrored, tested by
//! header, then promoted 10 → 50 → 100; then a v3 that fails every request after a while is
//! rolled back by sluice itself, and the demo prints how many user requests failed before.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use http_body_util::{BodyExt as _, Empty};
use hyper::body::Bytes;
use sluice_canary::{Controller, Phase};
use sluice_tools::{Backend, BackendArgs};

use crate::demo::DemoArgs;
use crate::runtime::{start, RunOptions};

const KEY: &str = "default/app-backend";
const HOST: &str = "app-backend.default.svc.cluster.local";
/// v3 answers this many requests, then fails every one.
const V3_FAILS_AFTER: u64 = 15;

fn config(
    port: u16,
    endpoints: &[(&str, SocketAddr)],
    stable: &str,
    canary: &str,
    analysis: &str,
) -> String {
    let mut out = format!(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: app-backend}}\nspec:\n  hosts: [{HOST}]\n  ports: [{{number: {port}, name: http, protocol: HTTP}}]\n  resolution: STATIC\n  workloadSelector: {{labels: {{app: app-backend}}}}\n"
    );
    let mut subsets = String::new();
    for (v, addr) in endpoints {
        out.push_str(&format!(
            "---\napiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {{name: app-backend-{v}}}\nspec:\n  address: {}\n  ports: {{http: {}}}\n  labels: {{app: app-backend, version: {v}}}\n",
            addr.ip(),
            addr.port()
        ));
        subsets.push_str(&format!("  - {{name: {v}, labels: {{version: {v}}}}}\n"));
    }
    out.push_str(&format!(
        "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: app-backend}}\nspec:\n  host: app-backend\n  subsets:\n{subsets}"
    ));
    out.push_str(&format!(
        "---\n# Users are sent to {stable}; the Canary below moves them, the file stays as it is.\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: app-backend}}\nspec:\n  hosts: [app-backend]\n  http:\n  - name: primary\n    route: [{{destination: {{host: app-backend, subset: {stable}}}}}]\n"
    ));
    out.push_str(&format!(
        "---\napiVersion: rollouts.sluice.dev/v1alpha1\nkind: Canary\nmetadata: {{name: app-backend}}\nspec:\n  virtualService: app-backend\n  route: primary\n  stableSubset: {stable}\n  canarySubset: {canary}\n  analysis:\n{analysis}"
    ));
    out
}

/// User traffic: `rate` requests a second from a few clients, one in five with the tester's
/// header; counts answers by version and failures.
struct Users {
    stop: Arc<AtomicBool>,
    failed: Arc<AtomicU64>,
    total: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Users {
    fn start(port: u16, rate: u64) -> Users {
        let stop = Arc::new(AtomicBool::new(false));
        let failed = Arc::new(AtomicU64::new(0));
        let total = Arc::new(AtomicU64::new(0));
        let clients = 4u64;
        let pace = Duration::from_micros(1_000_000 * clients / rate.max(1));
        let tasks = (0..clients)
            .map(|i| {
                let (stop, failed, total) = (stop.clone(), failed.clone(), total.clone());
                tokio::spawn(async move {
                    let client = hyper_util::client::legacy::Client::builder(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .build_http::<Empty<Bytes>>();
                    let mut tick = tokio::time::interval(pace);
                    let mut n = i;
                    while !stop.load(Ordering::Relaxed) {
                        tick.tick().await;
                        n += clients;
                        let mut b = http::Request::get(format!("http://127.0.0.1:{port}/"))
                            .header(http::header::HOST, "app-backend");
                        if n % 5 == 0 {
                            b = b.header("canary", "canary-tester");
                        }
                        let Ok(req) = b.body(Empty::new()) else {
                            continue;
                        };
                        let ok =
                            match tokio::time::timeout(Duration::from_secs(2), client.request(req))
                                .await
                            {
                                Ok(Ok(resp)) => {
                                    let ok = resp.status().is_success();
                                    let _ = resp.into_body().collect().await;
                                    ok
                                }
                                _ => false,
                            };
                        total.fetch_add(1, Ordering::Relaxed);
                        if !ok {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        Users {
            stop,
            failed,
            total,
            tasks,
        }
    }

    fn counts(&self) -> (u64, u64) {
        (
            self.failed.load(Ordering::Relaxed),
            self.total.load(Ordering::Relaxed),
        )
    }

    async fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Prints every change of phase, weight or stage until the canary is final.
async fn follow(c: &Controller, limit: Duration) -> anyhow::Result<Phase> {
    let deadline = Instant::now() + limit;
    let mut last = String::new();
    loop {
        let s = c.status(KEY).unwrap_or_default();
        let line = format!(
            "  {:<12} weight {:>3}%{}{}  {}",
            s["phase"].as_str().unwrap_or("-"),
            s["weight"].as_u64().unwrap_or(0),
            s["mirror"]
                .as_u64()
                .map(|m| format!(", mirroring {m}%"))
                .unwrap_or_default(),
            if s["matched"].as_bool() == Some(true) {
                ", header canary: canary-tester → canary"
            } else {
                ""
            },
            s["message"].as_str().unwrap_or(""),
        );
        if line != last {
            println!("{line}");
            last = line;
        }
        if let Some(p) = c.phase(KEY).filter(|p| p.is_final()) {
            return Ok(p);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the canary did not finish within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn write(file: &Path, text: &str) -> anyhow::Result<()> {
    let tmp = file.with_file_name(".app-backend.yaml.tmp");
    std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, file).with_context(|| format!("cannot write {}", file.display()))
}

/// Runs the story and returns when both canaries are over.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let v1 = Backend::start(BackendArgs::ephemeral("app-backend", "v1")).await?;
    let v2 = Backend::start(BackendArgs::ephemeral("app-backend", "v2")).await?;
    let mut v3_args = BackendArgs::ephemeral("app-backend", "v3");
    v3_args.fail_after = Some(V3_FAILS_AFTER);
    let v3 = Backend::start(v3_args).await?;
    let (dir, temp) = match &args.dir {
        Some(d) => (d.clone(), None),
        None => {
            let t = std::env::temp_dir().join(format!("sluice-canary-demo-{}", std::process::id()));
            (t.clone(), Some(t))
        }
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let file = dir.join("app-backend.yaml");
    let endpoints = [("v1", v1.addr()), ("v2", v2.addr()), ("v3", v3.addr())];
    let first = "    interval: 1s\n    threshold: 2\n    minRequests: 10\n    mirror: true\n    mirrorWeight: 100\n    iterations: 2\n    match: [{headers: {canary: {exact: canary-tester}}}]\n    stepWeights: [10, 50]\n    metrics:\n    - {name: request-success-rate, thresholdRange: {min: 99}}\n    - {name: request-duration, thresholdRange: {max: 500}}\n";
    write(&file, &config(args.port, &endpoints, "v1", "v2", first))?;
    let mut opts = RunOptions::new(vec![dir.clone()]);
    opts.admin = args.admin;
    opts.proxy.gateway_role = false;
    opts.debounce = Duration::from_millis(100);
    let proxy = start(opts).await?;
    let controller = proxy
        .canaries
        .clone()
        .context("the canary controller did not start")?;
    println!(
        "config:    {} (a Canary next to the Istio objects)",
        file.display()
    );
    println!(
        "dashboard: http://{}/   status: sluice canary status --admin {}\n",
        proxy.admin_addr, proxy.admin_addr
    );
    let users = Users::start(args.port, 100);
    println!(
        "1. v2 rolls out: mirrored, tested by header, then 10 % → 50 % → 100 % (1 s interval)"
    );
    let phase = follow(&controller, Duration::from_secs(120)).await?;
    println!("   v2: {}\n", phase.name());

    println!(
        "2. The VirtualService now points at v2; v3 rolls out with weighted steps only, and fails every request after {V3_FAILS_AFTER} requests"
    );
    let second = "    interval: 1s\n    threshold: 2\n    minRequests: 5\n    stepWeights: [10, 20, 50]\n    metrics:\n    - {name: request-success-rate, thresholdRange: {min: 99}}\n";
    let (failed_before, _) = users.counts();
    write(&file, &config(args.port, &endpoints, "v2", "v3", second))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while controller
        .status(KEY)
        .is_none_or(|s| s["canarySubset"] != "v3")
    {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the new Canary was not picked up"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let phase = follow(&controller, Duration::from_secs(120)).await?;
    let (failed_after, total) = users.counts();
    users.stop().await;
    let s = controller.status(KEY).unwrap_or_default();
    println!("   v3: {}", phase.name());
    if let Some(r) = s["rollbackReason"].as_str() {
        println!("   rollback reason: {r}");
    }
    println!(
        "\n{} user requests in all; {} failed before v3 was rolled back (v2 before: {} failed)",
        total,
        failed_after - failed_before,
        failed_before
    );
    let versions: BTreeMap<&str, u64> = [
        ("v1", v1.requests()),
        ("v2", v2.requests()),
        ("v3", v3.requests()),
    ]
    .into_iter()
    .collect();
    println!("requests each version received (mirrored copies included): {versions:?}");
    proxy.shutdown().await;
    v1.shutdown().await;
    v2.shutdown().await;
    v3.shutdown().await;
    if let Some(t) = temp {
        let _ = std::fs::remove_dir_all(t);
    }
    Ok(())
}
