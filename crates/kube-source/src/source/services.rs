//! Kubernetes Services as registry entries: each Service becomes a `ServiceEntry`-equivalent
//! object (host `name.ns.svc.cluster.local`, ClusterIPs, ports with Istio's protocol rules,
//! ready endpoints from EndpointSlices carrying their Pod's labels and service account), so the
//! compiler needs no Kubernetes knowledge.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Service, ServicePort};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{json, Map, Value};
use sluice_config::host::DOMAIN_SUFFIX;

use super::pods::PodInfo;

/// Prefix of the names of synthesized ServiceEntries (`svc:reviews`); `:` cannot appear in a
/// Kubernetes name, so they never collide with real ServiceEntries.
pub const SYNTHESIZED_PREFIX: &str = "svc:";

/// Istio's annotation on a Service naming where its generated entry is visible
/// (comma-separated `.`, `*`, `~` or namespaces), as a ServiceEntry's `exportTo`.
pub const EXPORT_TO_ANNOTATION: &str = "networking.istio.io/exportTo";

/// Label an EndpointSlice uses to name its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Istio's protocol for a Service port: `appProtocol` first, else the port name's prefix
/// (`http`, `http-web`, `http2`, `grpc`, `grpc-web`, `https`, `tls`, `tcp`, `mongo`, `redis`,
/// `mysql`); `None` means undeclared (sniffed).
pub fn port_protocol(app_protocol: Option<&str>, name: &str) -> Option<&'static str> {
    let by_name = |s: &str| -> Option<&'static str> {
        let lower = s.to_ascii_lowercase();
        if lower == "grpc-web" || lower.starts_with("grpc-web-") {
            return Some("GRPC-WEB");
        }
        Some(match lower.split('-').next().unwrap_or("") {
            "http" => "HTTP",
            "http2" => "HTTP2",
            "grpc" => "GRPC",
            "https" => "HTTPS",
            "tls" => "TLS",
            "tcp" => "TCP",
            "mongo" => "MONGO",
            "redis" => "REDIS",
            "mysql" => "MYSQL",
            _ => return None,
        })
    };
    if let Some(app) = app_protocol.filter(|a| !a.is_empty()) {
        let known = match app.to_ascii_lowercase().as_str() {
            "kubernetes.io/h2c" => Some("HTTP2"),
            "kubernetes.io/ws" => Some("HTTP"),
            "kubernetes.io/wss" => Some("HTTPS"),
            lower => by_name(lower).filter(|_| !lower.contains('-') || lower == "grpc-web"),
        };
        if known.is_some() {
            return known;
        }
    }
    by_name(name)
}

/// The endpoint port name used for a Service port (Kubernetes allows one unnamed port).
fn port_name(p: &ServicePort) -> String {
    p.name
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| format!("port-{}", p.port))
}

/// The ServiceEntry object (as the API server would serve it) for a Service, or `None` when it
/// has no TCP port. `pod(name)` gives what is known of a Pod of the Service's namespace,
/// `node(name)` the locality of a Node.
pub fn synthesize<'a>(
    svc: &Service,
    slices: &[&EndpointSlice],
    pod: &dyn Fn(&str) -> Option<&'a PodInfo>,
    node: &dyn Fn(&str) -> Option<&'a str>,
) -> Option<Value> {
    let name = svc.metadata.name.clone()?;
    let ns = svc
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let spec = svc.spec.as_ref()?;
    let tcp: Vec<&ServicePort> = spec
        .ports
        .iter()
        .flatten()
        .filter(|p| p.protocol.as_deref().unwrap_or("TCP") == "TCP")
        .collect();
    if tcp.is_empty() {
        return None;
    }
    let ports: Vec<Value> = tcp
        .iter()
        .map(|p| {
            let mut port = Map::new();
            port.insert("number".into(), json!(p.port));
            port.insert("name".into(), json!(port_name(p)));
            let declared = p.name.as_deref().unwrap_or("");
            if let Some(proto) = port_protocol(p.app_protocol.as_deref(), declared) {
                port.insert("protocol".into(), json!(proto));
            }
            if let Some(IntOrString::Int(t)) = &p.target_port {
                port.insert("targetPort".into(), json!(t));
            }
            Value::Object(port)
        })
        .collect();
    let mut se = Map::new();
    se.insert(
        "hosts".into(),
        json!([format!("{name}.{ns}.svc.{DOMAIN_SUFFIX}")]),
    );
    if spec.type_.as_deref() == Some("ExternalName") {
        let target = spec.external_name.clone().unwrap_or_default();
        se.insert("ports".into(), Value::Array(ports));
        se.insert("location".into(), json!("MESH_EXTERNAL"));
        se.insert("resolution".into(), json!("DNS"));
        se.insert("endpoints".into(), json!([{ "address": target }]));
    } else {
        let addresses: BTreeSet<&str> = spec
            .cluster_ips
            .iter()
            .flatten()
            .chain(spec.cluster_ip.iter())
            .map(String::as_str)
            .filter(|ip| !ip.is_empty() && *ip != "None")
            .collect();
        if !addresses.is_empty() {
            se.insert("addresses".into(), json!(addresses));
        }
        se.insert("ports".into(), Value::Array(ports));
        se.insert("location".into(), json!("MESH_INTERNAL"));
        se.insert("resolution".into(), json!("STATIC"));
        let all = spec.publish_not_ready_addresses.unwrap_or(false);
        se.insert(
            "endpoints".into(),
            Value::Array(endpoints(&tcp, slices, all, pod, node)),
        );
    }
    if let Some(export_to) = export_to(svc) {
        se.insert("exportTo".into(), json!(export_to));
    }
    let mut meta = Map::new();
    meta.insert("name".into(), json!(format!("{SYNTHESIZED_PREFIX}{name}")));
    meta.insert("namespace".into(), json!(ns));
    if let Some(labels) = &svc.metadata.labels {
        meta.insert("labels".into(), json!(labels));
    }
    if let Some(t) = &svc.metadata.creation_timestamp {
        meta.insert("creationTimestamp".into(), json!(t));
    }
    if let Some(rv) = &svc.metadata.resource_version {
        meta.insert("resourceVersion".into(), json!(rv));
    }
    Some(json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "ServiceEntry",
        "metadata": meta,
        "spec": se,
    }))
}

