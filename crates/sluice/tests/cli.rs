//! The `sluice` binary as a user runs it: exit codes, signals, the demo.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn sluice() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} failed");
}

fn wait_exit(child: &mut std::process::Child, timeout: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("process did not exit within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits (10 s at most) until something accepts connections on `port`.
fn wait_listening(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn http_get(port: u16, host: &str, path: &str) -> String {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn analyze_exit_codes() {
    let bad = sluice()
        .args(["analyze", "tests/fixtures/analyze/broken"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stdout).contains("error[IST0101]"));
    let good = sluice()
        .args(["analyze", "tests/fixtures/analyze/clean"])
        .output()
        .unwrap();
    assert_eq!(
        good.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&good.stdout)
    );
    let json = sluice()
        .args(["analyze", "-o", "json", "tests/fixtures/analyze/syntax"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v[0]["code"], "SLC0001");
}

#[test]
fn run_refuses_an_invalid_initial_config() {
    let out = sluice()
        .args([
            "run",
            "tests/fixtures/analyze/syntax",
            "--admin",
            "127.0.0.1:0",
            "--no-watch",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("initial configuration is invalid"));
}

#[test]
fn demo_splits_90_10_then_exits_cleanly_on_sigint() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = sluice()
        .args([
            "demo",
            "--admin",
            "127.0.0.1:0",
            "--port",
            &port.to_string(),
            "--dir",
        ])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !seen.contains("Press Ctrl-C") && Instant::now() < deadline {
        match lines.next() {
            Some(Ok(l)) => {
                seen.push_str(&l);
                seen.push('\n');
            }
            _ => break,
        }
    }
    assert!(seen.contains("90  90.0%  app-backend v1"), "{seen}");
    assert!(seen.contains("10  10.0%  app-backend v2"), "{seen}");
    // The printed file is live: move to 0/100 and see v2 only.
    let file = dir.path().join("app-backend.yaml");
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace("weight: 90", "weight: 0")
        .replace("weight: 10", "weight: 100");
    std::fs::write(&file, text).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = http_get(port, "app-backend", "/");
        if r.contains("x-version: v2") {
            break;
        }
        assert!(Instant::now() < deadline, "reload not applied: {r}");
        std::thread::sleep(Duration::from_millis(50));
    }
    signal(child.id(), "-INT");
    let status = wait_exit(&mut child, Duration::from_secs(15));
    assert!(status.success(), "{status:?}");
}

#[test]
fn run_drains_and_exits_zero_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    std::fs::write(
        dir.path().join("svc.yaml"),
        format!("apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: x}}\nspec:\n  hosts: [x.default.svc.cluster.local]\n  ports: [{{number: {port}, name: http}}]\n  resolution: STATIC\n  endpoints: [{{address: 127.0.0.1, ports: {{http: 1}}}}]\n"),
    )
    .unwrap();
    let mut child = sluice()
        .args(["run", "--admin", "127.0.0.1:0", "--no-gateway"])
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_listening(port, "listener never came up");
    // Endpoint port 1 refuses connections: Envoy's UF reply.
    assert!(http_get(port, "x", "/").starts_with("HTTP/1.1 503"));
    signal(child.id(), "-TERM");
    let status = wait_exit(&mut child, Duration::from_secs(15));
    assert!(status.success(), "{status:?}");
    // Logged to a pipe: plain text that `grep` finds, no colour codes.
    let mut log = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    assert!(log.contains("sluice started"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "colour codes in a piped log: {log:?}"
    );
}

#[test]
fn the_mesh_outbound_traffic_policy_flag_refuses_unknown_hosts() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    std::fs::write(
        dir.path().join("svc.yaml"),
        format!("apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: x}}\nspec:\n  hosts: [x.default.svc.cluster.local]\n  ports: [{{number: {port}, name: http}}]\n  resolution: STATIC\n  endpoints: [{{address: 127.0.0.1, ports: {{http: 1}}}}]\n"),
    )
    .unwrap();
    let mut child = sluice()
        .args(["run", "--admin", "127.0.0.1:0", "--no-gateway"])
        .args(["--outbound-traffic-policy", "REGISTRY_ONLY"])
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_listening(port, "listener never came up");
    // A host outside the registry: Istio's BlackHoleCluster, not `404 NR`.
    assert!(http_get(port, "elsewhere.example.com", "/").starts_with("HTTP/1.1 502"));
    // A known host is routed (its endpoint refuses: `503 UF`).
    assert!(http_get(port, "x", "/").starts_with("HTTP/1.1 503"));
    signal(child.id(), "-TERM");
    let status = wait_exit(&mut child, Duration::from_secs(15));
    assert!(status.success(), "{status:?}");
}

#[test]
fn explain_against_a_running_proxy() {
    let admin = free_port();
    let mut child = sluice()
        .args([
            "run",
            "--admin",
            &format!("127.0.0.1:{admin}"),
            "--no-gateway",
            "--no-watch",
        ])
        .arg("tests/fixtures/analyze/clean")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_listening(admin, "admin never came up");
    let explain = |extra: &[&str]| {
        let out = sluice()
            .args(["explain", "--admin", &format!("127.0.0.1:{admin}")])
            .args(extra)
            .args(["GET", "http://reviews:9080/"])
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, out, err) = explain(&["-H", "end-user: jason"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("✓ reviews.0") && out.contains("· reviews.1"),
        "{out}"
    );
    let (ok, out, _) = explain(&["-o", "json"]);
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["rules"][0]["verdict"], "no match");
    let (ok, _, err) = explain(&["--gateway", "nope"]);
    assert!(!ok);
    assert!(err.contains("no gateway listener on port 9080"), "{err}");
    signal(child.id(), "-TERM");
    assert!(wait_exit(&mut child, Duration::from_secs(15)).success());
}

/// `sluice traffic` fails (exit 1, a message) when a request got no response, and with
/// `--expect CODE` when a status differs; it succeeds otherwise.
#[test]
fn traffic_exits_non_zero_when_requests_fail() {
    let port = free_port();
    let out = sluice()
        .args(["traffic", &format!("http://127.0.0.1:{port}/"), "-n", "3"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stdout.contains("errors: connect=3"), "{stdout}");
    assert!(
        stderr.contains("3 of 3 requests got no response"),
        "{stderr}"
    );

    let backend_port = free_port();
    let mut backend = sluice()
        .args(["backend", "--listen", &format!("127.0.0.1:{backend_port}")])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let url = |path: &str| format!("http://127.0.0.1:{backend_port}{path}");
    wait_listening(backend_port, "backend did not start");
    let ok = sluice()
        .args(["traffic", &url("/"), "-n", "3", "--expect", "200"])
        .output()
        .unwrap();
    assert_eq!(ok.status.code(), Some(0));
    let wrong = sluice()
        .args(["traffic", &url("/status/503"), "-n", "2", "--expect", "200"])
        .output()
        .unwrap();
    assert_eq!(wrong.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("2 of 2 responses were not 200"));
    // An empty 404 (no route for the Host) comes with a hint about the Host header.
    let proxy_port = free_port();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("svc.yaml"),
        format!("apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: app-backend}}\nspec:\n  hosts: [app-backend.default.svc.cluster.local]\n  ports: [{{number: {proxy_port}, name: http}}]\n  resolution: STATIC\n  endpoints: [{{address: 127.0.0.1, ports: {{http: {backend_port}}}}}]\n"),
    )
    .unwrap();
    let mut proxy = sluice()
        .args([
            "run",
            "--admin",
            "127.0.0.1:0",
            "--no-gateway",
            "--no-watch",
        ])
        .arg(dir.path())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_listening(proxy_port, "proxy never came up");
    let nr = sluice()
        .args([
            "traffic",
            &format!("http://127.0.0.1:{proxy_port}/"),
            "-n",
            "2",
        ])
        .output()
        .unwrap();
    let hint = String::from_utf8_lossy(&nr.stderr);
    assert!(String::from_utf8_lossy(&nr.stdout).contains("404=2"));
    assert!(
        hint.contains(&format!(
            "no virtual host serves Host `127.0.0.1:{proxy_port}`"
        )),
        "{hint}"
    );
    assert!(hint.contains("-H 'Host: <service>'"), "{hint}");
    let routed = sluice()
        .args([
            "traffic",
            &format!("http://127.0.0.1:{proxy_port}/"),
            "-n",
            "2",
            "-H",
            "Host: app-backend",
        ])
        .output()
        .unwrap();
    assert!(routed.status.success());
    assert!(!String::from_utf8_lossy(&routed.stderr).contains("hint"));
    let _ = proxy.kill();
    let _ = proxy.wait();
    // Without --expect, answered requests are not failures.
    let answered = sluice()
        .args(["traffic", &url("/status/503"), "-n", "2"])
        .output()
        .unwrap();
    assert_eq!(answered.status.code(), Some(0));
    let _ = backend.kill();
    let _ = backend.wait();
}

/// A listener that cannot be bound at start is fatal, naming the address and who holds it.
#[test]
fn run_fails_when_a_listener_port_is_taken() {
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("svc.yaml"),
        format!("apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: x}}\nspec:\n  hosts: [x.default.svc.cluster.local]\n  ports: [{{number: {port}, name: http}}]\n  resolution: STATIC\n  endpoints: [{{address: 127.0.0.1, ports: {{http: 1}}}}]\n"),
    )
    .unwrap();
    let out = sluice()
        .args([
            "run",
            "--admin",
            "127.0.0.1:0",
            "--no-gateway",
            "--no-watch",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("cannot bind listener 127.0.0.1:{port}")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("held by pid {}", std::process::id())),
        "{stderr}"
    );
    drop(held);
}

/// A Gateway whose selector matches none of the proxy's labels is said, not silent:
/// `analyze --labels` and the proxy's start both report it.
#[test]
fn a_gateway_selecting_other_labels_is_reported() {
    let out = sluice()
        .args([
            "analyze",
            "../../examples/subdomain-gateway",
            "--labels",
            "app=sleep",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "warnings only: {text}");
    assert!(
        text.contains("warning[SLC0015] Gateway default/app-gateway spec.selector: Gateway default/app-gateway selects istio=ingressgateway; this proxy has app=sleep"),
        "{text}"
    );
    let fine = sluice()
        .args([
            "analyze",
            "../../examples/subdomain-gateway",
            "--labels",
            "istio=ingressgateway",
        ])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&fine.stdout).contains("SLC0015"));
}

