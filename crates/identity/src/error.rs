//! What can go wrong with identities, CA material and issuance.

/// Why an identity could not be parsed, a CA bundle loaded or a certificate issued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// A SPIFFE id did not have the `spiffe://<td>/ns/<ns>/sa/<sa>` shape.
    #[error("`{uri}` is not a SPIFFE workload id (spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>): {reason}")]
    SpiffeId {
        /// The text that was parsed.
        uri: String,
        /// What was wrong.
        reason: &'static str,
    },
    /// A file of the CA layout is absent.
    #[error("{file} is missing from the CA bundle {origin}")]
    Missing {
        /// The file name (`ca-cert.pem`, ...).
        file: &'static str,
        /// The directory or Secret.
        origin: String,
    },
    /// A file of the CA layout could not be read.
    #[error("cannot read {path}: {reason}")]
    Read {
        /// The path.
        path: String,
        /// The I/O error.
        reason: String,
    },
    /// A file of the CA layout is present but unusable or inconsistent with the others.
    #[error("{file} in {origin}: {problem}")]
    Invalid {
        /// The file name (`ca-cert.pem`, ...).
        file: &'static str,
        /// The directory or Secret.
        origin: String,
        /// What the operator should check.
        problem: String,
    },
    /// Certificate generation or signing failed.
    #[error("cannot {what}: {reason}")]
    Sign {
        /// What was being made.
        what: &'static str,
        /// The underlying error.
        reason: String,
    },
    /// A certificate signing request was malformed or its signature did not verify.
    #[error("invalid certificate signing request: {0}")]
    Csr(String),
    /// Writing a CA directory failed.
    #[error("cannot write {path}: {reason}")]
    Write {
        /// The path.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// A remote CA refused or failed a request.
    #[error("certificate authority {address}: {reason}")]
    Remote {
        /// The CA's address.
        address: String,
        /// What went wrong.
        reason: String,
    },
}

impl IdentityError {
    pub(crate) fn sign(what: &'static str, e: impl std::fmt::Display) -> Self {
        IdentityError::Sign {
            what,
            reason: e.to_string(),
        }
    }
}
