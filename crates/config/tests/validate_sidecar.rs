//! Webhook validation of a Sidecar's egress listeners: Istio's rules for `port`, `bind` and
//! `captureMode` (port 0 is a unix domain socket, any other port an IP bind; distinct ports and
//! paths; one listener without a port, last).

mod common;

use common::{check_yaml as check, *};

fn sidecar(spec: &str) -> String {
    format!("apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata:\n  name: t\n  namespace: default\nspec:{spec}")
}

#[test]
fn egress_bind_and_capture_mode_rules() {
    let cases: &[Case] = &[
        (
            "valid binds",
            r#"
  egress:
  - {port: {number: 9080, protocol: HTTP, name: http}, bind: 127.0.0.2, captureMode: NONE, hosts: ["./*"]}
  - {port: {number: 0, protocol: HTTP, name: uds}, bind: "unix:///var/run/egress.sock", hosts: ["./*"]}
  - {captureMode: IPTABLES, hosts: ["*/*"]}
"#,
            &[],
        ),
        (
            "bad binds",
            r#"
  egress:
  - {port: {number: 9080, protocol: HTTP, name: http}, bind: "unix:///tmp/a.sock", hosts: ["./*"]}
  - {port: {number: 0, protocol: HTTP, name: uds}, bind: 127.0.0.1, hosts: ["./*"]}
  - {port: {number: 0, protocol: HTTP, name: uds2}, bind: "unix:///tmp/b.sock", captureMode: IPTABLES, hosts: ["./*"]}
  - {port: {number: 9080, protocol: HTTP, name: again}, hosts: ["./*"]}
  - {captureMode: SOMETIMES, hosts: ["*/*"]}
"#,
            &[
                (E, "spec.egress[0].bind"),
                (E, "spec.egress[1].bind"),
                (E, "spec.egress[2].captureMode"),
                (E, "spec.egress[3].port"),
                (E, "spec.egress[4].captureMode"),
            ],
        ),
        (
            "catch-all not last",
            r#"
  egress:
  - {hosts: ["*/*"]}
  - {port: {number: 9080, protocol: HTTP, name: http}, hosts: ["./*"]}
"#,
            &[(E, "spec.egress[0]")],
        ),
    ];
    for (name, spec, expected) in cases {
        check(name, &sidecar(spec), expected);
    }
}
