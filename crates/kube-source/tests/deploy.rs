//! Every YAML file under `deploy/` parses (Helm templates after a small rendering that supports
//! only what the chart uses: `.Values.*`, `.Release.*`, `.Chart.*` and `| quote`), and the
//! manifests say what sluice needs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use serde_json::Value;
use sluice_kube::source::ISTIO_KINDS;
use sluice_model::yaml::parse_documents;
use sluice_model::Kind;

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            yaml_files(&path, out);
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        ) {
            out.push(path);
        }
    }
}

/// Looks up `a.b.c` in the chart's values.
fn value_at(values: &Value, path: &str) -> Option<String> {
    let v = path.split('.').try_fold(values, |v, k| v.get(k))?;
    Some(match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    })
}

/// Helm's truthiness of a value (absent, false, 0, "" and null are false).
fn truthy(values: &Value, path: &str) -> bool {
    match path.split('.').try_fold(values, |v, k| v.get(k)) {
        None | Some(Value::Null) | Some(Value::Bool(false)) => false,
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Number(n)) => n.as_f64() != Some(0.0),
        Some(_) => true,
    }
}

/// Renders the expressions the chart uses (values, release and chart names, `| quote`, and
/// `if .Values.x` ... `end` blocks, with `{{-` trimming); anything else fails the test.
fn render(template: &str, values: &Value, file: &Path) -> String {
    let mut out = String::new();
    let mut rest = template;
    // Whether each enclosing `if` block is emitted.
    let mut emitting: Vec<bool> = Vec::new();
    let on = |e: &[bool]| e.iter().all(|b| *b);
    while let Some(start) = rest.find("{{") {
        if on(&emitting) {
            out.push_str(&rest[..start]);
        }
        let end = rest[start..].find("}}").expect("unclosed {{") + start;
        let raw = &rest[start + 2..end];
        rest = &rest[end + 2..];
        if raw.starts_with('-') && on(&emitting) {
            out.truncate(out.trim_end().len());
        }
        let expr = raw.trim_start_matches('-').trim();
        if let Some(cond) = expr.strip_prefix("if ") {
            let path = cond
                .trim()
                .strip_prefix(".Values.")
                .unwrap_or_else(|| panic!("{}: unsupported condition `{cond}`", file.display()));
            emitting.push(truthy(values, path));
            continue;
        }
        if expr == "end" {
            emitting
                .pop()
                .unwrap_or_else(|| panic!("{}: `end` without `if`", file.display()));
            continue;
        }
        let (expr, quote) = match expr.split_once('|') {
            Some((e, f)) if f.trim() == "quote" => (e.trim(), true),
            Some(_) => panic!("{}: unsupported pipeline `{expr}`", file.display()),
            None => (expr, false),
        };
        let v = match expr {
            ".Release.Name" => "sluice".to_string(),
            ".Release.Namespace" => "sluice-system".to_string(),
            ".Chart.Name" => "sluice".to_string(),
            e => e
                .strip_prefix(".Values.")
                .and_then(|p| value_at(values, p))
                .unwrap_or_else(|| panic!("{}: unsupported expression `{e}`", file.display())),
        };
        if on(&emitting) {
            out.push_str(&if quote { format!("{v:?}") } else { v });
        }
    }
    assert!(emitting.is_empty(), "{}: unclosed `if`", file.display());
    out.push_str(rest);
    out
}

/// The chart's default values.
fn chart_values() -> Value {
    let values_file = deploy_dir().join("helm/sluice/values.yaml");
    parse_documents(&std::fs::read_to_string(values_file).unwrap()).unwrap()[0]
        .value
        .clone()
}

/// Every object of every YAML file under deploy/, rendered with the chart's default values.
fn objects() -> Vec<(PathBuf, Value)> {
    objects_with(&chart_values())
}

