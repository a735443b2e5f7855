use sluice_model::{parse_text, Kind, Severity, Spec};

const TUTORIAL: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: app-backend-v1
---
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: app-backend
spec:
  hosts:
  - app-backend
  http:
  - route:
    - destination:
        host: app-backend
        subset: v1
      weight: 90
    - destination:
        host: app-backend
        subset: v2
      weigth: 10
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: app-backend
  namespace: prod
spec:
  host: app-backend
  subsets:
  - name: v1
    labels: {version: v1}
"#;

#[test]
fn tutorial_file_reads_istio_objects_and_skips_others() {
    let p = parse_text(TUTORIAL, Some("t.yaml".into()));
    assert_eq!(p.resources.len(), 2);
    assert_eq!(p.resources[0].kind, Kind::VirtualService);
    assert_eq!(p.resources[0].metadata.namespace, "default");
    assert_eq!(p.resources[1].metadata.namespace, "prod");
    let Spec::VirtualService(vs) = &p.resources[0].spec else {
        panic!()
    };
    assert_eq!(vs.http[0].route[0].weight, Some(90));
    assert_eq!(vs.http[0].route[1].weight, None);

    let skipped = p.diagnostics.iter().find(|d| d.code == "SLC0003").unwrap();
    assert_eq!(skipped.severity, Severity::Info);
    let unknown = p.diagnostics.iter().find(|d| d.code == "SLC0002").unwrap();
    assert_eq!(unknown.severity, Severity::Warning);
    assert_eq!(
        unknown.field.as_deref(),
        Some("spec.http[0].route[1].weigth")
    );
    let loc = unknown.location.unwrap();
    assert_eq!((loc.line, loc.column), (23, 7));
    assert!(unknown.message.contains("weigth"));
}

#[test]
fn wrong_type_is_an_error_with_field_and_line() {
    let text = "apiVersion: networking.istio.io/v1beta1\nkind: VirtualService\nmetadata: {name: x}\nspec:\n  hosts: [a]\n  http:\n  - route:\n    - destination: {host: a}\n      weight: ten\n";
    let p = parse_text(text, Some("x.yaml".into()));
    assert!(p.resources.is_empty());
    let d = &p.diagnostics[0];
    assert_eq!(d.severity, Severity::Error);
    assert_eq!(d.field.as_deref(), Some("spec.http[0].route[0].weight"));
    assert_eq!(d.location.unwrap().line, 9);
    assert_eq!(d.to_string().split(':').next(), Some("x.yaml"));
}

#[test]
fn list_items_and_json() {
    let text = r#"{"apiVersion": "v1", "kind": "List", "items": [
      {"apiVersion": "networking.istio.io/v1", "kind": "Gateway", "metadata": {"name": "gw"},
       "spec": {"selector": {"istio": "ingressgateway"}, "servers": [{"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": ["*"], "bogus": 1}]}}
    ]}"#;
    let p = parse_text(text, None);
    assert_eq!(p.resources.len(), 1);
    let d = &p.diagnostics[0];
    assert_eq!(d.field.as_deref(), Some("spec.servers[0].bogus"));
    assert_eq!(d.location.unwrap().line, 3);
}

/// The items of a YAML List (as `kubectl get -o yaml` prints them) locate their own fields,
/// each in its own place in the one document.
#[test]
fn yaml_list_items_locate_their_own_fields() {
    let text = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: networking.istio.io/v1\n  kind: VirtualService\n  metadata: {name: a}\n  spec:\n    hosts: [a.example.com]\n    http:\n    - route: [{destination: {host: a.example.com}}]\n- apiVersion: networking.istio.io/v1\n  kind: VirtualService\n  metadata: {name: b}\n  spec:\n    hosts:\n    - b.example.com\n    bogus: 1\n    http:\n    - route: [{destination: {host: b.example.com}}]\n";
    let p = parse_text(text, None);
    assert_eq!(p.resources.len(), 2, "{:#?}", p.diagnostics);
    let d = &p.diagnostics[0];
    assert_eq!(d.field.as_deref(), Some("spec.bogus"));
    assert_eq!(d.location.unwrap().line, 17);
    let (a, b) = (&p.resources[0], &p.resources[1]);
    assert_eq!(a.locate("spec.hosts[0]").map(|l| l.line), Some(8));
    assert_eq!(
        b.locate("spec.hosts[0]").map(|l| (l.line, l.column)),
        Some((16, 7))
    );
    assert_eq!(b.locate("spec.http[0].route[0]").map(|l| l.line), Some(19));
    // A path the object lacks falls back to its nearest ancestor within the item.
    assert_eq!(b.locate("spec.tcp").map(|l| l.line), Some(14));
    assert_eq!(a.locate("spec.http[0].timeout").map(|l| l.line), Some(10));
}

