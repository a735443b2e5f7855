//! The containers and volume added to a pod template, and the edit that adds them.

use sluice_config::compile::auto_mtls::TLS_MODE_LABEL;

use super::node::{Node, Scalar, Style};
use super::InjectOptions;

/// Name of the sidecar container.
pub const PROXY_CONTAINER: &str = "sluice-proxy";
/// Name of the init container that sets up interception.
pub const INIT_CONTAINER: &str = "sluice-init";
/// The mesh root's ConfigMap, in every namespace (Istio's name).
pub const ROOT_CERT_CONFIGMAP: &str = "istio-ca-root-cert";
/// The volume and mount of that ConfigMap.
const ROOT_CERT_VOLUME: &str = "istiod-ca-cert";
const ROOT_CERT_DIR: &str = "/var/run/secrets/istio";
/// The projected token the CA authenticates the sidecar with.
const TOKEN_VOLUME: &str = "istio-token";
const TOKEN_DIR: &str = "/var/run/secrets/tokens";

/// Name of the downward-API volume holding the pod's labels.
pub const PODINFO_VOLUME: &str = "sluice-podinfo";
/// Where the downward-API volume is mounted in the sidecar.
pub const PODINFO_DIR: &str = "/etc/sluice/podinfo";
/// Annotation recording what was injected (also marks the pod as injected).
pub const STATUS_ANNOTATION: &str = "sidecar.sluice.io/status";
/// The `security.istio.io/tlsMode` value of an injected pod: its sidecar speaks mesh mTLS, so
/// clients' automatic mTLS may use it.
pub const TLS_MODE_ISTIO: &str = "istio";

/// Istio's per-pod interception annotations, honoured as `istioctl kube-inject` does.
const INCLUDE_INBOUND_PORTS: &str = "traffic.sidecar.istio.io/includeInboundPorts";
const EXCLUDE_INBOUND_PORTS: &str = "traffic.sidecar.istio.io/excludeInboundPorts";
const EXCLUDE_OUTBOUND_PORTS: &str = "traffic.sidecar.istio.io/excludeOutboundPorts";
const INCLUDE_OUTBOUND_RANGES: &str = "traffic.sidecar.istio.io/includeOutboundIPRanges";
const EXCLUDE_OUTBOUND_RANGES: &str = "traffic.sidecar.istio.io/excludeOutboundIPRanges";
const INJECT: &str = "sidecar.istio.io/inject";
const PROXY_IMAGE: &str = "sidecar.istio.io/proxyImage";

/// Adds the sidecar to a pod template (`metadata` + `spec`); `Ok(false)` when it is left alone.
pub fn inject_template(template: &mut Node, opts: &InjectOptions) -> Result<bool, String> {
    let meta = template.get("metadata");
    let annotation = |k: &str| {
        meta.and_then(|m| m.get("annotations"))
            .and_then(|a| a.get(k))
            .and_then(Node::as_str)
            .map(str::to_string)
    };
    let label = |k: &str| {
        meta.and_then(|m| m.get("labels"))
            .and_then(|a| a.get(k))
            .and_then(Node::as_str)
            .map(str::to_string)
    };
    if annotation(INJECT).or_else(|| label(INJECT)).as_deref() == Some("false") {
        return Ok(false);
    }
    let mut opts = opts.clone();
    if let Some(image) = annotation(PROXY_IMAGE) {
        opts.image = image;
    }
    let ann = Annotations {
        include_inbound: annotation(INCLUDE_INBOUND_PORTS),
        exclude_inbound: annotation(EXCLUDE_INBOUND_PORTS),
        exclude_outbound: annotation(EXCLUDE_OUTBOUND_PORTS),
        include_ranges: annotation(INCLUDE_OUTBOUND_RANGES),
        exclude_ranges: annotation(EXCLUDE_OUTBOUND_RANGES),
    };
    let spec = template
        .get_mut("spec")
        .filter(|s| matches!(s, Node::Map(_)))
        .ok_or("the pod template has no `spec`")?;
    if spec.get("hostNetwork").and_then(Node::as_str) == Some("true") {
        return Ok(false);
    }
    let containers = spec
        .seq_at("containers")
        .ok_or("`spec.containers` is not a list")?;
    if containers.is_empty() {
        return Err("`spec.containers` is empty".into());
    }
    if containers
        .iter()
        .any(|c| c.get("name").and_then(Node::as_str) == Some(PROXY_CONTAINER))
    {
        return Ok(false);
    }
    containers.push(proxy_container(&opts));
    spec.seq_at("initContainers")
        .ok_or("`spec.initContainers` is not a list")?
        .push(init_container(&opts, &ann));
    let volumes = spec
        .seq_at("volumes")
        .ok_or("`spec.volumes` is not a list")?;
    volumes.push(podinfo_volume());
    if opts.ca_address.is_some() {
        volumes.extend(identity_volumes());
    }
    // Istio's injection template keeps a tlsMode the workload already sets (e.g. `disabled`).
    let labels = template
        .map_at("metadata")
        .and_then(|m| m.map_at("labels"))
        .ok_or("`metadata.labels` is not a mapping")?;
    if labels.get(TLS_MODE_LABEL).is_none_or(Node::is_null) {
        labels.set(TLS_MODE_LABEL, Node::str(TLS_MODE_ISTIO));
    }
    let identity = if opts.ca_address.is_some() {
        format!(",\"{ROOT_CERT_VOLUME}\",\"{TOKEN_VOLUME}\"")
    } else {
        String::new()
    };
    let status = format!(
        "{{\"initContainers\":[\"{INIT_CONTAINER}\"],\"containers\":[\"{PROXY_CONTAINER}\"],\"volumes\":[\"{PODINFO_VOLUME}\"{identity}]}}"
    );
    template
        .map_at("metadata")
        .and_then(|m| m.map_at("annotations"))
        .ok_or("`metadata.annotations` is not a mapping")?
        .set(
            STATUS_ANNOTATION,
            Node::Scalar(Scalar {
                text: status,
                style: Style::Single,
                tag: None,
            }),
        );
    Ok(true)
}

