//! Real Prometheus and VictoriaMetrics scrape a running sluice carrying a 90/10 split, and the
//! canary dashboard's query (`sum(rate(istio_requests_total{reporter="source"}[1m])) by
//! (destination_version)`) shows both versions in that proportion.
//!
//! Needs Debian's `prometheus` and `victoria-metrics` (`bash .ci/stage-scrape.sh`). Without them
//! the test prints `skipped: ...` and passes, unless `SLUICE_REQUIRE_EXTERNAL=1`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use sluice_test_support::*;

const PROMETHEUS: &str = "/usr/bin/prometheus";
const VICTORIA_METRICS: &str = "/usr/bin/victoria-metrics";

/// The query of the canary dashboards.
const SPLIT: &str =
    r#"sum(rate(istio_requests_total{reporter="source"}[1m])) by (destination_version)"#;
/// How many requests the scraper has seen grow within the window: the figures are read only
/// once this is large enough that one request more or less cannot move the share.
const SEEN: &str = r#"sum(increase(istio_requests_total{reporter="source"}[1m]))"#;
const ENOUGH_REQUESTS: f64 = 800.0;

const WEIGHT_V2: f64 = 0.10;
const TOLERANCE: f64 = 0.03;

/// One request every 10 ms: ~100/s, light enough for a 2-core machine that also runs both
/// scrapers, and enough for ENOUGH_REQUESTS within ~10 s of scraping.
const TRAFFIC_PERIOD: Duration = Duration::from_millis(10);
const TRAFFIC_MAX_REQUESTS: u32 = 4_500;
const TRAFFIC_MAX_TIME: Duration = Duration::from_secs(45);
const STARTUP_DEADLINE: Duration = Duration::from_secs(30);
const DATA_DEADLINE: Duration = Duration::from_secs(40);
const POLL: Duration = Duration::from_millis(250);

type HttpClient = Client<HttpConnector, Empty<Bytes>>;

/// A scraper process, killed when the test ends however it ends.
struct Daemon {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Daemon {
    fn spawn(name: &'static str, program: &str, args: &[String], log: PathBuf) -> Daemon {
        let out = File::create(&log).unwrap();
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
        Daemon { name, child, log }
    }

    /// The last lines it logged, for failure messages.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let from = lines.len().saturating_sub(25);
        lines[from..].join("\n")
    }

    /// Fails at once, with its log, if it has exited: waiting out a deadline would hide why.
    fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!(
                "{} exited ({status}); its log:\n{}",
                self.name,
                self.log_tail()
            );
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A scraper and where its Prometheus query API listens.
struct Scraper {
    daemon: Daemon,
    addr: SocketAddr,
}

impl Scraper {
    /// Runs an instant query; `Err` carries what came back, for the failure message.
    async fn query(
        &self,
        client: &HttpClient,
        promql: &str,
    ) -> Result<BTreeMap<String, f64>, String> {
        let path = format!("/api/v1/query?query={}", encode(promql));
        let (status, body) = http_get(client, self.addr, &path).await?;
        if status != StatusCode::OK {
            return Err(format!("{status}: {body}"));
        }
        parse_vector(&body)
    }

