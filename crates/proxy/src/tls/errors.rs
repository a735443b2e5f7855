//! Failed downstream handshakes: a reason for the metric, and a log line at most once per
//! reason and minute (a scanner or a misconfigured client must not flood the log).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sluice_telemetry::Telemetry;

/// How often one reason may be logged.
const LOG_EVERY: Duration = Duration::from_secs(60);

/// The metric reason of a rustls error.
pub fn reason(e: &rustls::Error) -> &'static str {
    use rustls::{Error, PeerIncompatible};
    match e {
        Error::NoCertificatesPresented => "no_client_certificate",
        Error::InvalidCertificate(_) => "bad_client_certificate",
        Error::PeerIncompatible(PeerIncompatible::ServerDoesNotSupportTls12Or13)
        | Error::PeerIncompatible(PeerIncompatible::Tls12NotOffered)
        | Error::PeerIncompatible(PeerIncompatible::Tls12NotOfferedOrEnabled)
        | Error::PeerIncompatible(PeerIncompatible::Tls13RequiredForQuic)
        | Error::PeerIncompatible(PeerIncompatible::SupportedVersionsExtensionRequired) => {
            "protocol_version"
        }
        Error::PeerIncompatible(PeerIncompatible::NoCipherSuitesInCommon) => "no_cipher_in_common",
        Error::PeerIncompatible(_) => "incompatible_peer",
        Error::AlertReceived(_) => "alert_received",
        Error::InvalidMessage(_) | Error::InappropriateHandshakeMessage { .. } => "invalid_message",
        _ => "handshake_failed",
    }
}

/// The reason of an I/O error ending a handshake (rustls errors travel inside I/O errors).
pub fn io_reason(e: &std::io::Error) -> &'static str {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(tls) => reason(tls),
        None => match e.kind() {
            std::io::ErrorKind::TimedOut => "timeout",
            std::io::ErrorKind::UnexpectedEof => "closed_by_client",
            _ => "connection_error",
        },
    }
}

/// Counts failures and rate-limits their log lines.
#[derive(Debug, Default)]
pub struct HandshakeFailures {
    last: Mutex<HashMap<&'static str, (Instant, u64)>>,
}

impl HandshakeFailures {
    /// Counts a failure in `sluice_tls_handshake_errors_total{reason}` and logs it unless the
    /// same reason was logged within the last minute (then says how many were not).
    pub fn record(
        &self,
        telemetry: &Telemetry,
        listener: &str,
        reason: &'static str,
        detail: &str,
    ) {
        telemetry.proxy().tls_handshake_error(reason);
        let now = Instant::now();
        let suppressed = {
            let mut last = match self.last.lock() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            match last.get_mut(reason) {
                Some((at, skipped)) if now.duration_since(*at) < LOG_EVERY => {
                    *skipped += 1;
                    return;
                }
                Some((at, skipped)) => {
                    *at = now;
                    std::mem::take(skipped)
                }
                None => {
                    last.insert(reason, (now, 0));
                    0
                }
            }
        };
        tracing::warn!(
            listener,
            reason,
            detail,
            not_logged_since_last = suppressed,
            "TLS handshake failed (logged once a minute per reason; see sluice_tls_handshake_errors_total)"
        );
    }
}