/// The Service's `networking.istio.io/exportTo` annotation as a list (`None` when absent or
/// empty: visible everywhere, like a ServiceEntry without `exportTo`).
fn export_to(svc: &Service) -> Option<Vec<String>> {
    let raw = svc
        .metadata
        .annotations
        .as_ref()?
        .get(EXPORT_TO_ANNOTATION)?;
    let list: Vec<String> = raw
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    (!list.is_empty()).then_some(list)
}

/// Ready endpoints (all of them with `publishNotReadyAddresses`), one per address and port set
/// (a pod listed twice during a slice update counts once), sorted. An endpoint backed by a known
/// Pod carries its labels (so `security.istio.io/tlsMode` reaches auto-mTLS) and its service
/// account, as Istio's Kubernetes registry does.
fn endpoints<'a>(
    ports: &[&ServicePort],
    slices: &[&EndpointSlice],
    include_not_ready: bool,
    pod: &dyn Fn(&str) -> Option<&'a PodInfo>,
    node: &dyn Fn(&str) -> Option<&'a str>,
) -> Vec<Value> {
    let mut out: BTreeMap<(String, String), Value> = BTreeMap::new();
    for slice in slices {
        if !matches!(slice.address_type.as_str(), "IPv4" | "IPv6") {
            continue;
        }
        let slice_ports: BTreeMap<&str, i32> = slice
            .ports
            .iter()
            .flatten()
            .filter_map(|p| Some((p.name.as_deref().unwrap_or(""), p.port?)))
            .collect();
        let port_map: Map<String, Value> = ports
            .iter()
            .filter_map(|p| {
                let n = slice_ports.get(p.name.as_deref().unwrap_or(""))?;
                Some((port_name(p), json!(n)))
            })
            .collect();
        for ep in &slice.endpoints {
            let ready = ep.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
            if !(ready || include_not_ready) {
                continue;
            }
            let Some(address) = ep.addresses.first() else {
                continue;
            };
            let key = (address.clone(), Value::Object(port_map.clone()).to_string());
            if out.contains_key(&key) {
                continue;
            }
            let mut e = Map::new();
            e.insert("address".into(), json!(address));
            if !port_map.is_empty() {
                e.insert("ports".into(), Value::Object(port_map.clone()));
            }
            let info = ep
                .target_ref
                .as_ref()
                .filter(|r| r.kind.as_deref() == Some("Pod"))
                .and_then(|r| r.name.as_deref())
                .and_then(pod);
            if let Some(info) = info {
                if !info.labels.is_empty() {
                    e.insert("labels".into(), json!(info.labels));
                }
                e.insert("serviceAccount".into(), json!(info.service_account));
            }
            // Istio's order: the `istio-locality` Pod label (`region.zone.subzone`), then the
            // topology labels of the endpoint's Node, then the EndpointSlice's bare zone.
            let labelled = info
                .and_then(|i| i.labels.get("istio-locality"))
                .map(|l| l.replace('.', "/"));
            let noded = || ep.node_name.as_deref().and_then(node).map(str::to_string);
            let zoned = || ep.zone.as_deref().map(|z| format!("/{z}"));
            let locality = labelled
                .filter(|l| !l.is_empty())
                .or_else(noded)
                .or_else(zoned);
            if let Some(locality) = locality.filter(|l| !l.is_empty()) {
                e.insert("locality".into(), json!(locality));
            }
            // Istio's endpoint network: the Pod's `topology.istio.io/network` label.
            if let Some(network) = info
                .and_then(|i| i.labels.get("topology.istio.io/network"))
                .filter(|n| !n.is_empty())
            {
                e.insert("network".into(), json!(network));
            }
            out.insert(key, Value::Object(e));
        }
    }
    out.into_values().collect()
}