/// Every object of every YAML file under deploy/, rendered with `values`.
fn objects_with(values: &Value) -> Vec<(PathBuf, Value)> {
    let mut files = Vec::new();
    yaml_files(&deploy_dir(), &mut files);
    files.sort();
    assert!(files.len() >= 8, "{files:?}");
    let mut out = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let text = if text.contains("{{") {
            render(&text, values, &file)
        } else {
            text
        };
        let docs = parse_documents(&text)
            .unwrap_or_else(|e| panic!("{}:{}: {}", file.display(), e.location.line, e.message));
        for d in docs.into_iter().filter(|d| !d.value.is_null()) {
            out.push((file.clone(), d.value));
        }
    }
    out
}

fn kind<'a>(objs: &'a [(PathBuf, Value)], kind: &str) -> Vec<&'a Value> {
    objs.iter()
        .map(|(_, v)| v)
        .filter(|v| v["kind"] == kind)
        .collect()
}

#[test]
fn every_yaml_file_parses_into_named_objects() {
    for (file, v) in objects() {
        let name = file.file_name().unwrap().to_str().unwrap();
        if matches!(name, "Chart.yaml" | "values.yaml") {
            continue;
        }
        assert!(
            v["apiVersion"].is_string(),
            "{}: no apiVersion",
            file.display()
        );
        assert!(
            v["metadata"]["name"].is_string(),
            "{}: no metadata.name",
            file.display()
        );
    }
}

#[test]
fn optional_templates_render_when_enabled() {
    let mut values = chart_values();
    values["ca"]["enabled"] = Value::Bool(true);
    let with_ca = objects_with(&values);
    assert!(with_ca.len() > objects().len(), "the CA objects are added");
    for (file, v) in with_ca
        .iter()
        .filter(|(f, _)| f.ends_with("templates/ca.yaml"))
    {
        assert!(
            v["apiVersion"].is_string() && v["metadata"]["name"].is_string(),
            "{}: {v}",
            file.display()
        );
    }
    assert!(kind(&with_ca, "Deployment")
        .iter()
        .any(|d| d["metadata"]["name"] == "sluice-ca"));
}