/// `sluice reload` makes the proxy read its files now and reports the outcome: the new
/// version, or the rejection with the diagnostics (exit 1), the previous config staying.
#[test]
fn reload_applies_an_edit_now_or_reports_the_rejection() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let admin = free_port();
    let svc = |weight: i32| {
        format!("apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: x}}\nspec:\n  hosts: [x.default.svc.cluster.local]\n  ports: [{{number: {port}, name: http}}]\n  resolution: STATIC\n  endpoints: [{{address: 127.0.0.1, ports: {{http: 1}}}}]\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: x}}\nspec:\n  hosts: [x]\n  http:\n  - route: [{{destination: {{host: x}}, weight: {weight}}}]\n")
    };
    std::fs::write(dir.path().join("svc.yaml"), svc(100)).unwrap();
    let mut child = sluice()
        .args([
            "run",
            "--no-gateway",
            "--no-watch",
            "--admin",
            &format!("127.0.0.1:{admin}"),
        ])
        .arg(dir.path())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_listening(admin, "admin never came up");
    let reload = || {
        sluice()
            .args(["reload", "--admin", &format!("127.0.0.1:{admin}")])
            .output()
            .unwrap()
    };
    let ok = reload();
    assert!(ok.status.success());
    assert_eq!(
        String::from_utf8_lossy(&ok.stdout),
        "config version 2 is active (0 warning(s))\n"
    );
    std::fs::write(dir.path().join("svc.yaml"), svc(-5)).unwrap();
    let bad = reload();
    assert_eq!(bad.status.code(), Some(1));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("reload rejected; the previous config stays in force"),
        "{err}"
    );
    assert!(
        err.contains("VirtualService default/x spec.http[0].route[0].weight"),
        "{err}"
    );
    let _ = child.kill();
    let _ = child.wait();
}

