//! `sluice inject` golden tests on the tutorials' manifests, plus checks that everything but the
//! injected parts is preserved.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;
use sluice_kube::inject::{inject, inject_with, InjectOptions};
use sluice_model::yaml::parse_documents;

fn fixture(name: &str) -> String {
    let path = format!(
        "{}/tests/fixtures/inject/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn values(text: &str) -> Vec<Value> {
    parse_documents(text)
        .unwrap()
        .into_iter()
        .map(|d| d.value)
        .filter(|v| !v.is_null())
        .collect()
}

/// The pod template of a workload (or the pod itself).
fn template(doc: &mut Value) -> Option<&mut Value> {
    match doc["kind"].as_str()? {
        "Pod" => Some(doc),
        "CronJob" => doc.pointer_mut("/spec/jobTemplate/spec/template"),
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job" => {
            doc.pointer_mut("/spec/template")
        }
        _ => None,
    }
}

/// Removes what inject adds; returns whether it was there.
fn strip_injection(doc: &mut Value) -> bool {
    if doc["kind"] == "List" {
        let mut any = false;
        for item in doc["items"].as_array_mut().into_iter().flatten() {
            any |= strip_injection(item);
        }
        return any;
    }
    let Some(t) = template(doc) else { return false };
    let spec = &mut t["spec"];
    let before = spec["containers"].as_array().map(Vec::len);
    let drop_named = |list: &mut Value, name: &str| {
        if let Some(a) = list.as_array_mut() {
            a.retain(|c| c["name"] != name);
        }
    };
    drop_named(&mut spec["containers"], "sluice-proxy");
    if spec["containers"].as_array().map(Vec::len) == before {
        return false;
    }
    for (key, name) in [
        ("initContainers", "sluice-init"),
        ("volumes", "sluice-podinfo"),
    ] {
        drop_named(&mut spec[key], name);
        if spec[key].as_array().is_some_and(Vec::is_empty) {
            spec.as_object_mut().unwrap().remove(key);
        }
    }
    let meta = t["metadata"].as_object_mut().unwrap();
    let labels = meta["labels"].as_object_mut().unwrap();
    assert_eq!(
        labels.remove("security.istio.io/tlsMode"),
        Some(Value::from("istio"))
    );
    if labels.is_empty() {
        meta.remove("labels");
    }
    let ann = meta["annotations"].as_object_mut().unwrap();
    assert!(ann.remove("sidecar.sluice.io/status").is_some());
    if ann.is_empty() {
        meta.remove("annotations");
    }
    if meta.is_empty() {
        t.as_object_mut().unwrap().remove("metadata");
    }
    true
}

fn check(name: &str, injected_docs: usize) {
    let input = fixture(name);
    let out = inject(&input).unwrap();
    insta::assert_snapshot!(name, out);
    assert_eq!(
        inject(&out).unwrap(),
        out,
        "{name}: injecting twice changes nothing"
    );
    let (before, mut after) = (values(&input), values(&out));
    assert_eq!(before.len(), after.len());
    let injected = after.iter_mut().map(strip_injection).filter(|x| *x).count();
    assert_eq!(injected, injected_docs, "{name}: injected documents");
    assert_eq!(
        before, after,
        "{name}: everything but the sidecar is preserved"
    );
}

#[test]
fn helloworld() {
    check("helloworld.yaml", 2);
}

#[test]
fn httpbin_for_mirroring() {
    check("httpbin-v1.yaml", 1);
}

#[test]
fn sleep_with_annotations() {
    check("sleep.yaml", 1);
    let out = inject(&fixture("sleep.yaml")).unwrap();
    assert!(
        out.contains("- --exclude-outbound-ip-ranges\n        - \"169.254.169.254/32\""),
        "{out}"
    );
    assert!(
        out.starts_with("####"),
        "comments before the first document are kept"
    );
}

#[test]
fn pod_with_block_scalars_and_quoted_strings() {
    check("pod.yaml", 1);
}

#[test]
fn statefulset_with_flow_style() {
    check("statefulset.yaml", 1);
    let out = inject(&fixture("statefulset.yaml")).unwrap();
    assert!(
        out.contains("- \"15000,5432\"\n"),
        "excludeInboundPorts annotation: {out}"
    );
}

#[test]
fn multi_document_stream() {
    // The DaemonSet uses hostNetwork and the Job opts out: only the List's ReplicaSet changes.
    check("mixed.yaml", 1);
    let input = fixture("mixed.yaml");
    let out = inject(&input).unwrap();
    let cut = input.find("---\napiVersion: v1\nkind: List").unwrap();
    assert_eq!(
        &out[..cut],
        &input[..cut],
        "untouched documents are copied byte for byte"
    );
}