#[test]
fn webhooks_are_off_by_default_and_select_like_istio_when_enabled() {
    let off = objects();
    assert!(kind(&off, "MutatingWebhookConfiguration").is_empty());
    assert!(kind(&off, "ValidatingWebhookConfiguration").is_empty());

    let mut values = chart_values();
    values["webhook"]["enabled"] = Value::Bool(true);
    values["webhook"]["caBundle"] = Value::String("Q0EgUEVN".into());
    let on = objects_with(&values);
    let deploy = kind(&on, "Deployment")
        .into_iter()
        .find(|d| d["metadata"]["name"] == "sluice-webhook")
        .expect("the webhook Deployment");
    let pod = &deploy["spec"]["template"];
    assert_eq!(
        pod["metadata"]["labels"]["sidecar.istio.io/inject"],
        "false"
    );
    let c = &pod["spec"]["containers"][0];
    let args: Vec<&str> = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(
        &args[..7],
        [
            "webhook",
            "--listen",
            "0.0.0.0:15017",
            "--cert",
            "/etc/sluice/webhook/tls.crt",
            "--key",
            "/etc/sluice/webhook/tls.key"
        ]
    );
    assert_eq!(c["readinessProbe"]["httpGet"]["scheme"], "HTTPS");
    assert_eq!(
        pod["spec"]["volumes"][0]["secret"]["secretName"],
        "sluice-webhook-tls"
    );
    let svc = kind(&on, "Service")
        .into_iter()
        .find(|s| s["metadata"]["name"] == "sluice-webhook")
        .expect("the webhook Service");
    assert_eq!(svc["spec"]["ports"][0]["port"], 443);
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], 15017);
    for (k, v) in svc["spec"]["selector"].as_object().unwrap() {
        assert_eq!(&pod["metadata"]["labels"][k], v);
    }
    let grants = kind(&on, "ClusterRole")
        .into_iter()
        .find(|r| r["metadata"]["name"] == "sluice-webhook")
        .expect("the webhook's ClusterRole");
    assert_eq!(
        grants["rules"],
        serde_json::json!([{"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get"]}])
    );

    let client = |hook: &Value, path: &str| {
        let cc = &hook["clientConfig"];
        assert_eq!(cc["service"]["name"], "sluice-webhook");
        assert_eq!(cc["service"]["namespace"], "sluice-system");
        assert_eq!(cc["service"]["path"], path);
        assert_eq!(cc["caBundle"], "Q0EgUEVN");
        assert_eq!(hook["admissionReviewVersions"], serde_json::json!(["v1"]));
        assert_eq!(hook["sideEffects"], "None");
    };
    let mutating = kind(&on, "MutatingWebhookConfiguration");
    assert_eq!(mutating.len(), 1);
    let hooks = mutating[0]["webhooks"].as_array().unwrap();
    assert_eq!(hooks.len(), 3);
    for hook in hooks {
        client(hook, "/inject");
        assert_eq!(hook["failurePolicy"], "Ignore");
        assert_eq!(
            hook["rules"],
            serde_json::json!([{"operations": ["CREATE"], "apiGroups": [""],
                                "apiVersions": ["v1"], "resources": ["pods"]}])
        );
        assert_eq!(
            hook["objectSelector"]["matchExpressions"][0]["key"],
            "sidecar.istio.io/inject"
        );
    }
    // Istio's two selections: the labelled namespace (pods not opted out), and elsewhere the
    // pods opted in.
    let ns = &hooks[0]["namespaceSelector"]["matchExpressions"][0];
    assert_eq!(
        (&ns["key"], &ns["operator"], &ns["values"]),
        (
            &"istio-injection".into(),
            &"In".into(),
            &serde_json::json!(["enabled"])
        )
    );
    let obj = &hooks[0]["objectSelector"]["matchExpressions"][0];
    assert_eq!(obj["operator"], "NotIn");
    assert_eq!(obj["values"], serde_json::json!(["false"]));
    let elsewhere = &hooks[2];
    let keys: Vec<(&str, &str)> = elsewhere["namespaceSelector"]["matchExpressions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["key"].as_str().unwrap(), e["operator"].as_str().unwrap()))
        .collect();
    assert!(
        keys.contains(&("istio-injection", "DoesNotExist")),
        "{keys:?}"
    );
    assert!(
        keys.contains(&("sluice-injection", "DoesNotExist")),
        "{keys:?}"
    );
    let obj = &elsewhere["objectSelector"]["matchExpressions"][0];
    assert_eq!(obj["operator"], "In");
    assert_eq!(obj["values"], serde_json::json!(["true"]));

    let validating = kind(&on, "ValidatingWebhookConfiguration");
    assert_eq!(validating.len(), 1);
    let hook = &validating[0]["webhooks"][0];
    client(hook, "/validate");
    assert_eq!(hook["failurePolicy"], "Fail");
    assert_eq!(
        hook["rules"][0]["apiGroups"],
        serde_json::json!(["networking.istio.io", "security.istio.io"])
    );
    assert_eq!(
        hook["rules"][0]["operations"],
        serde_json::json!(["CREATE", "UPDATE"])
    );
}