    /// Polls `check` on `promql` until it holds; on the deadline fails with the last answer and
    /// the scraper's log.
    async fn wait_for(
        &mut self,
        client: &HttpClient,
        promql: &str,
        what: &str,
        deadline: Instant,
        check: impl Fn(&BTreeMap<String, f64>) -> bool,
    ) -> BTreeMap<String, f64> {
        loop {
            self.daemon.assert_running();
            let last = self.query(client, promql).await;
            if let Ok(v) = &last {
                if check(v) {
                    return v.clone();
                }
            }
            if Instant::now() >= deadline {
                panic!(
                    "{}: not true in time: {what}\nlast answer to {promql}: {last:?}\nits log:\n{}",
                    self.daemon.name,
                    self.daemon.log_tail()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

async fn http_get(
    client: &HttpClient,
    addr: SocketAddr,
    path: &str,
) -> Result<(StatusCode, String), String> {
    let req = Request::get(format!("http://{addr}{path}"))
        .body(Empty::new())
        .map_err(|e| e.to_string())?;
    let resp = tokio::time::timeout(Duration::from_secs(5), client.request(req))
        .await
        .map_err(|_| "timed out".to_string())?
        .map_err(|e| e.to_string())?;
    let status = resp.status();
    let body = tokio::time::timeout(Duration::from_secs(5), resp.into_body().collect())
        .await
        .map_err(|_| "body timed out".to_string())?
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// Percent-encodes a query-string value (everything but RFC 3986's unreserved characters).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 2);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// An instant vector as `destination_version` (or "" when absent) -> value.
fn parse_vector(body: &str) -> Result<BTreeMap<String, f64>, String> {
    let json: serde_json::Value = serde_json::from_str(body).map_err(|e| format!("{e}: {body}"))?;
    let result = json["data"]["result"]
        .as_array()
        .ok_or_else(|| format!("no data.result: {body}"))?;
    let mut out = BTreeMap::new();
    for sample in result {
        let key = sample["metric"]["destination_version"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let value: f64 = sample["value"][1]
            .as_str()
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("bad sample {sample}"))?;
        out.insert(key, value);
    }
    Ok(out)
}

fn skip_or_fail_if_missing() -> bool {
    let missing: Vec<&str> = [PROMETHEUS, VICTORIA_METRICS]
        .into_iter()
        .filter(|p| !Path::new(p).exists())
        .collect();
    if missing.is_empty() {
        return false;
    }
    let why = format!(
        "{} not installed; install Debian's prometheus and victoria-metrics packages \
         (apt-get install prometheus victoria-metrics, or bash .ci/stage-scrape.sh)",
        missing.join(" and ")
    );
    assert!(
        std::env::var("SLUICE_REQUIRE_EXTERNAL").as_deref() != Ok("1"),
        "SLUICE_REQUIRE_EXTERNAL=1 but {why}"
    );
    println!("skipped: {why}");
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_and_victoria_metrics_see_the_90_10_split() {
    if skip_or_fail_if_missing() {
        return;
    }
    let started = Instant::now();
    // Declared first so it is removed last, after the daemons writing into it are dead.
    let work = tempfile::tempdir().unwrap();

    let v1 = backend("app-backend", "v1").await;
    let v2 = backend("app-backend", "v2").await;
    let port = free_port();
    let dir = ConfigDir::new();
    dir.write(
        "canary.yaml",
        &sluice::demo::canary_config(v1.addr(), v2.addr(), port, 90),
    );
    let proxy = proxy(dir.path(), |o| o.proxy.gateway_role = false).await;
    let target = SocketAddr::from(([127, 0, 0, 1], port));
    let client = TestClient::new();

    // Both series exist before the first scrape, so both scrapers see them from the same
    // scrape on and neither has to guess where a series that appears mid-window started.
    for _ in 0..100 {
        assert_eq!(
            client.get(target, "app-backend", "/", &[]).await.status,
            200
        );
    }

    let config = work.path().join("scrape.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n- job_name: sluice\n  metrics_path: /stats/prometheus\n  static_configs:\n  - targets: ['{}']\n",
            proxy.admin_addr
        ),
    )
    .unwrap();
    let config = config.display().to_string();

    let prom_addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let prom_data = work.path().join("prometheus");
    let prometheus = Daemon::spawn(
        "prometheus",
        PROMETHEUS,
        &[
            format!("--config.file={config}"),
            format!("--storage.tsdb.path={}", prom_data.display()),
            format!("--web.listen-address={prom_addr}"),
        ],
        work.path().join("prometheus.log"),
    );
    let vm_addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let vm_data = work.path().join("victoria-metrics");
    let victoria = Daemon::spawn(
        "victoria-metrics",
        VICTORIA_METRICS,
        &[
            format!("-promscrape.config={config}"),
            format!("-storageDataPath={}", vm_data.display()),
            format!("-httpListenAddr={vm_addr}"),
            // By default the newest 30 s are hidden from queries and answers are cached; the
            // test reads figures seconds old.
            "-search.latencyOffset=0s".into(),
            "-search.disableCache".into(),
        ],
        work.path().join("victoria-metrics.log"),
    );
    let mut scrapers = [
        Scraper {
            daemon: prometheus,
            addr: prom_addr,
        },
        Scraper {
            daemon: victoria,
            addr: vm_addr,
        },
    ];

    let http: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let up = r#"up{job="sluice"}"#;
    let deadline = Instant::now() + STARTUP_DEADLINE;
    for s in &mut scrapers {
        s.wait_for(&http, up, "has scraped sluice (up == 1)", deadline, |v| {
            v.get("") == Some(&1.0)
        })
        .await;
    }
    println!(
        "both scrapers up and scraping {} after {:.1?}",
        proxy.admin_addr,
        started.elapsed()
    );

    let stop = Arc::new(AtomicBool::new(false));
    let traffic = tokio::spawn({
        let stop = stop.clone();
        let client = client.clone();
        async move {
            let mut tick = tokio::time::interval(TRAFFIC_PERIOD);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let deadline = Instant::now() + TRAFFIC_MAX_TIME;
            let mut by_version: BTreeMap<String, u32> = BTreeMap::new();
            for _ in 0..TRAFFIC_MAX_REQUESTS {
                if stop.load(Ordering::Relaxed) || Instant::now() >= deadline {
                    break;
                }
                tick.tick().await;
                let reply = client.get(target, "app-backend", "/", &[]).await;
                let key = if reply.status == StatusCode::OK {
                    reply
                        .first_line()
                        .split_whitespace()
                        .nth(1)
                        .unwrap_or("?")
                        .to_string()
                } else {
                    format!("status {}", reply.status)
                };
                *by_version.entry(key).or_default() += 1;
            }
            by_version
        }
    });
    let traffic_started = Instant::now();

    let deadline = traffic_started + DATA_DEADLINE;
    let mut figures = Vec::new();
    for s in &mut scrapers {
        s.wait_for(
            &http,
            SEEN,
            &format!("has seen at least {ENOUGH_REQUESTS} requests within [1m]"),
            deadline,
            |v| v.get("").is_some_and(|n| *n >= ENOUGH_REQUESTS),
        )
        .await;
        let split = s
            .wait_for(&http, SPLIT, "reports v1 and v2", deadline, |v| {
                v.contains_key("v1") && v.contains_key("v2")
            })
            .await;
        figures.push((s.daemon.name, split));
    }
    stop.store(true, Ordering::Relaxed);
    let sent = tokio::time::timeout(Duration::from_secs(15), traffic)
        .await
        .expect("traffic did not stop")
        .expect("traffic task failed");
    let total: u32 = sent.values().sum();
    println!(
        "client: {total} requests in {:.1?} ({:.1}/s): {sent:?}",
        traffic_started.elapsed(),
        f64::from(total) / traffic_started.elapsed().as_secs_f64()
    );
    assert_eq!(
        total,
        sent.get("v1").copied().unwrap_or(0) + sent.get("v2").copied().unwrap_or(0),
        "every request through the proxy answered 200 by v1 or v2: {sent:?}"
    );

    for (name, split) in &figures {
        let (r1, r2) = (split["v1"], split["v2"]);
        let share = r2 / (r1 + r2);
        println!("{name}: {SPLIT} -> v1 {r1:.3}/s, v2 {r2:.3}/s, v2 share {share:.4}");
        assert!(
            r1 > 0.0 && r2 > 0.0,
            "{name}: both versions carry traffic: {split:?}"
        );
        assert!(
            (share - WEIGHT_V2).abs() <= TOLERANCE,
            "{name}: v2 share {share:.4} not within {WEIGHT_V2} ± {TOLERANCE}: {split:?}"
        );
    }

    drop(scrapers);
    proxy.shutdown().await;
    println!("done in {:.1?}", started.elapsed());
}
