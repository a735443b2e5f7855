//! The CA server's own TLS certificate: issued from the CA it serves, for the DNS names clients
//! reach it by, and re-issued when half its life is gone or the CA changed.

use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use rcgen::{
    CertificateParams, DistinguishedName, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
    SanType,
};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::workload::random_serial;
use crate::{CaBundle, CaSource, IdentityError, BACKDATE};

/// Lifetime of the serving certificate.
const SERVING_TTL: Duration = Duration::from_secs(24 * 3600);

impl CaBundle {
    /// A server certificate for `names` (DNS names, or IP addresses), with the chain up to the
    /// root; returns the key rustls signs with and when the certificate expires.
    pub fn issue_serving(
        &self,
        names: &[String],
        ttl: Duration,
    ) -> Result<(CertifiedKey, SystemTime), IdentityError> {
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.subject_alt_names = names
            .iter()
            .map(|n| match n.parse::<IpAddr>() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => rcgen::string::Ia5String::try_from(n.as_str())
                    .map(SanType::DnsName)
                    .map_err(|e| IdentityError::sign("encode a DNS name", e)),
            })
            .collect::<Result<_, _>>()?;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(random_serial());
        let now = SystemTime::now();
        let not_after = now
            .checked_add(ttl)
            .map_or(self.signer_not_after, |t| t.min(self.signer_not_after));
        params.not_before = now.checked_sub(BACKDATE).unwrap_or(now).into();
        params.not_after = not_after.into();
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| IdentityError::sign("generate the serving key", e))?;
        let cert = params
            .signed_by(&key, &self.signer)
            .map_err(|e| IdentityError::sign("sign the serving certificate", e))?;
        let mut chain = vec![cert.der().clone()];
        chain.extend(self.chain.iter().cloned());
        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let signing = rustls::crypto::ring::sign::any_supported_type(&der)
            .map_err(|e| IdentityError::sign("load the serving key", e))?;
        Ok((CertifiedKey::new(chain, signing), not_after))
    }
}

struct Current {
    key: Arc<CertifiedKey>,
    renew_at: SystemTime,
    from: Arc<CaBundle>,
}

/// Resolves the serving certificate, re-issuing it lazily at handshake time.
pub struct ServingCert {
    source: Arc<dyn CaSource>,
    names: Vec<String>,
    current: Mutex<Current>,
}

impl std::fmt::Debug for ServingCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServingCert")
            .field("names", &self.names)
            .finish()
    }
}

impl ServingCert {
    /// Issues the first certificate for `names` from `source`'s CA.
    pub fn new(source: Arc<dyn CaSource>, names: Vec<String>) -> Result<Self, IdentityError> {
        let current = issue(&source.bundle(), &names)?;
        Ok(ServingCert {
            source,
            names,
            current: Mutex::new(current),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Current> {
        match self.current.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// The certificate to present now.
    pub fn current(&self) -> Arc<CertifiedKey> {
        let bundle = self.source.bundle();
        let mut cur = self.lock();
        let stale = SystemTime::now() >= cur.renew_at || !Arc::ptr_eq(&cur.from, &bundle);
        if stale {
            match issue(&bundle, &self.names) {
                Ok(next) => *cur = next,
                // The previous certificate may still be valid: keep serving it.
                Err(e) => {
                    tracing::warn!(error = %e, "cannot re-issue the CA's serving certificate")
                }
            }
        }
        cur.key.clone()
    }
}

fn issue(bundle: &Arc<CaBundle>, names: &[String]) -> Result<Current, IdentityError> {
    let (key, not_after) = bundle.issue_serving(names, SERVING_TTL)?;
    let now = SystemTime::now();
    let half = not_after.duration_since(now).unwrap_or_default() / 2;
    Ok(Current {
        key: Arc::new(key),
        renew_at: now + half,
        from: bundle.clone(),
    })
}

impl ResolvesServerCert for ServingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}
