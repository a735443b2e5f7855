//! The sidecar's interception listeners in real network namespaces: `sluice iptables` redirects a
//! pod's traffic, the proxy (running as UID 1337, which the rules exempt) routes an app's call to
//! a service VIP 90/10 between two backends in another namespace, passes unknown destinations
//! through (and so does a `PASSTHROUGH` load balancer), hands inbound connections to the app on loopback with
//! `istio_requests_total{reporter="destination"}` counted, and routes a connection to a TCP
//! service's VIP by its `tcp` rules (Istio's tcp-echo) and TLS by its ClientHello's SNI (`tls`
//! rules, without terminating it).
//!
//! Needs root, `ip`, `iptables`, `setpriv` and `bash`; without them it prints `skipped: ...` and
//! passes, unless `SLUICE_REQUIRE_NETNS=1`, where that is a failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod netns_env;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use netns_env::{missing_prerequisite, ns_get, wait_for, Namespaces, Processes};

const SLUICE: &str = env!("CARGO_BIN_EXE_sluice");
const POD_IP: &str = "10.211.0.1";
const V1_IP: &str = "10.211.0.2";
const V2_IP: &str = "10.211.0.3";
const VIP: &str = "10.96.0.10";
const TCP_VIP: &str = "10.96.0.11";
const TCP_PORT: u16 = 9000;
const ECHO_PORT: u16 = 9001;
const BACKEND_PORT: u16 = 9080;
const APP_PORT: u16 = 8080;
const HTTPS_PORT: u16 = 8443;
const SECURE_HOST: &str = "secure.example.com";
const NONE_HOST: &str = "anywhere.example.com";
const PASSTHROUGH_HOST: &str = "pinned.example.com";
const WAIT: Duration = Duration::from_secs(20);

fn config() -> String {
    format!(
        r#"apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: reviews, namespace: default}}
spec:
  hosts: [reviews.default.svc.cluster.local]
  addresses: [{VIP}]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  endpoints:
  - {{address: {V1_IP}, ports: {{http: {BACKEND_PORT}}}, labels: {{version: v1}}}}
  - {{address: {V2_IP}, ports: {{http: {BACKEND_PORT}}}, labels: {{version: v2}}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: reviews, namespace: default}}
spec:
  host: reviews
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews, namespace: default}}
spec:
  hosts: [reviews]
  http:
  - route:
    - {{destination: {{host: reviews, subset: v1}}, weight: 90}}
    - {{destination: {{host: reviews, subset: v2}}, weight: 10}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: tcp-echo, namespace: default}}
spec:
  hosts: [tcp-echo.default.svc.cluster.local]
  addresses: [{TCP_VIP}]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: {TCP_PORT}, name: tcp, protocol: TCP}}]
  endpoints:
  - {{address: {V1_IP}, ports: {{tcp: {ECHO_PORT}}}, labels: {{version: v1}}}}
  - {{address: {V2_IP}, ports: {{tcp: {ECHO_PORT}}}, labels: {{version: v2}}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: tcp-echo, namespace: default}}
spec:
  host: tcp-echo
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: tcp-echo, namespace: default}}
spec:
  hosts: [tcp-echo]
  tcp:
  - route:
    - {{destination: {{host: tcp-echo, port: {{number: {TCP_PORT}}}, subset: v2}}}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: secure, namespace: default}}
spec:
  hosts: [{SECURE_HOST}]
  location: MESH_EXTERNAL
  resolution: STATIC
  ports: [{{number: 443, name: tls, protocol: TLS}}]
  endpoints:
  - {{address: {V2_IP}, ports: {{tls: {HTTPS_PORT}}}}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: secure, namespace: default}}
spec:
  hosts: [{SECURE_HOST}]
  tls:
  - match:
    - port: 443
      sniHosts: [{SECURE_HOST}]
    route:
    - destination:
        host: {SECURE_HOST}
        port: {{number: 443}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: anywhere, namespace: default}}
spec:
  hosts: [{NONE_HOST}]
  location: MESH_EXTERNAL
  resolution: NONE
  ports: [{{number: {BACKEND_PORT}, name: http, protocol: HTTP}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: pinned, namespace: default}}
spec:
  hosts: [{PASSTHROUGH_HOST}]
  location: MESH_EXTERNAL
  resolution: STATIC
  ports: [{{number: {BACKEND_PORT}, name: http, protocol: HTTP}}]
  endpoints:
  - {{address: {V1_IP}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: pinned, namespace: default}}