/// `sluice run config/` (a path relative to the working directory, as typed by hand) reloads
/// when a file under it is edited.
#[test]
fn a_relative_config_path_is_watched() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("config")).unwrap();
    let admin = free_port();
    let vs = |name: &str| {
        format!("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: {name}}}\nspec:\n  hosts: [x.example.com]\n  http:\n  - directResponse: {{status: 204}}\n")
    };
    std::fs::write(dir.path().join("config/vs.yaml"), vs("a")).unwrap();
    let mut child = sluice()
        .current_dir(dir.path())
        .args([
            "run",
            "--no-gateway",
            "--admin",
            &format!("127.0.0.1:{admin}"),
            "config",
        ])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_listening(admin, "admin never came up");
    let version = || {
        http_get(admin, "localhost", "/metrics")
            .lines()
            .find_map(|l| l.strip_prefix("sluice_config_version "))
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    assert_eq!(version(), "1");
    // Edited again each second until seen: the watch may be set up just after the admin port.
    for edit in 0..20 {
        std::fs::write(dir.path().join("config/vs.yaml"), vs(&format!("b{edit}"))).unwrap();
        for _ in 0..20 {
            std::thread::sleep(Duration::from_millis(50));
            if version() != "1" {
                break;
            }
        }
        if version() != "1" {
            break;
        }
    }
    let reloaded = version();
    let _ = child.kill();
    let _ = child.wait();
    assert_ne!(
        reloaded, "1",
        "the edit under a relative path was not picked up"
    );
}

