//! `resolution: DNS` and `DNS_ROUND_ROBIN` against a DNS server inside the test (passed as
//! `--dns-server`): backends on 127.0.0.2, 127.0.0.3, … share one port, and the answers name
//! them, then change.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use sluice_test_support::dns::{Answer, DnsServer};
use sluice_test_support::*;

fn ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

/// One backend per address `127.0.0.<last>`, all on one port (also free on 127.0.0.1, where
/// the proxy's mesh listener takes it); the backend's version is its address.
async fn backends(lasts: &[u8]) -> (u16, Vec<BackendHandle>) {
    'port: for _ in 0..20 {
        let port = free_port();
        let mut started = Vec::new();
        for last in lasts {
            let mut args = BackendArgs::ephemeral("pool", &ip(*last).to_string());
            args.listen = SocketAddr::new(ip(*last), port).to_string();
            match Backend::start(args).await {
                Ok(b) => started.push(b),
                Err(_) => continue 'port,
            }
        }
        return (port, started);
    }
    panic!("no port free on every address");
}

/// One more backend at `127.0.0.<last>:port`.
async fn backend_at(last: u8, port: u16) -> BackendHandle {
    let mut args = BackendArgs::ephemeral("pool", &ip(last).to_string());
    args.listen = SocketAddr::new(ip(last), port).to_string();
    Backend::start(args).await.unwrap()
}

/// A ServiceEntry with `resolution` for `hosts` on `port`, with `endpoints` (YAML list) if any.
fn service_entry(hosts: &[&str], port: u16, resolution: &str, endpoints: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: pool}}\nspec:\n  hosts: [{}]\n  location: MESH_EXTERNAL\n  ports:\n  - {{number: {port}, name: http, protocol: HTTP}}\n  resolution: {resolution}\n{endpoints}",
        hosts.join(", ")
    )
}

/// Round robin, and a new upstream connection per request (so LOGICAL_DNS picks its address
/// for every request).
fn destination_rule(host: &str) -> String {
    format!("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: pool}}\nspec:\n  host: {host}\n  trafficPolicy:\n    loadBalancer: {{simple: ROUND_ROBIN}}\n    connectionPool:\n      http: {{maxRequestsPerConnection: 1}}\n")
}

async fn start(dns: &DnsServer, dir: &ConfigDir) -> ProxyHandle {
    let server = dns.addr();
    proxy(dir.path(), |o| {
        o.watch = false;
        o.dns = Some(sluice_dns::DnsSettings {
            servers: vec![server],
            refresh: Duration::from_secs(2),
        });
    })
    .await
}

/// The versions (backend addresses) that answered `n` requests for `host`.
async fn versions(port: u16, host: &str, n: usize) -> Vec<String> {
    let client = TestClient::new();
    let mut out = Vec::new();
    for _ in 0..n {
        let r = client
            .get(SocketAddr::from(([127, 0, 0, 1], port)), host, "/", &[])
            .await;
        out.push(if r.status == 200 {
            r.first_line()
                .split_whitespace()
                .nth(1)
                .unwrap_or("")
                .to_string()
        } else {
            format!("{} {}", r.status.as_u16(), r.body.trim())
        });
    }
    out
}

fn distinct(v: &[String]) -> BTreeSet<String> {
    v.iter().cloned().collect()
}

