//! The admin dashboard in a real browser: the demo's 90/10 canary carries traffic, then
//! headless Chromium (driven by `tests/browser/dashboard.mjs`) checks that the page draws both
//! versions with traffic and shows the configured weights, that its host filter shows one
//! service, and saves a screenshot.
//!
//! Without Node, the browser scripts' packages or Chromium the test prints `skipped: …` and
//! passes, unless `SLUICE_REQUIRE_BROWSER=1` (CI), where that is a failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sluice_test_support::*;

const REQUESTS: usize = 300;
/// The script gives up after 45 s on its own; this covers a hung Node.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(60);

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn chromium() -> PathBuf {
    std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// Why the browser check cannot run on this machine, if it cannot.
fn missing_browser(browser_dir: &Path) -> Option<String> {
    let node = Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !node.is_ok_and(|s| s.success()) {
        return Some("node is not installed".into());
    }
    if !browser_dir.join("node_modules/playwright-core").is_dir() {
        return Some(format!(
            "{}/node_modules is missing (npm ci there)",
            browser_dir.display()
        ));
    }
    let chromium = chromium();
    if !chromium.is_file() {
        return Some(format!("{} is not installed", chromium.display()));
    }
    None
}

/// Where the screenshot goes: `$SLUICE_ARTIFACTS`, else the target directory.
fn screenshot_path() -> PathBuf {
    let dir = match std::env::var_os("SLUICE_ARTIFACTS") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_TARGET_TMPDIR"))
            .parent()
            .unwrap()
            .to_path_buf(),
    };
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("dashboard.png")
}

/// Runs the browser script to completion (bounded); returns (success, stdout, stderr).
async fn run_browser(browser_dir: &Path, args: &[String]) -> (bool, String, String) {
    let logs = tempfile::tempdir().unwrap();
    let (out_path, err_path) = (logs.path().join("out"), logs.path().join("err"));
    // Output goes to files so a chatty child can never block on a full pipe.
    let mut child = Command::new("node")
        .arg("dashboard.mjs")
        .args(args)
        .current_dir(browser_dir)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + BROWSER_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        // The proxy and admin server run on this runtime: wait without blocking it.
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let out = std::fs::read_to_string(&out_path).unwrap_or_default();
    let mut err = std::fs::read_to_string(&err_path).unwrap_or_default();
    if status.is_none() {
        err.push_str(&format!("\nkilled after {BROWSER_TIMEOUT:?}"));
    }
    (status.is_some_and(|s| s.success()), out, err)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_draws_the_canary_in_chromium() {
    let browser_dir = workspace_root().join("tests/browser");
    if let Some(why) = missing_browser(&browser_dir) {
        assert!(
            std::env::var("SLUICE_REQUIRE_BROWSER").as_deref() != Ok("1"),
            "SLUICE_REQUIRE_BROWSER=1 but {why}"
        );
        println!("skipped: {why}; .ci/stage-dashboard.sh installs what the browser test needs");
        return;
    }

    let v1 = backend("app-backend", "v1").await;
    let v2 = backend("app-backend", "v2").await;
    let port = free_port();
    let dir = ConfigDir::new();
    dir.write(
        "app-backend.yaml",
        &sluice::demo::canary_config(v1.addr(), v2.addr(), port, 90),
    );
    let p = proxy(dir.path(), |o| o.proxy.gateway_role = false).await;
    let client = TestClient::new();
    let target = SocketAddr::from(([127, 0, 0, 1], port));
    for _ in 0..REQUESTS {
        let reply = client.get(target, "app-backend", "/", &[]).await;
        assert_eq!(reply.status, 200, "{reply:?}");
    }

    let screenshot = screenshot_path();
    let args: Vec<String> = [
        &format!("http://{}/", p.admin_addr),
        "--screenshot",
        &screenshot.display().to_string(),
        "--node",
        "app-backend v1",
        "--node",
        "app-backend v2",
        "--weight",
        "90",
        "--weight",
        "10",
        "--filter",
        "app-backend.default.svc.cluster.local",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let (ok, out, err) = run_browser(&browser_dir, &args).await;
    assert!(
        ok,
        "browser check failed\n--- stdout\n{out}\n--- stderr\n{err}"
    );
    assert!(out.contains("OK: dashboard shows"), "{out}");
    println!("screenshot: {}", screenshot.display());

    p.shutdown().await;
    v1.shutdown().await;
    v2.shutdown().await;
}