/// Mesh mTLS between two `sluice run` processes whose workload certificates come from one CA
/// made by `sluice ca init`: the client reaches the STRICT server with automatic mTLS and its
/// identity arrives in `x-forwarded-client-cert`; a plaintext client is refused.
#[test]
fn two_proxies_speak_mesh_mtls_with_certificates_from_sluice_ca() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca");
    let init = sluice().arg("ca").arg("init").arg(&ca).output().unwrap();
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );

    let (app, inbound, service, admin_a, admin_b) = (
        free_port(),
        free_port(),
        free_port(),
        free_port(),
        free_port(),
    );
    let mut backend = sluice()
        .args([
            "backend",
            "--listen",
            &format!("127.0.0.1:{app}"),
            "--name",
            "httpbin",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_listening(app, "backend did not start");

    let server_dir = dir.path().join("server");
    std::fs::create_dir(&server_dir).unwrap();
    std::fs::write(
        server_dir.join("httpbin.yaml"),
        format!("apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata:\n  name: httpbin\n  namespace: foo\nspec:\n  ingress:\n  - port:\n      number: {inbound}\n      protocol: HTTP\n      name: http\n    defaultEndpoint: 127.0.0.1:{app}\n---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata:\n  name: default\n  namespace: foo\nspec:\n  mtls:\n    mode: STRICT\n"),
    )
    .unwrap();
    let client_dir = dir.path().join("client");
    std::fs::create_dir(&client_dir).unwrap();
    std::fs::write(
        client_dir.join("httpbin.yaml"),
        format!("apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata:\n  name: httpbin\n  namespace: foo\nspec:\n  hosts: [httpbin.foo.svc.cluster.local]\n  location: MESH_INTERNAL\n  ports:\n  - number: {service}\n    name: http\n    protocol: HTTP\n  resolution: STATIC\n  endpoints:\n  - address: 127.0.0.1\n    ports:\n      http: {inbound}\n    serviceAccount: httpbin\n    labels:\n      security.istio.io/tlsMode: istio\n"),
    )
    .unwrap();
    let run = |config: &std::path::Path, sa: &str, admin: u16| {
        sluice()
            .arg("run")
            .arg(config)
            .arg("--ca")
            .arg(&ca)
            .args([
                "--namespace",
                "foo",
                "--service-account",
                sa,
                "--no-gateway",
            ])
            .args([
                "--gateway-address",
                "127.0.0.1",
                "--admin",
                &format!("127.0.0.1:{admin}"),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut server = run(&server_dir, "httpbin", admin_a);
    let mut client = run(&client_dir, "sleep", admin_b);
    wait_listening(inbound, "server inbound listener did not start");
    wait_listening(service, "client mesh listener did not start");

    let answer = http_get(service, "httpbin.foo.svc.cluster.local", "/headers");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer.contains("URI=spiffe://cluster.local/ns/foo/sa/sleep"),
        "{answer}"
    );
    assert!(
        answer.contains("By=spiffe://cluster.local/ns/foo/sa/httpbin"),
        "{answer}"
    );
    // Plaintext straight to the STRICT port: closed without an answer (curl's 000).
    let mut s = std::net::TcpStream::connect(("127.0.0.1", inbound)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    use std::io::Write;
    let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: httpbin\r\n\r\n");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    assert!(out.is_empty(), "{}", String::from_utf8_lossy(&out));

    for child in [&mut server, &mut client] {
        signal(child.id(), "-TERM");
        wait_exit(child, Duration::from_secs(15));
    }
    let _ = backend.kill();
    let _ = backend.wait();
}