#[test]
fn crds_cover_every_watched_kind_in_its_versions() {
    let objs = objects();
    let crds = kind(&objs, "CustomResourceDefinition");
    // The Canary CRD (deploy/canary-crd.yaml) is sluice's own: watched when installed, its
    // status written by the leading proxy, so the status subresource must be on.
    let (canary, crds): (Vec<&Value>, Vec<&Value>) = crds
        .into_iter()
        .partition(|c| c["spec"]["group"] == sluice_model::resource::ROLLOUTS_GROUP);
    assert_eq!(canary.len(), 1);
    assert_eq!(
        canary[0]["metadata"]["name"],
        "canaries.rollouts.sluice.dev"
    );
    assert_eq!(canary[0]["spec"]["names"]["kind"], "Canary");
    let v = &canary[0]["spec"]["versions"][0];
    assert_eq!(v["name"], "v1alpha1");
    assert_eq!(v["subresources"]["status"], serde_json::json!({}));
    assert_eq!(
        v["schema"]["openAPIV3Schema"]["properties"]["status"]
            ["x-kubernetes-preserve-unknown-fields"],
        true,
        "the status holds the whole controller state"
    );
    let mut kinds: Vec<&str> = crds
        .iter()
        .map(|c| c["spec"]["names"]["kind"].as_str().unwrap())
        .collect();
    kinds.sort();
    let mut watched: Vec<&str> = ISTIO_KINDS.iter().map(|k| k.name()).collect();
    watched.sort();
    assert_eq!(kinds, watched);
    for c in crds {
        let kind = Kind::from_name(c["spec"]["names"]["kind"].as_str().unwrap()).unwrap();
        let plural = c["spec"]["names"]["plural"].as_str().unwrap();
        assert_eq!(c["metadata"]["name"], format!("{plural}.{}", kind.group()));
        assert_eq!(c["spec"]["group"], kind.group());
        assert_eq!(c["spec"]["scope"], "Namespaced");
        let versions = c["spec"]["versions"].as_array().unwrap();
        let names: Vec<&str> = versions
            .iter()
            .map(|v| v["name"].as_str().unwrap())
            .collect();
        let mut expected: Vec<&str> = kind.versions().to_vec();
        expected.reverse();
        assert_eq!(names, expected, "{kind}: newest first");
        for v in versions {
            assert_eq!(v["served"], true);
            assert_eq!(v["storage"], v["name"] == "v1");
            let spec = &v["schema"]["openAPIV3Schema"]["properties"]["spec"];
            assert_eq!(spec["type"], "object");
            assert_eq!(spec["x-kubernetes-preserve-unknown-fields"], true);
        }
    }
}