async fn cluster_addresses(p: &ProxyHandle, cluster: &str) -> BTreeSet<String> {
    let doc: serde_json::Value = serde_json::from_str(
        &TestClient::new()
            .admin(p.admin_addr, "/clusters")
            .await
            .body,
    )
    .unwrap();
    doc["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["name"] == cluster)
        .flat_map(|c| c["endpoints"].as_array().cloned().unwrap_or_default())
        .map(|e| {
            format!(
                "{} {}",
                e["address"].as_str().unwrap_or(""),
                e["hostname"].as_str().unwrap_or("")
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_dns_spreads_over_every_address_follows_changes_and_survives_failures() {
    let dns = DnsServer::start().await;
    dns.set("pool.dns.test", &[ip(2), ip(3)], 1);
    let (port, _backends) = backends(&[2, 3]).await;
    let dir = ConfigDir::new();
    dir.write(
        "se.yaml",
        &service_entry(
            &["svc.dns.test"],
            port,
            "DNS",
            "  endpoints:\n  - {address: pool.dns.test}\n",
        ),
    );
    dir.write("dr.yaml", &destination_rule("svc.dns.test"));
    let p = start(&dns, &dir).await;

    // The first answer was in before the config was published: no 503 at the start.
    let seen = versions(port, "svc.dns.test", 10).await;
    assert_eq!(
        distinct(&seen),
        BTreeSet::from(["127.0.0.2".to_string(), "127.0.0.3".to_string()]),
        "{seen:?}"
    );
    let cluster = format!("outbound|{port}||svc.dns.test");
    assert_eq!(
        cluster_addresses(&p, &cluster).await,
        BTreeSet::from([
            format!("127.0.0.2:{port} pool.dns.test"),
            format!("127.0.0.3:{port} pool.dns.test"),
        ])
    );

    // The answer changes: after its TTL (1 s) traffic follows.
    let _b4 = backend_at(4, port).await;
    dns.set("pool.dns.test", &[ip(4)], 1);
    assert_eventually(
        Duration::from_secs(15),
        "traffic moves to 127.0.0.4",
        || async {
            distinct(&versions(port, "svc.dns.test", 4).await)
                == BTreeSet::from(["127.0.0.4".into()])
        },
    )
    .await;

    // The server fails: the last addresses stay in use while the resolver keeps asking.
    dns.answer("pool.dns.test", Answer::ServFail);
    let asked = dns.queries("pool.dns.test");
    assert_eventually(
        Duration::from_secs(20),
        "the resolver asks again",
        || async { dns.queries("pool.dns.test") >= asked + 2 },
    )
    .await;
    let seen = versions(port, "svc.dns.test", 6).await;
    assert!(seen.iter().all(|v| v == "127.0.0.4"), "{seen:?}");
    assert_eq!(
        cluster_addresses(&p, &cluster).await,
        BTreeSet::from([format!("127.0.0.4:{port} pool.dns.test")])
    );

    // It recovers with new addresses.
    dns.set("pool.dns.test", &[ip(2), ip(4)], 1);
    assert_eventually(
        Duration::from_secs(20),
        "traffic spreads over .2 and .4",
        || async {
            distinct(&versions(port, "svc.dns.test", 6).await)
                == BTreeSet::from(["127.0.0.2".into(), "127.0.0.4".into()])
        },
    )
    .await;
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_round_robin_connects_to_the_first_address_of_the_latest_answer() {
    let dns = DnsServer::start().await;
    dns.set("pool.dns.test", &[ip(2), ip(3)], 1);
    let (port, _backends) = backends(&[2, 3]).await;
    let dir = ConfigDir::new();
    dir.write(
        "se.yaml",
        &service_entry(
            &["logical.dns.test"],
            port,
            "DNS_ROUND_ROBIN",
            "  endpoints:\n  - {address: pool.dns.test}\n",
        ),
    );
    dir.write("dr.yaml", &destination_rule("logical.dns.test"));
    let p = start(&dns, &dir).await;

    // One logical endpoint: every new connection goes to the first address, none to the second.
    let seen = versions(port, "logical.dns.test", 8).await;
    assert!(seen.iter().all(|v| v == "127.0.0.2"), "{seen:?}");
    let cluster = format!("outbound|{port}||logical.dns.test");
    assert_eq!(
        cluster_addresses(&p, &cluster).await,
        BTreeSet::from([format!("127.0.0.2:{port} pool.dns.test")])
    );

    // A new set of addresses: its first one takes the new connections (nothing listens on
    // 127.0.0.5, so a spread would show as failures).
    dns.set("pool.dns.test", &[ip(3), ip(5)], 1);
    assert_eventually(
        Duration::from_secs(15),
        "new connections go to .3",
        || async {
            versions(port, "logical.dns.test", 4)
                .await
                .iter()
                .all(|v| v == "127.0.0.3")
        },
    )
    .await;
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_host_of_a_dns_service_entry_without_endpoints_reaches_its_own_addresses() {
    let dns = DnsServer::start().await;
    dns.set("a.dns.test", &[ip(2)], 30);
    dns.set("b.dns.test", &[ip(3)], 30);
    let (port, _backends) = backends(&[2, 3]).await;
    let dir = ConfigDir::new();
    dir.write(
        "se.yaml",
        &service_entry(&["a.dns.test", "b.dns.test", "c.dns.test"], port, "DNS", ""),
    );
    let p = start(&dns, &dir).await;
    let a = versions(port, "a.dns.test", 4).await;
    assert!(a.iter().all(|v| v == "127.0.0.2"), "{a:?}");
    let b = versions(port, "b.dns.test", 4).await;
    assert!(b.iter().all(|v| v == "127.0.0.3"), "{b:?}");
    // A name with no address records has no endpoint: Envoy's `503 UH`.
    let c = versions(port, "c.dns.test", 1).await;
    assert_eq!(c, ["503 no healthy upstream"]);
    p.shutdown().await;
}

/// `resolution: DYNAMIC_DNS` (Istio's dynamic forward proxy): a wildcard host whose requests go
/// to the address their own host name resolves to, at request time, kept for the record's TTL;
/// a name that does not resolve is `503` (Envoy's `DF`).
#[tokio::test]
async fn dynamic_dns_resolves_each_request_host_and_follows_its_ttl() {
    let (port, _pool) = backends(&[2, 3]).await;
    let dns = DnsServer::start().await;
    dns.set("a.pool.example", &[ip(2)], 1);
    dns.set("b.pool.example", &[ip(3)], 300);
    let dir = ConfigDir::new();
    dir.write(
        "se.yaml",
        &service_entry(&["\"*.pool.example\""], port, "DYNAMIC_DNS", ""),
    );
    let server = dns.addr();
    let _p = proxy(dir.path(), |o| {
        o.watch = false;
        o.dns = Some(sluice_dns::DnsSettings {
            servers: vec![server],
            refresh: Duration::from_secs(30),
        });
    })
    .await;
    assert_eq!(
        distinct(&versions(port, "a.pool.example", 3).await),
        BTreeSet::from([ip(2).to_string()])
    );
    assert_eq!(
        distinct(&versions(port, "b.pool.example", 1).await),
        BTreeSet::from([ip(3).to_string()])
    );
    // Within the TTL the answer is reused: no new query for b.
    let asked = dns.queries("b.pool.example");
    assert_eq!(
        distinct(&versions(port, "b.pool.example", 5).await),
        BTreeSet::from([ip(3).to_string()])
    );
    assert_eq!(dns.queries("b.pool.example"), asked);
    // a's record lives 1 s: its new address is used once it expired.
    dns.set("a.pool.example", &[ip(3)], 1);
    assert_eventually(
        Duration::from_secs(10),
        "a.pool.example follows its new address",
        || async { versions(port, "a.pool.example", 1).await == [ip(3).to_string()] },
    )
    .await;
    // A name without records: Envoy's DNS resolution failure.
    let r = TestClient::new()
        .get(
            SocketAddr::from(([127, 0, 0, 1], port)),
            "c.pool.example",
            "/",
            &[],
        )
        .await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.body.trim(), "DNS resolution failure");
}

/// `resolution: DYNAMIC_DNS` on a TLS port (Envoy's `sni_dynamic_forward_proxy`): a gateway
/// passes TLS through by SNI to the wildcard service, and each connection goes to the address
/// its own server name resolves to when it arrives, on the service port; the client completes
/// its handshake with the backend there. A name that does not resolve closes the connection.
#[tokio::test]
async fn dynamic_dns_resolves_the_sni_of_each_tls_connection() {
    use sluice_test_support::pki::{TestCa, TlsClient};
    let dir = ConfigDir::new();
    let ca = TestCa::new("external root");
    let leaf = ca.issue(&["a.pool.example", "b.pool.example", "c.pool.example"]);
    let (cert, key) = leaf.write(dir.path(), "backend");
    let (port, _pool) = 'port: {
        for _ in 0..20 {
            let port = free_port();
            let mut started = Vec::new();
            for last in [2u8, 3] {
                let mut args = BackendArgs::ephemeral("pool", &ip(last).to_string());
                args.listen = SocketAddr::new(ip(last), port).to_string();
                args.tls_cert = Some(cert.clone());
                args.tls_key = Some(key.clone());
                match Backend::start(args).await {
                    Ok(b) => started.push(b),
                    Err(_) => continue,
                }
            }
            if started.len() == 2 {
                break 'port (port, started);
            }
        }
        panic!("no port free on both addresses");
    };
    let dns = DnsServer::start().await;
    dns.set("a.pool.example", &[ip(2)], 300);
    dns.set("b.pool.example", &[ip(3)], 300);
    let gateway_port = free_port();
    dir.write(
        "se.yaml",
        &format!("apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: pool}}\nspec:\n  hosts: [\"*.pool.example\"]\n  location: MESH_EXTERNAL\n  ports:\n  - {{number: {port}, name: tls, protocol: TLS}}\n  resolution: DYNAMIC_DNS\n"),
    );
    dir.write(
        "gateway.yaml",
        &format!("apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {{name: egress}}\nspec:\n  selector: {{istio: egressgateway}}\n  servers:\n  - port: {{number: {gateway_port}, name: tls, protocol: TLS}}\n    tls: {{mode: PASSTHROUGH}}\n    hosts: [\"*.pool.example\"]\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: pool}}\nspec:\n  hosts: [\"*.pool.example\"]\n  gateways: [egress]\n  tls:\n  - match:\n    - port: {gateway_port}\n      sniHosts: [\"*.pool.example\"]\n    route:\n    - destination:\n        host: \"*.pool.example\"\n        port: {{number: {port}}}\n"),
    );
    let server = dns.addr();
    let p = proxy(dir.path(), |o| {
        o.watch = false;
        o.proxy
            .labels
            .insert("istio".into(), "egressgateway".into());
        o.proxy.mesh_role = false;
        o.dns = Some(sluice_dns::DnsSettings {
            servers: vec![server],
            refresh: Duration::from_secs(30),
        });
    })
    .await;
    let gateway = SocketAddr::from(([127, 0, 0, 1], gateway_port));
    for (name, want) in [("a.pool.example", ip(2)), ("b.pool.example", ip(3))] {
        let r = TlsClient::new(ca.pem(), name)
            .get(gateway, "/")
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(r.status, 200, "{name}");
        assert_eq!(r.peer.as_ref(), Some(&leaf.der), "the backend's own cert");
        assert_eq!(
            r.body.split_whitespace().nth(1),
            Some(want.to_string().as_str()),
            "{name}: {}",
            r.body
        );
    }
    // A name without records: nothing to connect to.
    assert!(TlsClient::new(ca.pem(), "c.pool.example")
        .get(gateway, "/")
        .await
        .is_err());
    p.shutdown().await;
}
