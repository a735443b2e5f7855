//! Config files built to exhaust the loader (alias bombs, oversized files) are refused with a
//! diagnostic while the proxy keeps serving its last good config.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;

use sluice_test_support::*;

const HOST: &str = "app.default.svc.cluster.local";

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Nine levels of ten aliases (10⁹ strings once expanded) under a kind sluice skips: the
/// aliases are expanded before the kind is known.
fn alias_bomb() -> String {
    let mut text = String::from("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: lol}\ndata:\n  a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n");
    for (prev, name) in "abcdefgh".chars().zip("bcdefghi".chars()) {
        let aliases = vec![format!("*{prev}"); 10].join(",");
        text.push_str(&format!("  {name}: &{name} [{aliases}]\n"));
    }
    text
}

async fn reload_status(c: &TestClient, p: &ProxyHandle) -> serde_json::Value {
    let body = c.admin(p.admin_addr, "/api/reload").await.body;
    serde_json::from_str(&body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alias_bomb_dropped_into_the_config_directory_is_refused_and_traffic_goes_on() {
    let v1 = backend("app", "v1").await;
    let port = free_port();
    let dir = ConfigDir::new();
    dir.write("svc.yaml", &service_yaml(HOST, port, &[("v1", v1.addr())]));
    let p = proxy(dir.path(), |_| {}).await;
    let c = TestClient::new();
    assert_eq!(c.get(addr(port), "app", "/", &[]).await.status, 200);

    let bomb = dir.write("bomb.yaml", &alias_bomb());
    assert_eventually(
        Duration::from_secs(20),
        "the watcher's reload refused the bomb",
        || async { reload_status(&c, &p).await["status"] == "rejected" },
    )
    .await;
    let status = reload_status(&c, &p).await;
    let diagnostics = status["last_rejected"]["diagnostics"].as_array().unwrap();
    let refusal = diagnostics
        .iter()
        .find(|d| d["code"] == "SLC0006")
        .unwrap_or_else(|| panic!("no limit diagnostic: {status}"));
    assert_eq!(refusal["file"], bomb.display().to_string(), "{refusal}");
    assert_eq!(refusal["location"]["line"], 10, "{refusal}");

    for _ in 0..5 {
        assert_eq!(c.get(addr(port), "app", "/", &[]).await.status, 200);
    }
    assert_eq!(c.admin(p.admin_addr, "/ready").await.status, 200);
    p.shutdown().await;

    // A restart with the bomb still there fails with the diagnostic, instead of aborting.
    let mut opts = RunOptions::new(vec![dir.path().to_path_buf()]);
    opts.admin = "127.0.0.1:0".parse().unwrap();
    opts.proxy.gateway_address = "127.0.0.1".parse().unwrap();
    let refused = sluice::runtime::start(opts).await;
    let error = refused.err().expect("the initial config is refused");
    assert!(
        error
            .to_string()
            .contains("initial configuration is invalid"),
        "{error:#}"
    );
}

#[tokio::test]
async fn an_oversized_file_is_refused_unread() {
    let v1 = backend("app", "v1").await;
    let port = free_port();
    let dir = ConfigDir::new();
    dir.write("svc.yaml", &service_yaml(HOST, port, &[("v1", v1.addr())]));
    let p = proxy(dir.path(), |o| o.watch = false).await;
    let filler = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: big}}\ndata:\n  blob: \"{}\"\n",
        "x".repeat(sluice_model::limits::MAX_FILE_BYTES)
    );
    let big = dir.write("big.yaml", &filler);
    let rejected = p.reload().await.unwrap().unwrap_err();
    let refusal = rejected
        .diagnostics
        .iter()
        .find(|d| d.code == "SLC0006")
        .unwrap_or_else(|| panic!("{:?}", rejected.diagnostics));
    assert_eq!(
        refusal.file.as_deref(),
        Some(big.display().to_string().as_str())
    );
    assert!(refusal.message.contains("limit"), "{}", refusal.message);
    let c = TestClient::new();
    assert_eq!(c.get(addr(port), "app", "/", &[]).await.status, 200);
    p.shutdown().await;
}

/// A symlink back to the config directory (with the watcher on) neither stops the proxy from
/// starting nor multiplies the objects into "defined twice" errors.
#[tokio::test]
async fn a_symlink_loop_in_the_config_directory_loads_each_object_once() {
    let v1 = backend("app", "v1").await;
    let port = free_port();
    let dir = ConfigDir::new();
    dir.write("svc.yaml", &service_yaml(HOST, port, &[("v1", v1.addr())]));
    std::os::unix::fs::symlink(".", dir.path().join("loop")).unwrap();
    let p = proxy(dir.path(), |_| {}).await;
    let c = TestClient::new();
    assert_eq!(c.get(addr(port), "app", "/", &[]).await.status, 200);
    let reloaded = p.reload().await.unwrap();
    assert!(
        reloaded.is_ok(),
        "{:?}",
        reloaded.err().map(|r| r.diagnostics)
    );
    p.shutdown().await;
}