spec:
  host: {PASSTHROUGH_HOST}
  trafficPolicy:
    loadBalancer: {{simple: PASSTHROUGH}}
"#
    )
}

/// `sluice traffic --json` from inside `ns`: (key → count, statuses).
fn traffic(
    env: &Namespaces,
    ns: &str,
    url: &str,
    n: usize,
) -> (Vec<(String, u64)>, serde_json::Value) {
    traffic_with(env, ns, url, n, &[])
}

/// [`traffic`] with extra `sluice traffic` arguments (`-H "Host: …"`).
fn traffic_with(
    env: &Namespaces,
    ns: &str,
    url: &str,
    n: usize,
    extra: &[&str],
) -> (Vec<(String, u64)>, serde_json::Value) {
    let count = n.to_string();
    let mut args = vec![
        "traffic",
        url,
        "-n",
        &count,
        "--by",
        "header:x-version",
        "--json",
        "--timeout",
        "5s",
    ];
    args.extend_from_slice(extra);
    let out = env.exec(ns, SLUICE, &args).unwrap();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let mut dist: Vec<(String, u64)> = v["distribution"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["key"].as_str().unwrap_or("").to_string(),
                d["count"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    dist.sort();
    (dist, v["statuses"].clone())
}

/// The value of the first sample of `metric` whose labels contain every one of `labels`.
fn sample(text: &str, metric: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(metric) && labels.iter().all(|m| l.contains(m)))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

#[test]
fn sidecar_interception_in_network_namespaces() {
    if let Some(why) = missing_prerequisite() {
        assert!(
            std::env::var("SLUICE_REQUIRE_NETNS").as_deref() != Ok("1"),
            "SLUICE_REQUIRE_NETNS=1 but {why}"
        );
        println!("skipped: {why}");
        return;
    }
    let id = std::process::id();
    let (pod, peer) = (format!("slpod{id}"), format!("slpeer{id}"));
    let env = Namespaces::create(&[&pod, &peer]).unwrap();
    env.link(
        (&pod, &format!("slp{id}"), &format!("{POD_IP}/24")),
        (
            &peer,
            &format!("slq{id}"),
            &[&format!("{V1_IP}/24"), &format!("{V2_IP}/24")],
        ),
    )
    .unwrap();
    // The VIP needs a route to be dialled at all; the redirect happens before it is used.
    env.exec(&pod, "ip", &["route", "add", "default", "via", V1_IP])
        .unwrap();
    env.exec(&pod, SLUICE, &["iptables"]).unwrap();

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("reviews.yaml"), config()).unwrap();
    // The proxy runs as UID 1337 and must read the config.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(
        dir.path().join("reviews.yaml"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let logs = tempfile::tempdir().unwrap();
    let log = |name: &str| logs.path().join(format!("{name}.log"));

    let mut procs = Processes::default();
    for (ip, version, prefix) in [(V1_IP, "v1", "one"), (V2_IP, "v2", "two")] {
        let echo_listen = format!("{ip}:{ECHO_PORT}");
        procs
            .spawn(
                &format!("echo-{version}"),
                &peer,
                &[
                    SLUICE,
                    "backend",
                    "--listen",
                    &echo_listen,
                    "--tcp-echo",
                    prefix,
                ],
                &log(&format!("echo-{version}")),
            )
            .unwrap();
        let listen = format!("{ip}:{BACKEND_PORT}");
        procs
            .spawn(
                version,
                &peer,
                &[
                    SLUICE,
                    "backend",
                    "--listen",
                    &listen,
                    "--name",
                    "reviews",
                    "--version",
                    version,
                ],
                &log(version),
            )
            .unwrap();
    }
    // An HTTPS backend for the `tls` rule, with a certificate from a CA the app trusts.
    let pki = tempfile::tempdir().unwrap();
    let make_certs = format!(
        "cd {d} && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=ca -keyout ca.key -out ca.crt 2>/dev/null && openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN={SECURE_HOST} -keyout s.key -out s.csr 2>/dev/null && openssl x509 -req -in s.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile <(printf 'subjectAltName=DNS:{SECURE_HOST}') -out s.crt 2>/dev/null",
        d = pki.path().display()
    );
    let made = std::process::Command::new("bash")
        .args(["-c", &make_certs])
        .status()
        .unwrap();
    assert!(
        made.success(),
        "openssl could not make the test certificates"
    );
    let (crt, key) = (pki.path().join("s.crt"), pki.path().join("s.key"));
    let https_listen = format!("{V2_IP}:{HTTPS_PORT}");
    procs
        .spawn(
            "secure",
            &peer,
            &[
                SLUICE,
                "backend",
                "--listen",
                &https_listen,
                "--name",
                "secure",
                "--version",
                "v1",
                "--tls-cert",
                crt.to_str().unwrap(),
                "--tls-key",
                key.to_str().unwrap(),
            ],
            &log("secure"),
        )
        .unwrap();
    // The app listens on loopback only: reaching it from outside takes the inbound listener.
    let app_listen = format!("127.0.0.1:{APP_PORT}");
    procs
        .spawn(
            "app",
            &pod,
            &[
                SLUICE,
                "backend",
                "--listen",
                &app_listen,
                "--name",
                "app",
                "--version",
                "v9",
            ],
            &log("app"),
        )
        .unwrap();
    let config_dir = dir.path().to_str().unwrap();
    procs
        .spawn(
            "proxy",
            &pod,
            &[
                "setpriv",
                "--reuid",
                "1337",
                "--regid",
                "1337",
                "--clear-groups",
                SLUICE,
                "run",
                config_dir,
                "--no-watch",
                "--no-gateway",
                "--outbound-port",
                "15001",
                "--inbound-port",
                "15006",
                "--labels",
                "app=ratings,version=v1",
                "--admin",
                "127.0.0.1:15000",
            ],
            &log("proxy"),
        )
        .unwrap();

    let ready = wait_for(WAIT, || {
        procs.check_running().ok()?;
        ns_get(&pod, "127.0.0.1", 15000, "/ready", Duration::from_secs(2))
            .filter(|r| r.starts_with("HTTP/1.1 200") || r.starts_with("HTTP/1.0 200"))?;
        for ip in [V1_IP, V2_IP] {
            ns_get(&peer, ip, BACKEND_PORT, "/", Duration::from_secs(2))?;
        }
        ns_get(&pod, "127.0.0.1", APP_PORT, "/", Duration::from_secs(2))
    });
    if ready.is_none() {
        let proxy_log = std::fs::read_to_string(log("proxy")).unwrap_or_default();
        panic!("proxy, backends or app not ready within {WAIT:?}; proxy log:\n{proxy_log}");
    }

    // Outbound: the app calls the VIP; the proxy routes it by the VirtualService.
    let (split, statuses) = traffic(&env, &pod, &format!("http://{VIP}/"), 100);
    println!("outbound {VIP}:80 split over 100 requests: {split:?}, statuses {statuses}");
    assert_eq!(split, [("v1".to_string(), 90), ("v2".to_string(), 10)]);

    // Outbound to an address no service has: passed through unchanged (ALLOW_ANY).
    let (direct, _) = traffic(&env, &pod, &format!("http://{V2_IP}:{BACKEND_PORT}/"), 5);
    println!("outbound passthrough to {V2_IP}:{BACKEND_PORT}: {direct:?}");
    assert_eq!(direct, [("v2".to_string(), 5)]);

    // A `resolution: NONE` service without endpoints: Istio's ORIGINAL_DST cluster, each
    // request goes where the app was going (both backends, by the address it dialled).
    let host = format!("Host: {NONE_HOST}");
    for (ip, version) in [(V1_IP, "v1"), (V2_IP, "v2")] {
        let (seen, statuses) = traffic_with(
            &env,
            &pod,
            &format!("http://{ip}:{BACKEND_PORT}/"),
            4,
            &["-H", &host],
        );
        println!("outbound {NONE_HOST} (resolution NONE) via {ip}: {seen:?} {statuses}");
        assert_eq!(seen, [(version.to_string(), 4)]);
    }

    // `loadBalancer.simple: PASSTHROUGH` (the ORIGINAL_DST load balancer): the service's only
    // endpoint is v1, yet each request goes where the app was going.
    let host = format!("Host: {PASSTHROUGH_HOST}");
    for (ip, version) in [(V1_IP, "v1"), (V2_IP, "v2")] {
        let (seen, statuses) = traffic_with(
            &env,
            &pod,
            &format!("http://{ip}:{BACKEND_PORT}/"),
            4,
            &["-H", &host],
        );
        println!("outbound {PASSTHROUGH_HOST} (PASSTHROUGH) via {ip}: {seen:?} {statuses}");
        assert_eq!(seen, [(version.to_string(), 4)]);
    }

    // Inbound: a caller in the other namespace reaches the app through the inbound listener.
    let (inbound, _) = traffic(&env, &peer, &format!("http://{POD_IP}:{APP_PORT}/"), 7);
    println!("inbound {POD_IP}:{APP_PORT} → app on loopback: {inbound:?}");
    assert_eq!(inbound, [("v9".to_string(), 7)]);

    let metrics = wait_for(Duration::from_secs(5), || {
        let text = ns_get(
            &pod,
            "127.0.0.1",
            15000,
            "/stats/prometheus",
            Duration::from_secs(3),
        )?;
        let inbound = sample(
            &text,
            "istio_requests_total",
            &[r#"reporter="destination""#, r#"response_code="200""#],
        )?;
        (inbound >= 7.0).then_some(text)
    })
    .expect("istio_requests_total{reporter=\"destination\"} did not reach 7");
    let destination = sample(
        &metrics,
        "istio_requests_total",
        &[
            r#"reporter="destination""#,
            r#"destination_workload="ratings""#,
            r#"destination_version="v1""#,
        ],
    );
    println!("istio_requests_total{{reporter=\"destination\"}} = {destination:?}");
    assert_eq!(destination, Some(7.0));
    let v2_source = sample(
        &metrics,
        "istio_requests_total",
        &[
            r#"reporter="source""#,
            r#"destination_service="reviews.default.svc.cluster.local""#,
            r#"destination_version="v2""#,
        ],
    );
    assert_eq!(v2_source, Some(10.0));

    // Outbound TCP to a service VIP: the `tcp` rule sends every connection to v2 (the echo
    // server answers `two <line>`), though the app dialled the VIP.
    let script = format!(
        "exec 3<>/dev/tcp/{TCP_VIP}/{TCP_PORT} && echo hello >&3 && read -t 5 line <&3 && echo \"$line\""
    );
    for _ in 0..3 {
        let reply = env.exec(&pod, "bash", &["-c", &script]).unwrap();
        println!("outbound tcp {TCP_VIP}:{TCP_PORT}: {reply:?}");
        assert_eq!(reply.trim(), "two hello");
    }
    let tcp_metrics = ns_get(
        &pod,
        "127.0.0.1",
        15000,
        "/stats/prometheus",
        Duration::from_secs(3),
    )
    .unwrap_or_default();
    let opened = sample(
        &tcp_metrics,
        "istio_tcp_connections_opened_total",
        &[
            r#"destination_service="tcp-echo.default.svc.cluster.local""#,
            r#"destination_version="v2""#,
        ],
    );
    assert_eq!(opened, Some(3.0), "{tcp_metrics}");

    // Outbound TLS to port 443 of an address where nothing listens: the sidecar reads the
    // ClientHello's SNI and its `tls` rule sends the connection, untouched, to the HTTPS
    // backend; the app sees the backend's own certificate (verified against its CA).
    let ca = pki.path().join("ca.crt");
    let resolve = format!("{SECURE_HOST}:443:{V1_IP}");
    let url = format!("https://{SECURE_HOST}/");
    let curl = || {
        env.exec(
            &pod,
            "curl",
            &[
                "-sS",
                "--max-time",
                "5",
                "--cacert",
                ca.to_str().unwrap(),
                "--resolve",
                &resolve,
                &url,
            ],
        )
    };
    // The HTTPS backend may still be starting.
    let first = wait_for(WAIT, || curl().ok());
    for body in [first, curl().ok()] {
        println!("outbound tls {SECURE_HOST} via {V1_IP}:443: {body:?}");
        assert!(body.is_some_and(|b| b.starts_with("secure v1")));
    }
    // Another SNI has no rule: it goes where it was going (nothing listens on 443 there).
    let other = env.exec(
        &pod,
        "curl",
        &[
            "-sS",
            "-k",
            "--max-time",
            "5",
            "--resolve",
            &format!("other.example.com:443:{V1_IP}"),
            "https://other.example.com/",
        ],
    );
    assert!(other.is_err(), "{other:?}");

    // Connecting to the outbound port directly is not a redirect: closed, not relayed to itself.
    assert_eq!(
        ns_get(&pod, "127.0.0.1", 15001, "/", Duration::from_secs(3)),
        None
    );
    procs.check_running().unwrap();
}
