//! What a verified peer certificate must also satisfy: an accepted subject alternative name,
//! or a pinned certificate or SPKI hash (Istio's `subjectAltNames`, `verifyCertificateHash`,
//! `verifyCertificateSpki`); and the peer's names, for logs and identities.

use base64::Engine;
use rustls::pki_types::CertificateDer;
use rustls::{CertificateError, Error};
use x509_parser::extensions::GeneralName;

/// Checks beyond the chain of trust.
#[derive(Debug, Clone, Default)]
pub(crate) struct PeerChecks {
    subject_alt_names: Vec<String>,
    certificate_hashes: Vec<Vec<u8>>,
    spki_hashes: Vec<Vec<u8>>,
    /// Mesh peers: some URI SAN must start with one of these (`spiffe://<trust domain>/`).
    uri_prefixes: Vec<String>,
}

/// Hex (`AB:CD…` or `abcd…`) → bytes.
fn hex(s: &str) -> Option<Vec<u8>> {
    let digits: Vec<u8> = s.bytes().filter(|b| *b != b':').collect();
    if !digits.len().is_multiple_of(2) {
        return None;
    }
    digits
        .chunks(2)
        .map(|p| {
            let pair = std::str::from_utf8(p).ok()?;
            u8::from_str_radix(pair, 16).ok()
        })
        .collect()
}

impl PeerChecks {
    /// Checks from config strings; malformed hashes never match (validation reported them).
    pub(crate) fn new(sans: &[String], cert_hashes: &[String], spki: &[String]) -> Self {
        PeerChecks {
            subject_alt_names: sans.to_vec(),
            uri_prefixes: Vec::new(),
            certificate_hashes: cert_hashes.iter().filter_map(|h| hex(h)).collect(),
            spki_hashes: spki
                .iter()
                .filter_map(|h| base64::engine::general_purpose::STANDARD.decode(h).ok())
                .collect(),
        }
    }

    /// Checks for a mesh peer: a SPIFFE identity in one of `trust_domains`.
    pub(crate) fn mesh(trust_domains: &[String]) -> Self {
        PeerChecks {
            uri_prefixes: trust_domains
                .iter()
                .map(|td| format!("spiffe://{td}/"))
                .collect(),
            ..PeerChecks::default()
        }
    }

    /// Whether nothing beyond the chain is asked for.
    pub(crate) fn is_empty(&self) -> bool {
        self.uri_prefixes.is_empty()
            && self.subject_alt_names.is_empty()
            && self.certificate_hashes.is_empty()
            && self.spki_hashes.is_empty()
    }

    /// Checks an end-entity certificate (already verified against the CA, unless told to skip).
    pub(crate) fn verify(&self, cert: &CertificateDer<'_>) -> Result<(), Error> {
        if self.is_empty() {
            return Ok(());
        }
        let bad = |e: CertificateError| Error::InvalidCertificate(e);
        let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref())
            .map_err(|_| bad(CertificateError::BadEncoding))?;
        if !self.uri_prefixes.is_empty() {
            let names = alt_names(&parsed);
            let in_mesh = names.iter().any(|n| {
                self.uri_prefixes
                    .iter()
                    .any(|p| n.len() > p.len() && n.starts_with(p.as_str()))
            });
            if !in_mesh {
                return Err(bad(CertificateError::ApplicationVerificationFailure));
            }
        }
        if !self.subject_alt_names.is_empty() {
            let names = alt_names(&parsed);
            if !self
                .subject_alt_names
                .iter()
                .any(|want| names.iter().any(|n| n == want))
            {
                return Err(bad(CertificateError::ApplicationVerificationFailure));
            }
        }
        if !self.certificate_hashes.is_empty() || !self.spki_hashes.is_empty() {
            // Either kind of pin may match, as in Envoy.
            let cert_hash = ring::digest::digest(&ring::digest::SHA256, cert.as_ref());
            let spki_hash = ring::digest::digest(
                &ring::digest::SHA256,
                parsed.tbs_certificate.subject_pki.raw,
            );
            let pinned = self
                .certificate_hashes
                .iter()
                .any(|h| h.as_slice() == cert_hash.as_ref())
                || self
                    .spki_hashes
                    .iter()
                    .any(|h| h.as_slice() == spki_hash.as_ref());
            if !pinned {
                return Err(bad(CertificateError::ApplicationVerificationFailure));
            }
        }
        Ok(())
    }
}

/// The DNS, URI, IP and e-mail subject alternative names of a certificate.
fn alt_names(cert: &x509_parser::certificate::X509Certificate<'_>) -> Vec<String> {
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::DNSName(s) | GeneralName::URI(s) | GeneralName::RFC822Name(s) => {
                Some(s.to_string())
            }
            GeneralName::IPAddress(b) => match b.len() {
                4 => <[u8; 4]>::try_from(*b)
                    .ok()
                    .map(|a| std::net::IpAddr::from(a).to_string()),
                16 => <[u8; 16]>::try_from(*b)
                    .ok()
                    .map(|a| std::net::IpAddr::from(a).to_string()),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// The URI SANs of a DER certificate (SPIFFE identities), empty when it cannot be parsed.
pub fn uri_sans(cert: &CertificateDer<'_>) -> Vec<String> {
    let Ok((_, parsed)) = x509_parser::parse_x509_certificate(cert.as_ref()) else {
        return Vec::new();
    };
    let Ok(Some(san)) = parsed.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::URI(s) => Some(s.to_string()),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_pins_accept_colons_and_case() {
        assert_eq!(hex("AB:cd:01"), Some(vec![0xab, 0xcd, 0x01]));
        assert_eq!(hex("abc"), None);
        assert_eq!(hex("zz"), None);
    }
}
