//! Loading and checking Istio's plug-in CA layout.
#![allow(clippy::unwrap_used)]

mod support;

use sluice_identity::init::{init_root, InitOptions, ROOT_KEY};
use sluice_identity::{CaBundle, IdentityError, CA_CERT, CA_KEY, CERT_CHAIN, ROOT_CERT};

use support::{files, opts, read, root_and_intermediate};

fn problem(e: IdentityError) -> (String, String) {
    match e {
        IdentityError::Invalid { file, problem, .. } => (file.to_string(), problem),
        IdentityError::Missing { file, .. } => (file.to_string(), "missing".into()),
        other => panic!("unexpected error {other}"),
    }
}

#[test]
fn root_and_intermediate_layouts_load() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, inter) = root_and_intermediate(tmp.path());
    let r = CaBundle::load_dir(&root).unwrap();
    assert_eq!(r.chain().len(), 1);
    assert_eq!(r.chain(), r.roots());
    let i = CaBundle::load_dir(&inter).unwrap();
    assert_eq!(i.chain().len(), 2);
    assert_eq!(i.chain()[1], r.roots()[0]);
    assert_eq!(i.roots(), r.roots());
    // The intermediate never outlives its root.
    assert!(i.signer_not_after() <= r.signer_not_after());
    // A Secret's data gives the same bundle.
    let s = CaBundle::from_files(&files(&inter), "secret istio-system/cacerts").unwrap();
    assert_eq!(s.chain(), i.chain());
}

#[cfg(unix)]
#[test]
fn keys_are_private_and_existing_files_are_kept() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let (root, inter) = root_and_intermediate(tmp.path());
    for (dir, name) in [(&root, CA_KEY), (&root, ROOT_KEY), (&inter, CA_KEY)] {
        let mode = std::fs::metadata(dir.join(name))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{name}");
    }
    let mode = std::fs::metadata(root.join(CA_CERT))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o644);

    let before = read(&root, CA_CERT);
    let e = init_root(&root, &opts()).unwrap_err();
    assert!(e.to_string().contains("already exists"), "{e}");
    assert_eq!(read(&root, CA_CERT), before);
    let forced = InitOptions {
        force: true,
        ..opts()
    };
    init_root(&root, &forced).unwrap();
    assert_ne!(read(&root, CA_CERT), before);
}

#[test]
fn a_missing_file_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, _) = root_and_intermediate(tmp.path());
    for name in [CA_CERT, CA_KEY, ROOT_CERT, CERT_CHAIN] {
        let mut f = files(&root);
        f.remove(name);
        let e = CaBundle::from_files(&f, "x").unwrap_err();
        assert_eq!(problem(e), (name.to_string(), "missing".to_string()));
    }
}

#[test]
fn a_key_of_another_ca_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, inter) = root_and_intermediate(tmp.path());
    let mut f = files(&inter);
    f.insert(CA_KEY.into(), read(&root, CA_KEY));
    let (file, p) = problem(CaBundle::from_files(&f, "x").unwrap_err());
    assert_eq!(file, CA_KEY);
    assert!(p.contains("does not match"), "{p}");
}

#[test]
fn a_chain_that_does_not_end_at_a_root_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, inter) = root_and_intermediate(tmp.path());
    let other = tmp.path().join("other");
    init_root(&other, &opts()).unwrap();

    // The chain stops at the intermediate.
    let mut f = files(&inter);
    f.insert(CERT_CHAIN.into(), read(&inter, CA_CERT));
    let (file, p) = problem(CaBundle::from_files(&f, "x").unwrap_err());
    assert_eq!(file, CERT_CHAIN);
    assert!(p.contains("does not end at a root"), "{p}");

    // root-cert.pem is another CA's root.
    let mut f = files(&inter);
    f.insert(ROOT_CERT.into(), read(&other, ROOT_CERT));
    let (file, p) = problem(CaBundle::from_files(&f, "x").unwrap_err());
    assert_eq!(file, CERT_CHAIN);
    assert!(p.contains("does not end at a root"), "{p}");

    // The chain's root did not sign the intermediate.
    let mut f = files(&inter);
    let mut chain = read(&inter, CA_CERT);
    chain.extend(read(&other, ROOT_CERT));
    f.insert(CERT_CHAIN.into(), chain);
    let (file, p) = problem(CaBundle::from_files(&f, "x").unwrap_err());
    assert_eq!(file, CERT_CHAIN);
    assert!(p.contains("is not signed by"), "{p}");

    // The chain starts elsewhere.
    let mut f = files(&inter);
    f.insert(CERT_CHAIN.into(), read(&other, ROOT_CERT));
    let (file, p) = problem(CaBundle::from_files(&f, "x").unwrap_err());
    assert_eq!(file, CERT_CHAIN);
    assert!(p.contains("does not start with"), "{p}");
}

#[test]
fn a_workload_certificate_is_not_a_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, _) = root_and_intermediate(tmp.path());
    let ca = CaBundle::load_dir(&root).unwrap();
    let id = sluice_identity::SpiffeId::new("cluster.local", "default", "sleep");
    let leaf = ca.issue(&id, std::time::Duration::from_secs(3600)).unwrap();
    let mut f = files(&root);
    let leaf_pem = sluice_identity::pem_certs(&leaf.chain[..1]);
    f.insert(CA_CERT.into(), leaf_pem.clone().into_bytes());
    f.insert(CA_KEY.into(), leaf.key_pem().into_bytes());
    let (file, p) = problem(CaBundle::from_files(&f, "x").unwrap_err());
    assert_eq!(file, CA_CERT);
    assert!(p.contains("not a CA certificate"), "{p}");
}

#[test]
fn garbage_and_non_pkcs8_keys_are_explained() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, _) = root_and_intermediate(tmp.path());
    let mut f = files(&root);
    f.insert(ROOT_CERT.into(), b"not pem".to_vec());
    let (file, p) = problem(CaBundle::from_files(&f, "x").unwrap_err());
    assert_eq!(file, ROOT_CERT);
    assert!(p.contains("no CERTIFICATE"), "{p}");

    let mut f = files(&root);
    let sec1 = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIA==\n-----END EC PRIVATE KEY-----\n";
    f.insert(CA_KEY.into(), sec1.as_bytes().to_vec());
    let (file, p) = problem(CaBundle::from_files(&f, "x").unwrap_err());
    assert_eq!(file, CA_KEY);
    assert!(p.contains("PKCS#8"), "{p}");
}

#[test]
fn an_intermediate_needs_the_roots_key() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, _) = root_and_intermediate(tmp.path());
    std::fs::remove_file(root.join(ROOT_KEY)).unwrap();
    let e = sluice_identity::init::init_intermediate(&tmp.path().join("i2"), &root, &opts())
        .unwrap_err();
    assert_eq!(problem(e).0, ROOT_KEY);
}
