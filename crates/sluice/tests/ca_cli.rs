//! `sluice ca init` as an operator runs it, checked with openssl.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use sluice_identity::{CaBundle, SpiffeId};

fn sluice() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
}

fn run(args: &[&str]) -> std::process::Output {
    sluice().args(args).output().unwrap()
}

fn openssl_verify(root: &Path, untrusted: &Path, leaf: &Path) -> String {
    let out = Command::new("openssl")
        .arg("verify")
        .arg("-CAfile")
        .arg(root)
        .arg("-untrusted")
        .arg(untrusted)
        .arg(leaf)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "openssl verify failed: {text}");
    text
}

#[test]
fn a_root_then_an_intermediate_issue_certificates_openssl_accepts() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let inter = tmp.path().join("cluster1");
    let out = run(&["ca", "init", root.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("root CA"));
    let out = run(&[
        "ca",
        "init",
        inter.to_str().unwrap(),
        "--root",
        root.to_str().unwrap(),
        "--trust-domain",
        "cluster.local",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Istio's plug-in layout, checked by openssl too: cert-chain.pem verifies to the root.
    openssl_verify(
        &inter.join("root-cert.pem"),
        &inter.join("ca-cert.pem"),
        &inter.join("cert-chain.pem"),
    );

    let ca = CaBundle::load_dir(&inter).unwrap();
    let id = SpiffeId::new("cluster.local", "default", "sleep");
    let wc = ca.issue(&id, Duration::from_secs(3600)).unwrap();
    let leaf = tmp.path().join("leaf.pem");
    std::fs::write(&leaf, sluice_identity::pem_certs(&wc.chain[..1])).unwrap();
    let text = openssl_verify(
        &inter.join("root-cert.pem"),
        &inter.join("ca-cert.pem"),
        &leaf,
    );
    assert!(text.contains("OK"), "{text}");
    let shown = Command::new("openssl")
        .args([
            "x509",
            "-noout",
            "-ext",
            "subjectAltName,extendedKeyUsage",
            "-in",
        ])
        .arg(&leaf)
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.contains("critical"), "{shown}");
    assert!(
        shown.contains("URI:spiffe://cluster.local/ns/default/sa/sleep"),
        "{shown}"
    );
    assert!(
        shown.contains("TLS Web Server Authentication, TLS Web Client Authentication"),
        "{shown}"
    );
}

#[test]
fn existing_files_are_kept_unless_forced() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ca");
    let d = dir.to_str().unwrap();
    assert!(run(&["ca", "init", d]).status.success());
    let before = std::fs::read(dir.join("ca-key.pem")).unwrap();
    let out = run(&["ca", "init", d]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--force"));
    assert_eq!(std::fs::read(dir.join("ca-key.pem")).unwrap(), before);
    assert!(run(&["ca", "init", d, "--force"]).status.success());
    assert_ne!(std::fs::read(dir.join("ca-key.pem")).unwrap(), before);
}

#[test]
fn an_intermediate_without_a_root_key_names_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let out = run(&[
        "ca",
        "init",
        tmp.path().join("i").to_str().unwrap(),
        "--root",
        tmp.path().to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("root-cert.pem is missing"));
}

#[test]
fn run_with_a_ca_directory_issues_the_proxys_identity() {
    use std::io::{BufRead, BufReader};
    let tmp = tempfile::tempdir().unwrap();
    let ca = tmp.path().join("ca");
    let config = tmp.path().join("config");
    std::fs::create_dir(&config).unwrap();
    assert!(run(&["ca", "init", ca.to_str().unwrap()]).status.success());

    // A CA that cannot be used stops the start, naming the file.
    let out = run(&[
        "run",
        config.to_str().unwrap(),
        "--admin",
        "127.0.0.1:0",
        "--no-watch",
        "--ca",
        tmp.path().to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("ca-cert.pem is missing"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut child = sluice()
        .args([
            "run",
            "--admin",
            "127.0.0.1:0",
            "--no-watch",
            "--no-gateway",
        ])
        .arg(&config)
        .arg("--ca")
        .arg(&ca)
        .args(["--namespace", "bookinfo", "--service-account", "reviews"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut seen = Vec::new();
    let found = loop {
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(line) if line.contains("workload certificate issued") => break Some(line),
            Ok(line) => seen.push(line),
            Err(_) => break None,
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    let line = found.unwrap_or_else(|| panic!("no certificate issued: {seen:#?}"));
    assert!(
        line.contains("spiffe://cluster.local/ns/bookinfo/sa/reviews"),
        "{line}"
    );
}