#[test]
fn rbac_is_read_only_except_events_canary_status_and_the_lease() {
    let objs = objects();
    let roles = kind(&objs, "ClusterRole");
    assert_eq!(roles.len(), 1);
    let mut granted = Vec::new();
    let mut granted_in: Vec<(String, String)> = Vec::new();
    for rule in roles[0]["rules"].as_array().unwrap() {
        let verbs: Vec<&str> = rule["verbs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        for r in rule["resources"].as_array().unwrap() {
            let r = r.as_str().unwrap();
            if r == "events" {
                assert_eq!(verbs, ["create", "patch"]);
            } else if r == "canaries/status" {
                assert_eq!(
                    rule["apiGroups"],
                    serde_json::json!(["rollouts.sluice.dev"])
                );
                assert_eq!(verbs, ["get", "patch", "update"]);
            } else {
                assert_eq!(verbs, ["get", "list", "watch"], "{r}");
                granted.push(r);
                for g in rule["apiGroups"].as_array().unwrap() {
                    granted_in.push((g.as_str().unwrap().to_string(), r.to_string()));
                }
            }
        }
    }
    for needed in [
        "virtualservices",
        "destinationrules",
        "gateways",
        "serviceentries",
        "workloadentries",
        "services",
        "endpointslices",
        "pods",
        "namespaces",
        "canaries",
    ] {
        assert!(granted.contains(&needed), "{needed} not granted");
    }
    for crd in kind(&objs, "CustomResourceDefinition") {
        let group = crd["spec"]["group"].as_str().unwrap().to_string();
        let plural = crd["spec"]["names"]["plural"].as_str().unwrap().to_string();
        assert!(
            granted_in.contains(&(group.clone(), plural.clone())),
            "{plural}.{group} not granted"
        );
    }
    let bindings = kind(&objs, "ClusterRoleBinding");
    assert!(bindings
        .iter()
        .all(|b| b["roleRef"]["name"] == "sluice-reader"));
    // Secrets (gateway certificates) only in the release's namespace, read-only; the canary
    // leader Lease there too.
    let roles = kind(&objs, "Role");
    assert_eq!(roles.len(), 2);
    let rules: Vec<&Value> = roles.iter().map(|r| &r["rules"]).collect();
    assert!(rules.contains(&&serde_json::json!([{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list", "watch"]}])));
    assert!(rules.contains(&&serde_json::json!([{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update"]}])));
    let bound: Vec<&Value> = kind(&objs, "RoleBinding")
        .iter()
        .map(|b| &b["roleRef"]["name"])
        .collect();
    for r in roles {
        assert!(
            bound.contains(&&r["metadata"]["name"]),
            "{} is not bound",
            r["metadata"]["name"]
        );
    }
}

#[test]
fn gateway_deployment_and_service() {
    let objs: Vec<(PathBuf, Value)> = objects()
        .into_iter()
        .filter(|(f, _)| f.to_string_lossy().contains("/helm/"))
        .collect();
    let deploy = kind(&objs, "Deployment")[0];
    let pod = &deploy["spec"]["template"];
    assert_eq!(pod["metadata"]["labels"]["istio"], "ingressgateway");
    assert_eq!(
        deploy["spec"]["selector"]["matchLabels"]["istio"],
        "ingressgateway"
    );
    let c = &pod["spec"]["containers"][0];
    let args: Vec<&str> = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(
        &args[..4],
        ["run", "--kubernetes", "--labels", "istio=ingressgateway"]
    );
    assert_eq!(c["image"], "sluice:dev");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/ready");
    assert_eq!(pod["spec"]["serviceAccountName"], "sluice");
    let svc = kind(&objs, "Service")[0];
    assert_eq!(svc["spec"]["type"], "LoadBalancer");
    for (k, v) in svc["spec"]["selector"].as_object().unwrap() {
        assert_eq!(
            &pod["metadata"]["labels"][k], v,
            "the Service selects the gateway pods"
        );
    }
}

#[test]
fn tutorial_examples_are_valid_istio_config_for_the_gateway() {
    let dir = deploy_dir().join("examples");
    let mut resources = Vec::new();
    for name in [
        "helloworld.yaml",
        "helloworld-gateway.yaml",
        "httpbin-mirroring.yaml",
    ] {
        let file = dir.join(name);
        let parsed = sluice_model::parse_text(&std::fs::read_to_string(&file).unwrap(), None);
        let blocking: Vec<_> = parsed
            .diagnostics
            .iter()
            .filter(|d| sluice_config::is_blocking(d))
            .collect();
        assert!(blocking.is_empty(), "{name}: {blocking:#?}");
        resources.extend(parsed.resources);
    }
    let canary = sluice_model::parse_text(
        &std::fs::read_to_string(dir.join("helloworld-header-canary.yaml")).unwrap(),
        None,
    );
    for r in resources.iter().chain(&canary.resources) {
        let errors: Vec<_> = sluice_config::validate::validate_resource(r)
            .into_iter()
            .filter(sluice_config::is_blocking)
            .collect();
        assert!(errors.is_empty(), "{}: {errors:#?}", r.key());
    }
    let proxy = sluice_config::ProxyConfig {
        labels: [("istio".to_string(), "ingressgateway".to_string())].into(),
        mesh_role: false,
        ..Default::default()
    };
    let snapshot = sluice_config::build_snapshot(
        resources,
        Vec::new(),
        &proxy,
        &sluice_lb::StateStore::new(),
        1,
    )
    .expect("the tutorial config is accepted");
    let ports: Vec<u16> = snapshot
        .listeners
        .iter()
        .map(|l| l.address.port())
        .collect();
    assert_eq!(ports, [80], "the gateway serves port 80");
}

/// The image ships a binary without debug info or symbols (about 23 MB instead of 144 MB).
#[test]
fn the_image_ships_a_stripped_binary() {
    let dockerfile = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/Dockerfile"),
    )
    .unwrap();
    let build = dockerfile
        .lines()
        .find(|l| l.starts_with("RUN") && l.contains("cargo build --release"))
        .expect("a release build step");
    assert!(build.contains("CARGO_PROFILE_RELEASE_DEBUG=0"), "{build}");
    assert!(
        build.contains("CARGO_PROFILE_RELEASE_STRIP=symbols"),
        "{build}"
    );
}
