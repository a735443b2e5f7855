//! New CA material in Istio's plug-in layout: a self-signed root, or an intermediate signed by
//! an existing root (what `sluice ca init` writes).
//!
//! A root directory holds `ca-cert.pem` = `root-cert.pem`, `cert-chain.pem` = the root, and the
//! key twice: `ca-key.pem` (the layout's signing key) and `root-key.pem`, the name Istio's
//! `tools/certs` Makefile gives a root's key. An intermediate is signed by the `root-cert.pem` +
//! `root-key.pem` pair of a directory, so either a root written here or one made by Istio's
//! Makefile serves.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair, KeyUsagePurpose,
};

use crate::bundle::{parse_certs, parse_key, parse_x509, to_system_time};
use crate::workload::random_serial;
use crate::{IdentityError, CA_CERT, CA_KEY, CERT_CHAIN, ROOT_CERT};

/// The root's key in Istio's `tools/certs` layout.
pub const ROOT_KEY: &str = "root-key.pem";
/// A root's default validity (Istio's self-signed root: 10 years).
pub const ROOT_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// An intermediate's default validity (5 years).
pub const INTERMEDIATE_VALIDITY: Duration = Duration::from_secs(5 * 365 * 24 * 3600);

/// What `sluice ca init` makes.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// Organization of the CA certificate's subject (Istio puts the trust domain there).
    pub trust_domain: String,
    /// Validity; a root's or intermediate's default when absent.
    pub validity: Option<Duration>,
    /// Replace files that already exist.
    pub force: bool,
}

/// One file to write: name, content, whether it holds a private key (mode 0600).
type OutFile = (&'static str, String, bool);

/// Writes a new self-signed root (ECDSA P-256) in the layout into `dir`; returns the paths.
pub fn init_root(dir: &Path, opts: &InitOptions) -> Result<Vec<PathBuf>, IdentityError> {
    let files = new_root(opts)?;
    write_files(dir, &files, opts.force)
}

/// Writes into `dir` a new intermediate (ECDSA P-256) signed by the `root-cert.pem` +
/// `root-key.pem` of `root_dir`, with `cert-chain.pem` = intermediate + root.
pub fn init_intermediate(
    dir: &Path,
    root_dir: &Path,
    opts: &InitOptions,
) -> Result<Vec<PathBuf>, IdentityError> {
    let files = new_intermediate(root_dir, opts)?;
    write_files(dir, &files, opts.force)
}

fn ca_params(
    opts: &InitOptions,
    common_name: &str,
    is_ca: IsCa,
    validity: Duration,
) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, opts.trust_domain.as_str());
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    params.is_ca = is_ca;
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.serial_number = Some(random_serial());
    let now = SystemTime::now();
    params.not_before = now.into();
    params.not_after = now.checked_add(validity).unwrap_or(now).into();
    params
}

fn new_key() -> Result<KeyPair, IdentityError> {
    KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| IdentityError::sign("generate a CA key", e))
}

fn new_root(opts: &InitOptions) -> Result<Vec<OutFile>, IdentityError> {
    let validity = opts.validity.unwrap_or(ROOT_VALIDITY);
    let params = ca_params(
        opts,
        "sluice root CA",
        IsCa::Ca(BasicConstraints::Unconstrained),
        validity,
    );
    let key = new_key()?;
    let cert = params
        .self_signed(&key)
        .map_err(|e| IdentityError::sign("self-sign the root", e))?;
    let cert_pem = cert.pem();
    let key_pem = key.serialize_pem();
    Ok(vec![
        (ROOT_CERT, cert_pem.clone(), false),
        (CERT_CHAIN, cert_pem.clone(), false),
        (CA_CERT, cert_pem, false),
        (ROOT_KEY, key_pem.clone(), true),
        (CA_KEY, key_pem, true),
    ])
}

fn new_intermediate(root_dir: &Path, opts: &InitOptions) -> Result<Vec<OutFile>, IdentityError> {
    let origin = root_dir.display().to_string();
    let read = |file: &'static str| {
        let path = root_dir.join(file);
        std::fs::read(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                IdentityError::Missing {
                    file,
                    origin: origin.clone(),
                }
            } else {
                IdentityError::Read {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                }
            }
        })
    };
    let invalid = |file: &'static str, problem: String| IdentityError::Invalid {
        file,
        origin: origin.clone(),
        problem,
    };
    let root_pem_bytes = read(ROOT_CERT)?;
    let roots = parse_certs(&root_pem_bytes).map_err(|p| invalid(ROOT_CERT, p))?;
    let root_key = parse_key(&read(ROOT_KEY)?).map_err(|p| invalid(ROOT_KEY, p))?;
    let root = parse_x509(&roots[0]).map_err(|p| invalid(ROOT_CERT, p))?;
    if root.public_key().subject_public_key.data.as_ref() != root_key.public_key_raw() {
        return Err(invalid(
            ROOT_KEY,
            format!("the key does not match the first certificate of {ROOT_CERT}"),
        ));
    }
    let root_not_after = to_system_time(root.validity().not_after.timestamp());
    let issuer = rcgen::Issuer::from_ca_cert_der(&roots[0], root_key)
        .map_err(|e| invalid(ROOT_CERT, format!("cannot sign with it: {e}")))?;

    let mut params = ca_params(
        opts,
        "sluice intermediate CA",
        // Signs workload certificates only, never further CAs.
        IsCa::Ca(BasicConstraints::Constrained(0)),
        opts.validity.unwrap_or(INTERMEDIATE_VALIDITY),
    );
    if SystemTime::from(params.not_after) > root_not_after {
        params.not_after = root_not_after.into();
    }
    params.use_authority_key_identifier_extension = true;
    let key = new_key()?;
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(|e| IdentityError::sign("sign the intermediate", e))?;
    let cert_pem = cert.pem();
    let root_pem = crate::pem_certs(&roots[..1]);
    Ok(vec![
        (
            ROOT_CERT,
            String::from_utf8_lossy(&root_pem_bytes).into_owned(),
            false,
        ),
        (CERT_CHAIN, format!("{cert_pem}{root_pem}"), false),
        (CA_CERT, cert_pem, false),
        (CA_KEY, key.serialize_pem(), true),
    ])
}

/// Refuses to replace existing files unless `force`, then writes each file through a temporary
/// name and a rename, so a watcher never reads half a file.
fn write_files(dir: &Path, files: &[OutFile], force: bool) -> Result<Vec<PathBuf>, IdentityError> {
    let werr = |path: &Path, e: std::io::Error| IdentityError::Write {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    if !force {
        if let Some((name, _, _)) = files.iter().find(|(n, _, _)| dir.join(n).exists()) {
            let path = dir.join(name);
            return Err(IdentityError::Write {
                path: path.display().to_string(),
                reason: "it already exists (--force replaces it)".into(),
            });
        }
    }
    std::fs::create_dir_all(dir).map_err(|e| werr(dir, e))?;
    let mut written = Vec::new();
    for (name, content, secret) in files {
        let path = dir.join(name);
        let tmp = dir.join(format!(".{name}.tmp"));
        write_private(&tmp, content.as_bytes(), *secret).map_err(|e| werr(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| werr(&path, e))?;
        written.push(path);
    }
    Ok(written)
}

/// Creates the file with mode 0600 from the start when it holds a key (no window where it is
/// world-readable).
fn write_private(path: &Path, bytes: &[u8], secret: bool) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    // `create_new`: a leftover temporary file (removed just before) must not keep its old,
    // possibly wider, mode.
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, if secret { 0o600 } else { 0o644 });
    #[cfg(not(unix))]
    let _ = secret;
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut f = opts.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}