/// The Pods an EndpointSlice's endpoints point at.
pub fn slice_pods(slice: &EndpointSlice) -> impl Iterator<Item = &str> {
    slice
        .endpoints
        .iter()
        .filter_map(|e| e.target_ref.as_ref())
        .filter(|r| r.kind.as_deref() == Some("Pod"))
        .filter_map(|r| r.name.as_deref())
}

/// The Service an EndpointSlice belongs to.
pub fn slice_service(slice: &EndpointSlice) -> Option<&str> {
    slice
        .metadata
        .labels
        .as_ref()?
        .get(SERVICE_NAME_LABEL)
        .map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_carry_the_pod_locality_label_the_node_locality_or_the_slice_zone() {
        let slice: EndpointSlice = serde_json::from_value(json!({
            "metadata": {"name": "reviews-abc"},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 9080}],
            "endpoints": [
                {"addresses": ["10.0.0.1"], "zone": "zone-a",
                 "targetRef": {"kind": "Pod", "name": "labelled"}},
                {"addresses": ["10.0.0.2"], "zone": "zone-b"},
                {"addresses": ["10.0.0.3"]},
                {"addresses": ["10.0.0.4"], "zone": "zone-c", "nodeName": "node-1"},
                {"addresses": ["10.0.0.5"], "zone": "zone-d", "nodeName": "unlabelled"},
            ],
        }))
        .unwrap_or_default();
        let port: ServicePort =
            serde_json::from_value(json!({"name": "http", "port": 9080})).unwrap_or_default();
        let info = PodInfo {
            labels: BTreeMap::from([
                ("istio-locality".into(), "region1.zone1".into()),
                ("topology.istio.io/network".into(), "net2".into()),
            ]),
            service_account: "default".into(),
        };
        let pod = |name: &str| (name == "labelled").then_some(&info);
        let node = |name: &str| (name == "node-1").then_some("us-east1/us-east1-c/rack7");
        let eps = endpoints(&[&port], &[&slice], false, &pod, &node);
        let localities: Vec<Option<&str>> = eps.iter().map(|e| e["locality"].as_str()).collect();
        assert_eq!(
            localities,
            [
                Some("region1/zone1"),
                Some("/zone-b"),
                None,
                Some("us-east1/us-east1-c/rack7"),
                Some("/zone-d"),
            ]
        );
        let networks: Vec<Option<&str>> = eps.iter().map(|e| e["network"].as_str()).collect();
        assert_eq!(networks, [Some("net2"), None, None, None, None]);
    }

    #[test]
    fn export_to_annotation_becomes_the_entry_export_to() {
        let svc = |annotations: Value| -> Service {
            serde_json::from_value(json!({
                "metadata": {"name": "ratings", "namespace": "bookinfo",
                    "annotations": annotations},
                "spec": {"clusterIP": "10.96.0.9", "ports": [{"name": "http", "port": 9080}]},
            }))
            .unwrap()
        };
        let pod = |_: &str| None;
        let node = |_: &str| None;
        let se = synthesize(
            &svc(json!({EXPORT_TO_ANNOTATION: ". , istio-system,*"})),
            &[],
            &pod,
            &node,
        )
        .unwrap();
        assert_eq!(se["spec"]["exportTo"], json!([".", "istio-system", "*"]));
        let se = synthesize(&svc(json!({"other": "x"})), &[], &pod, &node).unwrap();
        assert!(se["spec"].get("exportTo").is_none());
        let se = synthesize(&svc(json!({EXPORT_TO_ANNOTATION: " "})), &[], &pod, &node).unwrap();
        assert!(se["spec"].get("exportTo").is_none());
    }

    #[test]
    fn protocols_follow_istio() {
        assert_eq!(port_protocol(None, "http"), Some("HTTP"));
        assert_eq!(port_protocol(None, "http-web"), Some("HTTP"));
        assert_eq!(port_protocol(None, "http2"), Some("HTTP2"));
        assert_eq!(port_protocol(None, "grpc-api"), Some("GRPC"));
        assert_eq!(port_protocol(None, "grpc-web"), Some("GRPC-WEB"));
        assert_eq!(port_protocol(None, "tcp-db"), Some("TCP"));
        assert_eq!(port_protocol(None, "redis"), Some("REDIS"));
        assert_eq!(port_protocol(None, "web"), None);
        assert_eq!(port_protocol(None, "httpfoo"), None);
        assert_eq!(
            port_protocol(Some("kubernetes.io/h2c"), "web"),
            Some("HTTP2")
        );
        assert_eq!(port_protocol(Some("grpc"), "http"), Some("GRPC"));
        assert_eq!(port_protocol(Some("HTTP"), "tcp"), Some("HTTP"));
        assert_eq!(port_protocol(Some("https"), ""), Some("HTTPS"));
        assert_eq!(
            port_protocol(Some("example.com/custom"), "http"),
            Some("HTTP")
        );
    }
}
