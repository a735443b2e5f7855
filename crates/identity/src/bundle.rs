//! Istio's plug-in CA layout (`cacerts`): loading and checking a signing certificate, its key,
//! the roots and the chain between them.
//!
//! The same four files come from a directory (`--ca DIR`, a mounted Secret) or from a Kubernetes
//! Secret's data. Every inconsistency is reported with the file at fault, because an operator
//! plugging in a CA usually got one file wrong, not the whole bundle.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::KeyPair;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;

use crate::IdentityError;

/// The signing (CA) certificate.
pub const CA_CERT: &str = "ca-cert.pem";
/// The signing certificate's private key (PKCS#8).
pub const CA_KEY: &str = "ca-key.pem";
/// One or more trusted roots.
pub const ROOT_CERT: &str = "root-cert.pem";
/// The signing certificate, intermediates, then a root.
pub const CERT_CHAIN: &str = "cert-chain.pem";
/// The four files of the layout, in the order they are checked.
pub const LAYOUT: [&str; 4] = [CA_CERT, CA_KEY, ROOT_CERT, CERT_CHAIN];

/// A checked signing certificate, its key, the chain up to a root and the roots.
pub struct CaBundle {
    pub(crate) signer: rcgen::Issuer<'static, KeyPair>,
    pub(crate) signer_not_after: SystemTime,
    pub(crate) chain: Vec<CertificateDer<'static>>,
    pub(crate) roots: Vec<CertificateDer<'static>>,
}

impl std::fmt::Debug for CaBundle {
    // Never the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaBundle")
            .field("chain", &self.chain.len())
            .field("roots", &self.roots.len())
            .field("signer_not_after", &self.signer_not_after)
            .finish()
    }
}

impl CaBundle {
    /// Loads `ca-cert.pem`, `ca-key.pem`, `root-cert.pem` and `cert-chain.pem` from `dir`.
    pub fn load_dir(dir: &Path) -> Result<Self, IdentityError> {
        let mut files = BTreeMap::new();
        for name in LAYOUT {
            let path = dir.join(name);
            match std::fs::read(&path) {
                Ok(bytes) => {
                    files.insert(name.to_string(), bytes);
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(IdentityError::Read {
                        path: path.display().to_string(),
                        reason: e.to_string(),
                    })
                }
            }
        }
        Self::from_files(&files, &dir.display().to_string())
    }

    /// Checks the layout's files given by name (a directory's files or a `cacerts` Secret's
    /// data); `origin` names where they came from in errors.
    pub fn from_files(
        files: &BTreeMap<String, Vec<u8>>,
        origin: &str,
    ) -> Result<Self, IdentityError> {
        let get = |file: &'static str| {
            files.get(file).ok_or_else(|| IdentityError::Missing {
                file,
                origin: origin.to_string(),
            })
        };
        let invalid = |file: &'static str, problem: String| IdentityError::Invalid {
            file,
            origin: origin.to_string(),
            problem,
        };
        let ca_certs = parse_certs(get(CA_CERT)?).map_err(|p| invalid(CA_CERT, p))?;
        let key = parse_key(get(CA_KEY)?).map_err(|p| invalid(CA_KEY, p))?;
        let roots = parse_certs(get(ROOT_CERT)?).map_err(|p| invalid(ROOT_CERT, p))?;
        let chain = parse_certs(get(CERT_CHAIN)?).map_err(|p| invalid(CERT_CHAIN, p))?;

        let signer_der = ca_certs[0].clone();
        let signer = parse_x509(&signer_der).map_err(|p| invalid(CA_CERT, p))?;
        check_ca(&signer).map_err(|p| invalid(CA_CERT, p))?;
        if !signer.validity().is_valid() {
            return Err(invalid(
                CA_CERT,
                format!(
                    "not valid now (valid from {} to {})",
                    signer.validity().not_before,
                    signer.validity().not_after
                ),
            ));
        }
        if signer.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(invalid(
                CA_KEY,
                format!("the key does not match the certificate of {CA_CERT}"),
            ));
        }
        for (i, root) in roots.iter().enumerate() {
            let parsed = parse_x509(root).map_err(|p| invalid(ROOT_CERT, p))?;
            check_ca(&parsed)
                .map_err(|p| invalid(ROOT_CERT, format!("certificate {}: {p}", i + 1)))?;
        }
        check_chain(&chain, &signer_der, &roots).map_err(|p| invalid(CERT_CHAIN, p))?;

        let signer_not_after = to_system_time(signer.validity().not_after.timestamp());
        let issuer = rcgen::Issuer::from_ca_cert_der(&signer_der, key)
            .map_err(|e| invalid(CA_CERT, format!("cannot sign with it: {e}")))?;
        Ok(CaBundle {
            signer: issuer,
            signer_not_after,
            chain,
            roots,
        })
    }

    /// The signing certificate, intermediates and the root, as in `cert-chain.pem`.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }

    /// The trusted roots of `root-cert.pem`.
    pub fn roots(&self) -> &[CertificateDer<'static>] {
        &self.roots
    }

    /// When the signing certificate expires; issued certificates never outlive it.
    pub fn signer_not_after(&self) -> SystemTime {
        self.signer_not_after
    }
}