struct Annotations {
    include_inbound: Option<String>,
    exclude_inbound: Option<String>,
    exclude_outbound: Option<String>,
    include_ranges: Option<String>,
    exclude_ranges: Option<String>,
}

fn strs(items: &[String]) -> Node {
    Node::Seq(items.iter().map(|s| Node::str(s)).collect())
}

fn field_env(name: &str, path: &str) -> Node {
    Node::map(vec![
        ("name", Node::str(name)),
        (
            "valueFrom",
            Node::map(vec![(
                "fieldRef",
                Node::map(vec![("fieldPath", Node::str(path))]),
            )]),
        ),
    ])
}

fn proxy_container(opts: &InjectOptions) -> Node {
    let args: Vec<String> = [
        "run",
        "--kubernetes",
        "--no-gateway",
        // A sidecar sees too small a share of the traffic to judge a canary on: it follows
        // the Canary statuses written by a gateway.
        "--no-canary-lead",
        "--namespace",
        "$(POD_NAMESPACE)",
        "--service-account",
        "$(SERVICE_ACCOUNT)",
        "--labels-file",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([
        format!("{PODINFO_DIR}/labels"),
        "--inbound-port".into(),
        opts.inbound_port.to_string(),
        "--outbound-port".into(),
        opts.outbound_port.to_string(),
        "--admin".into(),
        format!("0.0.0.0:{}", opts.admin_port),
    ])
    .chain(opts.ca_address.iter().flat_map(|ca| {
        [
            "--ca-address".to_string(),
            ca.clone(),
            "--ca-root".into(),
            format!("{ROOT_CERT_DIR}/root-cert.pem"),
            "--token-file".into(),
            format!("{TOKEN_DIR}/istio-token"),
        ]
    }))
    .collect();
    let mut mounts = vec![Node::map(vec![
        ("name", Node::str(PODINFO_VOLUME)),
        ("mountPath", Node::str(PODINFO_DIR)),
        ("readOnly", Node::bool(true)),
    ])];
    if opts.ca_address.is_some() {
        for (volume, dir) in [(ROOT_CERT_VOLUME, ROOT_CERT_DIR), (TOKEN_VOLUME, TOKEN_DIR)] {
            mounts.push(Node::map(vec![
                ("name", Node::str(volume)),
                ("mountPath", Node::str(dir)),
                ("readOnly", Node::bool(true)),
            ]));
        }
    }
    let uid = i64::from(opts.proxy_uid);
    Node::map(vec![
        ("name", Node::str(PROXY_CONTAINER)),
        ("image", Node::str(&opts.image)),
        ("imagePullPolicy", Node::str(&opts.image_pull_policy)),
        ("args", strs(&args)),
        (
            "env",
            Node::Seq(vec![
                field_env("POD_NAME", "metadata.name"),
                field_env("POD_NAMESPACE", "metadata.namespace"),
                field_env("INSTANCE_IP", "status.podIP"),
                field_env("NODE_NAME", "spec.nodeName"),
                field_env("SERVICE_ACCOUNT", "spec.serviceAccountName"),
            ]),
        ),
        (
            "ports",
            Node::Seq(vec![Node::map(vec![
                ("containerPort", Node::int(i64::from(opts.admin_port))),
                ("name", Node::str("sluice-admin")),
                ("protocol", Node::str("TCP")),
            ])]),
        ),
        (
            "readinessProbe",
            Node::map(vec![
                (
                    "httpGet",
                    Node::map(vec![
                        ("path", Node::str("/ready")),
                        ("port", Node::int(i64::from(opts.admin_port))),
                    ]),
                ),
                ("initialDelaySeconds", Node::int(1)),
                ("periodSeconds", Node::int(2)),
                ("failureThreshold", Node::int(30)),
            ]),
        ),
        (
            "resources",
            Node::map(vec![(
                "requests",
                Node::map(vec![
                    ("cpu", Node::str("100m")),
                    ("memory", Node::str("64Mi")),
                ]),
            )]),
        ),
        (
            "securityContext",
            Node::map(vec![
                ("allowPrivilegeEscalation", Node::bool(false)),
                (
                    "capabilities",
                    Node::map(vec![("drop", strs(&["ALL".into()]))]),
                ),
                ("privileged", Node::bool(false)),
                ("readOnlyRootFilesystem", Node::bool(true)),
                ("runAsGroup", Node::int(uid)),
                ("runAsNonRoot", Node::bool(true)),
                ("runAsUser", Node::int(uid)),
            ]),
        ),
        ("volumeMounts", Node::Seq(mounts)),
    ])
}

fn init_container(opts: &InjectOptions, ann: &Annotations) -> Node {
    let mut args = vec![
        "iptables".to_string(),
        "--outbound-port".into(),
        opts.outbound_port.to_string(),
        "--inbound-port".into(),
        opts.inbound_port.to_string(),
        "--proxy-uid".into(),
        opts.proxy_uid.to_string(),
        "--proxy-gid".into(),
        opts.proxy_uid.to_string(),
    ];
    let join = |base: &[String], extra: &Option<String>| {
        let mut all: Vec<String> = base.to_vec();
        all.extend(
            extra
                .iter()
                .flat_map(|e| e.split(','))
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string),
        );
        all.join(",")
    };
    let mut flag = |name: &str, value: String| {
        if !value.is_empty() {
            args.push(name.into());
            args.push(value);
        }
    };
    if let Some(ports) = &ann.include_inbound {
        flag("--inbound-ports", ports.clone());
    }
    let mut exclude_in = vec![opts.admin_port.to_string()];
    exclude_in.extend(opts.exclude_inbound_ports.iter().map(u16::to_string));
    flag(
        "--exclude-inbound-ports",
        join(&exclude_in, &ann.exclude_inbound),
    );
    let exclude_out: Vec<String> = opts
        .exclude_outbound_ports
        .iter()
        .map(u16::to_string)
        .collect();
    flag(
        "--exclude-outbound-ports",
        join(&exclude_out, &ann.exclude_outbound),
    );
    if let Some(ranges) = &ann.include_ranges {
        flag("--outbound-ip-ranges", ranges.clone());
    }
    flag(
        "--exclude-outbound-ip-ranges",
        join(&opts.exclude_outbound_ip_ranges, &ann.exclude_ranges),
    );
    Node::map(vec![
        ("name", Node::str(INIT_CONTAINER)),
        ("image", Node::str(&opts.image)),
        ("imagePullPolicy", Node::str(&opts.image_pull_policy)),
        ("args", strs(&args)),
        (
            "resources",
            Node::map(vec![(
                "requests",
                Node::map(vec![
                    ("cpu", Node::str("10m")),
                    ("memory", Node::str("16Mi")),
                ]),
            )]),
        ),
        (
            "securityContext",
            Node::map(vec![
                ("allowPrivilegeEscalation", Node::bool(false)),
                (
                    "capabilities",
                    Node::map(vec![
                        ("add", strs(&["NET_ADMIN".into(), "NET_RAW".into()])),
                        ("drop", strs(&["ALL".into()])),
                    ]),
                ),
                ("privileged", Node::bool(false)),
                ("readOnlyRootFilesystem", Node::bool(false)),
                ("runAsGroup", Node::int(0)),
                ("runAsNonRoot", Node::bool(false)),
                ("runAsUser", Node::int(0)),
            ]),
        ),
    ])
}