/// An item of a List keeps only its own part of the document's positions: after an edit of
/// another item (lines unchanged) it is equal to what it was, so a reload can keep it.
#[test]
fn a_list_item_is_unchanged_by_an_edit_of_another() {
    let list = |host: &str| {
        format!("apiVersion: v1\nkind: List\nitems:\n- apiVersion: networking.istio.io/v1\n  kind: VirtualService\n  metadata: {{name: a}}\n  spec:\n    hosts: [a.example.com]\n- apiVersion: networking.istio.io/v1\n  kind: VirtualService\n  metadata: {{name: b}}\n  spec:\n    hosts: [{host}]\n")
    };
    let before = parse_text(&list("b.example.com"), None);
    // A position in the other item moves (its host's column).
    let after = parse_text(&list("   c.example.com"), None);
    assert_eq!(before.resources.len(), 2);
    assert_eq!(before.resources[0], after.resources[0]);
    assert_ne!(before.resources[1], after.resources[1]);
    assert_eq!(
        after.resources[1].locate("spec.hosts[0]").map(|l| l.line),
        Some(13)
    );
}

#[test]
fn syntax_error_and_bad_version() {
    let p = parse_text("a: [1,\n", Some("bad.yaml".into()));
    assert_eq!(p.diagnostics[0].code, "SLC0001");
    let p = parse_text(
        "apiVersion: networking.istio.io/v2\nkind: Gateway\nmetadata: {name: g}\n",
        None,
    );
    assert_eq!(p.diagnostics[0].severity, Severity::Error);
    assert_eq!(p.diagnostics[0].field.as_deref(), Some("apiVersion"));
}

#[test]
fn security_kinds_and_sidecar_are_read_with_their_positions() {
    let text = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: deny-all\n  namespace: foo\n  annotations: {istio.io/dry-run: \"true\"}\nspec:\n  action: DENY\n  rules:\n  - to:\n    - operation: {methods: [GET], bogus: 1}\n---\napiVersion: security.istio.io/v1beta1\nkind: PeerAuthentication\nmetadata: {name: default}\nspec:\n  mtls: {mode: STRICT}\n  portLevelMtls: {9102: {mode: DISABLE}}\n---\napiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: jwt}\nspec:\n  jwtRules:\n  - issuer: https://idp.example.org\n    fromHeaders: [{name: x-jwt, prefix: \"Bearer \"}]\n---\napiVersion: networking.istio.io/v1beta1\nkind: Sidecar\nmetadata: {name: default}\nspec:\n  ingress:\n  - port: {number: 9080, protocol: HTTP, name: http}\n    defaultEndpoint: 127.0.0.1:8080\n";
    let p = parse_text(text, Some("p.yaml".into()));
    assert_eq!(p.resources.len(), 4, "{:?}", p.diagnostics);
    let Spec::AuthorizationPolicy(ap) = &p.resources[0].spec else {
        panic!("not an AuthorizationPolicy");
    };
    assert_eq!(ap.action.as_deref(), Some("DENY"));
    assert!(sluice_model::is_dry_run(&p.resources[0].metadata));
    let d = &p.diagnostics[0];
    assert_eq!(d.code, "SLC0002");
    assert_eq!(
        d.field.as_deref(),
        Some("spec.rules[0].to[0].operation.bogus")
    );
    assert_eq!(d.location.unwrap().line, 11);
    let Spec::PeerAuthentication(pa) = &p.resources[1].spec else {
        panic!("not a PeerAuthentication");
    };
    assert_eq!(pa.port_level_mtls["9102"].mode.as_deref(), Some("DISABLE"));
    let Spec::RequestAuthentication(ra) = &p.resources[2].spec else {
        panic!("not a RequestAuthentication");
    };
    assert_eq!(
        ra.jwt_rules[0].from_headers[0].prefix.as_deref(),
        Some("Bearer ")
    );
    let Spec::Sidecar(sc) = &p.resources[3].spec else {
        panic!("not a Sidecar");
    };
    assert_eq!(
        sc.ingress[0].default_endpoint.as_deref(),
        Some("127.0.0.1:8080")
    );
}

#[test]
fn security_kinds_refuse_networking_versions() {
    let text =
        "apiVersion: security.istio.io/v1alpha3\nkind: AuthorizationPolicy\nmetadata: {name: a}\n";
    let p = parse_text(text, None);
    assert!(p.resources.is_empty());
    assert_eq!(p.diagnostics[0].severity, Severity::Error);
    assert_eq!(p.diagnostics[0].field.as_deref(), Some("apiVersion"));
}

#[test]
fn envoy_filter_is_a_warning_not_a_silent_skip() {
    let text = "apiVersion: networking.istio.io/v1alpha3\nkind: EnvoyFilter\nmetadata: {name: lua}\nspec: {}\n";
    let p = parse_text(text, Some("p.yaml".into()));
    assert!(p.resources.is_empty());
    let d = &p.diagnostics[0];
    assert_eq!(d.severity, Severity::Warning);
    assert!(d.message.contains("EnvoyFilter"), "{d}");
    assert!(d.message.contains("not enforced"), "{d}");
    assert_eq!(d.location.unwrap().line, 2);
}
