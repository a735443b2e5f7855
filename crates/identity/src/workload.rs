//! Workload certificates: what Istio's CA issues to a proxy (empty subject, the SPIFFE id as a
//! critical URI SAN, server and client authentication).

use std::time::{Duration, SystemTime};

use rcgen::{
    CertificateParams, DistinguishedName, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
    SanType, SerialNumber,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::{CaBundle, IdentityError, SpiffeId};

/// How far back NotBefore goes, so that peers with a slightly slow clock accept a new
/// certificate at once (Istio's value).
pub const BACKDATE: Duration = Duration::from_secs(120);

/// A workload's certificate, its key and the roots its peers are checked against.
pub struct WorkloadCert {
    /// The identity in the certificate's URI SAN.
    pub id: SpiffeId,
    /// Leaf first, then the CA's `cert-chain.pem` (signing certificate, ..., root).
    pub chain: Vec<CertificateDer<'static>>,
    /// The leaf's private key (PKCS#8).
    pub key: PrivateKeyDer<'static>,
    /// Trusted roots (`root-cert.pem`).
    pub roots: Vec<CertificateDer<'static>>,
    /// Start of validity.
    pub not_before: SystemTime,
    /// End of validity.
    pub not_after: SystemTime,
}

impl Clone for WorkloadCert {
    fn clone(&self) -> Self {
        WorkloadCert {
            id: self.id.clone(),
            chain: self.chain.clone(),
            key: self.key.clone_key(),
            roots: self.roots.clone(),
            not_before: self.not_before,
            not_after: self.not_after,
        }
    }
}

impl std::fmt::Debug for WorkloadCert {
    // Never the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkloadCert")
            .field("id", &self.id.to_string())
            .field("chain", &self.chain.len())
            .field("roots", &self.roots.len())
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .finish()
    }
}

impl WorkloadCert {
    /// The chain as PEM (what a `cert-chain.pem` or SDS `default` resource carries).
    pub fn chain_pem(&self) -> String {
        pem_certs(&self.chain)
    }

    /// The roots as PEM (`root-cert.pem`, SDS `ROOTCA`).
    pub fn roots_pem(&self) -> String {
        pem_certs(&self.roots)
    }

    /// The private key as PKCS#8 PEM.
    pub fn key_pem(&self) -> String {
        pem_block("PRIVATE KEY", self.key.secret_der())
    }

    /// Total validity, NotBefore to NotAfter.
    pub fn lifetime(&self) -> Duration {
        self.not_after
            .duration_since(self.not_before)
            .unwrap_or_default()
    }
}

/// Certificates as concatenated PEM blocks.
pub fn pem_certs(certs: &[CertificateDer<'_>]) -> String {
    certs.iter().map(|c| pem_block("CERTIFICATE", c)).collect()
}

fn pem_block(label: &str, der: &[u8]) -> String {
    let config = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
    pem::encode_config(&pem::Pem::new(label, der.to_vec()), config)
}

impl CaBundle {
    /// Issues `id` a certificate for a new ECDSA P-256 key, valid from now - 2 min for `ttl`
    /// (never past the signing certificate's expiry).
    pub fn issue(&self, id: &SpiffeId, ttl: Duration) -> Result<WorkloadCert, IdentityError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| IdentityError::sign("generate a workload key", e))?;
        let (params, not_before, not_after) = self.workload_params(id, ttl)?;
        let leaf = params
            .signed_by(&key, &self.signer)
            .map_err(|e| IdentityError::sign("sign a workload certificate", e))?;
        let mut chain = vec![leaf.der().clone()];
        chain.extend(self.chain.iter().cloned());
        Ok(WorkloadCert {
            id: id.clone(),
            chain,
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            roots: self.roots.clone(),
            not_before,
            not_after,
        })
    }

    /// Signs the public key of a PEM certificate signing request for `id`, whatever identity
    /// the request asks for: a CA issues the authenticated caller's identity only. Returns the
    /// leaf followed by `cert-chain.pem`.
    pub fn sign_csr(
        &self,
        csr_pem: &str,
        id: &SpiffeId,
        ttl: Duration,
    ) -> Result<Vec<CertificateDer<'static>>, IdentityError> {
        let mut csr = rcgen::CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| IdentityError::Csr(e.to_string()))?;
        let (params, _, _) = self.workload_params(id, ttl)?;
        csr.params = params;
        let leaf = csr
            .signed_by(&self.signer)
            .map_err(|e| IdentityError::sign("sign a workload certificate", e))?;
        let mut chain = vec![leaf.der().clone()];
        chain.extend(self.chain.iter().cloned());
        Ok(chain)
    }

    fn workload_params(
        &self,
        id: &SpiffeId,
        ttl: Duration,
    ) -> Result<(CertificateParams, SystemTime, SystemTime), IdentityError> {
        let now = SystemTime::now();
        let not_before = now.checked_sub(BACKDATE).unwrap_or(now);
        let not_after = now
            .checked_add(ttl)
            .map_or(self.signer_not_after, |t| t.min(self.signer_not_after));
        if not_after <= now {
            return Err(IdentityError::sign(
                "issue a workload certificate",
                "the signing certificate has expired",
            ));
        }
        let uri = rcgen::string::Ia5String::try_from(id.to_string())
            .map_err(|e| IdentityError::sign("encode the SPIFFE id", e))?;
        let mut params = CertificateParams::default();
        // An empty subject makes rcgen mark the SAN extension critical (RFC 5280 4.2.1.6), as
        // Istio's workload certificates are.
        params.distinguished_name = DistinguishedName::new();
        params.subject_alt_names = vec![SanType::URI(uri)];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(random_serial());
        params.not_before = not_before.into();
        params.not_after = not_after.into();
        Ok((params, not_before, not_after))
    }
}

/// A positive 128-bit serial number (RFC 5280 asks for unpredictable serials).
pub(crate) fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01;
    SerialNumber::from_slice(&bytes)
}