fn podinfo_volume() -> Node {
    let item = |path: &str, field: &str| {
        Node::map(vec![
            ("path", Node::str(path)),
            ("fieldRef", Node::map(vec![("fieldPath", Node::str(field))])),
        ])
    };
    Node::map(vec![
        ("name", Node::str(PODINFO_VOLUME)),
        (
            "downwardAPI",
            Node::map(vec![(
                "items",
                Node::Seq(vec![
                    item("labels", "metadata.labels"),
                    item("annotations", "metadata.annotations"),
                ]),
            )]),
        ),
    ])
}

/// The volumes of a sidecar that gets its certificate from the cluster CA, as Istio's
/// injection names them: the mesh root (ConfigMap `istio-ca-root-cert`, which `sluice ca
/// serve` keeps in every namespace) and a projected service account token for the CA.
fn identity_volumes() -> [Node; 2] {
    [
        Node::map(vec![
            ("name", Node::str(ROOT_CERT_VOLUME)),
            (
                "configMap",
                Node::map(vec![("name", Node::str(ROOT_CERT_CONFIGMAP))]),
            ),
        ]),
        Node::map(vec![
            ("name", Node::str(TOKEN_VOLUME)),
            (
                "projected",
                Node::map(vec![(
                    "sources",
                    Node::Seq(vec![Node::map(vec![(
                        "serviceAccountToken",
                        Node::map(vec![
                            ("audience", Node::str("istio-ca")),
                            ("expirationSeconds", Node::int(43200)),
                            ("path", Node::str("istio-token")),
                        ]),
                    )])]),
                )]),
            ),
        ]),
    ]
}