/// Every certificate of a PEM file, at least one.
pub(crate) fn parse_certs(bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not PEM certificates: {e}"))?;
    if certs.is_empty() {
        return Err("no CERTIFICATE block found".into());
    }
    Ok(certs)
}

/// A private key ring can sign with.
pub(crate) fn parse_key(bytes: &[u8]) -> Result<KeyPair, String> {
    let der =
        PrivateKeyDer::from_pem_slice(bytes).map_err(|e| format!("no private key found: {e}"))?;
    if !matches!(der, PrivateKeyDer::Pkcs8(_)) {
        return Err(
            "the key is not PKCS#8 (`BEGIN PRIVATE KEY`); convert it with \
             `openssl pkcs8 -topk8 -nocrypt -in ca-key.pem`"
                .into(),
        );
    }
    KeyPair::try_from(&der).map_err(|e| format!("unsupported key: {e}"))
}

pub(crate) fn parse_x509<'a>(der: &'a CertificateDer<'_>) -> Result<X509Certificate<'a>, String> {
    X509Certificate::from_der(der)
        .map(|(_, c)| c)
        .map_err(|e| format!("not an X.509 certificate: {e}"))
}

/// A CA certificate has basicConstraints CA:TRUE and, when key usage is present, keyCertSign.
fn check_ca(cert: &X509Certificate<'_>) -> Result<(), String> {
    if !cert.is_ca() {
        return Err(format!(
            "`{}` is not a CA certificate (basicConstraints CA:TRUE missing)",
            cert.subject()
        ));
    }
    if let Ok(Some(ku)) = cert.key_usage() {
        if !ku.value.key_cert_sign() {
            return Err(format!(
                "`{}` may not sign certificates (keyUsage lacks keyCertSign)",
                cert.subject()
            ));
        }
    }
    Ok(())
}

/// `cert-chain.pem` starts with the signing certificate, each certificate is signed by the next,
/// and the last one is one of the roots.
fn check_chain(
    chain: &[CertificateDer<'static>],
    signer: &CertificateDer<'static>,
    roots: &[CertificateDer<'static>],
) -> Result<(), String> {
    if chain.first() != Some(signer) {
        return Err(format!("does not start with the certificate of {CA_CERT}"));
    }
    let parsed = chain
        .iter()
        .map(parse_x509)
        .collect::<Result<Vec<_>, _>>()?;
    for (i, pair) in parsed.windows(2).enumerate() {
        if pair[0]
            .verify_signature(Some(pair[1].public_key()))
            .is_err()
        {
            return Err(format!(
                "certificate {} (`{}`) is not signed by certificate {} (`{}`)",
                i + 1,
                pair[0].subject(),
                i + 2,
                pair[1].subject()
            ));
        }
    }
    match chain.last() {
        Some(last) if roots.contains(last) => Ok(()),
        _ => Err(format!(
            "does not end at a root: its last certificate is not in {ROOT_CERT}"
        )),
    }
}

pub(crate) fn to_system_time(unix: i64) -> SystemTime {
    match u64::try_from(unix) {
        Ok(secs) => UNIX_EPOCH + Duration::from_secs(secs),
        Err(_) => UNIX_EPOCH,
    }
}
