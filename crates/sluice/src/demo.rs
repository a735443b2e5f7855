//! `sluice demo`: the canary tutorial on one machine — two backend versions, a 90/10 split,
//! live reload when the printed file is edited.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use sluice_tools::{Backend, BackendArgs, TrafficArgs};

use crate::runtime::{start, RunOptions};

/// `sluice demo` options.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Directory to write the config to (default: a new temporary directory, removed at exit).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Port the app-backend service listens on through the proxy.
    #[arg(long, default_value_t = 9080)]
    pub port: u16,
    /// Admin API address.
    #[arg(long, default_value = "127.0.0.1:15000")]
    pub admin: SocketAddr,
    /// The buggy v1 stops answering after this many requests, as in the tutorial.
    #[arg(long, default_value_t = 1000)]
    pub hang_after: u64,
    /// Requests sent to show the split.
    #[arg(long, short = 'n', default_value_t = 100)]
    pub requests: u64,
    /// Run the automated canary story instead: v2 mirrored, tested by header and promoted;
    /// then v3, failing every request after its 15th, rolled back by itself.
    #[arg(long)]
    pub canary: bool,
}

/// The tutorial's config for two endpoints, at a given split.
pub fn canary_config(v1: SocketAddr, v2: SocketAddr, port: u16, weight_v1: u32) -> String {
    let weight_v2 = 100 - weight_v1;
    format!(
        r#"# The app-backend service: on Kubernetes this is a Service and two Deployments.
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: app-backend
spec:
  hosts:
  - app-backend.default.svc.cluster.local
  ports:
  - number: {port}
    name: http
    protocol: HTTP
  resolution: STATIC
  workloadSelector:
    labels:
      app: app-backend
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: app-backend-v1
spec:
  address: {v1ip}
  ports:
    http: {v1port}
  labels:
    app: app-backend
    version: v1
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: app-backend-v2
spec:
  address: {v2ip}
  ports:
    http: {v2port}
  labels:
    app: app-backend
    version: v2
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: app-backend
spec:
  host: app-backend
  subsets:
  - name: v1
    labels:
      version: v1
  - name: v2
    labels:
      version: v2
---
# Edit the weights below and save: sluice reloads within a second.
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: app-backend
spec:
  hosts:
  - app-backend
  http:
  - route:
    - destination:
        host: app-backend
        subset: v1
      weight: {weight_v1}
    - destination:
        host: app-backend
        subset: v2
      weight: {weight_v2}
"#,
        v1ip = v1.ip(),
        v1port = v1.port(),
        v2ip = v2.ip(),
        v2port = v2.port(),
    )
}

/// Runs the demo until `shutdown` completes.
pub async fn run(args: DemoArgs, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    if args.canary {
        return crate::demo_canary::run(args).await;
    }
    let mut v1_args = BackendArgs::ephemeral("app-backend", "v1");
    v1_args.hang_after = Some(args.hang_after);
    let v1 = Backend::start(v1_args).await?;
    let v2 = Backend::start(BackendArgs::ephemeral("app-backend", "v2")).await?;
    let (dir, temp) = match &args.dir {
        Some(d) => (d.clone(), None),
        None => {
            let t = std::env::temp_dir().join(format!("sluice-demo-{}", std::process::id()));
            (t.clone(), Some(t))
        }
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let file = dir.join("app-backend.yaml");
    std::fs::write(&file, canary_config(v1.addr(), v2.addr(), args.port, 90))
        .with_context(|| format!("cannot write {}", file.display()))?;
    let mut opts = RunOptions::new(vec![dir.clone()]);
    opts.admin = args.admin;
    opts.proxy.gateway_role = false;
    let proxy = start(opts).await?;
    let url = format!("http://127.0.0.1:{}/", args.port);
    println!(
        "backends: app-backend v1 on {} (stops answering after {} requests), v2 on {}",
        v1.addr(),
        args.hang_after,
        v2.addr()
    );
    println!(
        "proxy:    app-backend.default.svc.cluster.local:{} on 127.0.0.1:{}, admin on http://{}",
        args.port, args.port, proxy.admin_addr
    );
    println!(
        "live:     http://{}/ (traffic graph, weights, reloads)",
        proxy.admin_addr
    );
    println!("config:   {}\n", file.display());
    let mut traffic = TrafficArgs::new(url.clone());
    traffic.requests = args.requests;
    traffic.concurrency = 4;
    traffic.headers = vec!["Host: app-backend".into()];
    let report = sluice_tools::run_traffic(&traffic).await?;
    println!("{} requests at 90/10:\n{}", args.requests, report.render());
    println!("Next steps:");
    println!(
        "  1. Edit {} and set the weights to 50 and 50; save. sluice reloads it.",
        file.display()
    );
    println!("  2. sluice traffic {url} -n 100 -H 'Host: app-backend'     # see 50/50");
    println!(
        "  3. Set the weights to 0 and 100 to finish the rollout (or 100 and 0 to roll back)."
    );
    println!(
        "  4. sluice analyze {}                                       # check your edits",
        dir.display()
    );
    println!(
        "  5. curl http://{}/routes                                   # what is active",
        proxy.admin_addr
    );
    println!("\nPress Ctrl-C to stop.");
    shutdown.await;
    proxy.shutdown().await;
    v1.shutdown().await;
    v2.shutdown().await;
    if let Some(t) = temp {
        let _ = std::fs::remove_dir_all(t);
    }
    Ok(())
}