#[test]
fn options_change_image_ports_and_exclusions() {
    let opts = InjectOptions {
        image: "registry.local/sluice:1.2".into(),
        image_pull_policy: "Always".into(),
        proxy_uid: 2000,
        outbound_port: 16001,
        inbound_port: 16006,
        admin_port: 16000,
        exclude_inbound_ports: vec![22],
        exclude_outbound_ports: vec![3306],
        exclude_outbound_ip_ranges: vec!["10.0.0.0/8".into()],
        ca_address: None,
    };
    let out = inject_with(&fixture("httpbin-v1.yaml"), &opts).unwrap();
    let docs = values(&out);
    let spec = &docs[0]["spec"]["template"]["spec"];
    let proxy = &spec["containers"][1];
    assert_eq!(proxy["image"], "registry.local/sluice:1.2");
    assert_eq!(proxy["securityContext"]["runAsUser"], 2000);
    assert_eq!(proxy["readinessProbe"]["httpGet"]["port"], 16000);
    let args: Vec<&str> = spec["initContainers"][0]["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(
        args,
        [
            "iptables",
            "--outbound-port",
            "16001",
            "--inbound-port",
            "16006",
            "--proxy-uid",
            "2000",
            "--proxy-gid",
            "2000",
            "--exclude-inbound-ports",
            "16000,22",
            "--exclude-outbound-ports",
            "3306",
            "--exclude-outbound-ip-ranges",
            "10.0.0.0/8",
        ]
    );
    let caps = &spec["initContainers"][0]["securityContext"]["capabilities"]["add"];
    assert_eq!(caps, &serde_json::json!(["NET_ADMIN", "NET_RAW"]));
}

#[test]
fn injected_pods_are_labelled_for_mesh_mtls() {
    let out =
        inject("kind: Pod\nmetadata:\n  name: p\nspec:\n  containers:\n  - name: a\n").unwrap();
    let pod = &values(&out)[0];
    assert_eq!(
        pod["metadata"]["labels"]["security.istio.io/tlsMode"],
        "istio"
    );
    // A workload that sets its own mode keeps it, as with Istio's injector.
    let own = "kind: Deployment\nmetadata:\n  name: d\nspec:\n  template:\n    metadata:\n      labels:\n        app: d\n        security.istio.io/tlsMode: disabled\n    spec:\n      containers:\n      - name: a\n";
    let out = inject(own).unwrap();
    let labels = &values(&out)[0]["spec"]["template"]["metadata"]["labels"];
    assert_eq!(
        labels,
        &serde_json::json!({"app": "d", "security.istio.io/tlsMode": "disabled"})
    );
    // The sidecar's identity is the pod's: namespace and service account from the downward API.
    let proxy = &values(&out)[0]["spec"]["template"]["spec"]["containers"][1];
    let args: Vec<&str> = proxy["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let flag = |name: &str| {
        let i = args.iter().position(|a| *a == name).unwrap();
        args[i + 1]
    };
    assert_eq!(flag("--namespace"), "$(POD_NAMESPACE)");
    assert_eq!(flag("--service-account"), "$(SERVICE_ACCOUNT)");
    let env = |name: &str| {
        proxy["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .map(|e| e["valueFrom"]["fieldRef"]["fieldPath"].clone())
    };
    assert_eq!(env("POD_NAMESPACE").unwrap(), "metadata.namespace");
    assert_eq!(env("SERVICE_ACCOUNT").unwrap(), "spec.serviceAccountName");
    assert_eq!(env("NODE_NAME").unwrap(), "spec.nodeName");
    // Opted-out and host-network pods are not labelled.
    let opted_out = "kind: Pod\nmetadata:\n  name: p\n  labels:\n    sidecar.istio.io/inject: \"false\"\nspec:\n  containers:\n  - name: a\n";
    assert!(!inject(opted_out).unwrap().contains("tlsMode"));
}

/// With `--ca-address`, the sidecar gets its certificate from the cluster CA as Istio's
/// sidecars do: a projected token with audience `istio-ca` and the `istio-ca-root-cert`
/// ConfigMap, mounted where the `--token-file` and `--ca-root` flags point.
#[test]
fn a_cluster_ca_gives_the_sidecar_a_token_and_the_mesh_root() {
    let opts = InjectOptions {
        ca_address: Some("https://sluice-ca.sluice-system.svc:15012".into()),
        ..InjectOptions::default()
    };
    let out = inject_with(
        "kind: Pod\nmetadata:\n  name: p\nspec:\n  containers:\n  - name: a\n",
        &opts,
    )
    .unwrap();
    let pod = &values(&out)[0];
    let proxy = &pod["spec"]["containers"][1];
    let args: Vec<&str> = proxy["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let flag = |name: &str| args[args.iter().position(|a| *a == name).unwrap() + 1];
    assert_eq!(
        flag("--ca-address"),
        "https://sluice-ca.sluice-system.svc:15012"
    );
    assert_eq!(flag("--ca-root"), "/var/run/secrets/istio/root-cert.pem");
    assert_eq!(flag("--token-file"), "/var/run/secrets/tokens/istio-token");
    let volumes = &pod["spec"]["volumes"];
    let named = |name: &str| {
        volumes
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no volume {name}: {volumes}"))
    };
    assert_eq!(
        named("istiod-ca-cert")["configMap"]["name"],
        "istio-ca-root-cert"
    );
    let token = &named("istio-token")["projected"]["sources"][0]["serviceAccountToken"];
    assert_eq!(token["audience"], "istio-ca");
    let mounts = proxy["volumeMounts"].as_array().unwrap();
    for (name, path) in [
        ("istiod-ca-cert", "/var/run/secrets/istio"),
        ("istio-token", "/var/run/secrets/tokens"),
    ] {
        assert!(
            mounts
                .iter()
                .any(|m| m["name"] == name && m["mountPath"] == path),
            "{name} not mounted at {path}: {mounts:?}"
        );
    }
    // Without it, nothing of the kind is added.
    let plain =
        inject("kind: Pod\nmetadata:\n  name: p\nspec:\n  containers:\n  - name: a\n").unwrap();
    assert!(
        !plain.contains("istio-token") && !plain.contains("--ca-address"),
        "{plain}"
    );
}
