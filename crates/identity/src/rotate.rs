//! Keeping a workload certificate fresh: issue one at once, re-issue when less than half of its
//! life remains (Istio's `SECRET_GRACE_PERIOD_RATIO` 0.5 with ±1% jitter, so that proxies
//! started together do not all renew at the same instant), and at once when the CA changes.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use crate::{CaBundle, IdentityError, SpiffeId, WorkloadCert};

/// Lifetime of a workload certificate issued by a local CA (Istio's `SECRET_TTL`).
pub const DEFAULT_TTL: Duration = Duration::from_secs(24 * 3600);
/// Share of the lifetime left when a certificate is renewed.
const GRACE_RATIO: f64 = 0.5;
/// Random spread of [`GRACE_RATIO`].
const GRACE_JITTER: f64 = 0.01;
/// How often the CA's files are checked for changes.
pub(crate) const CA_POLL: Duration = Duration::from_secs(5);
/// First wait after a failed issuance; doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_secs(1);
/// Longest wait between attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Shortest wait between two issuances, so that a CA about to expire (which only grants
/// certificates up to its own expiry) does not make the loop spin.
const MIN_RENEW: Duration = Duration::from_secs(1);

/// What an issuance returns: a boxed future, so that `dyn Issuer` works without `async-trait`.
pub type IssueFuture<'a> =
    Pin<Box<dyn Future<Output = Result<WorkloadCert, IdentityError>> + Send + 'a>>;

/// Something that issues workload certificates: a local CA or a remote one.
pub trait Issuer: Send + Sync {
    /// A new certificate (and key) for `id`.
    fn issue<'a>(&'a self, id: &'a SpiffeId) -> IssueFuture<'a>;

    /// Re-reads the issuer's CA material; true when it changed, so certificates issued from
    /// the old one should be replaced now.
    fn refresh(&self) -> bool {
        false
    }
}

impl Issuer for CaBundle {
    fn issue<'a>(&'a self, id: &'a SpiffeId) -> IssueFuture<'a> {
        Box::pin(std::future::ready(CaBundle::issue(self, id, DEFAULT_TTL)))
    }
}

/// Issues `id` a certificate at once and keeps renewing it for ever, handing each one to
/// `on_new`: when less than half its life remains (±1%), or when the issuer's CA changes.
/// Failures are retried with a backoff from 1 s doubling up to 5 min.
pub async fn rotate(issuer: Arc<dyn Issuer>, id: SpiffeId, on_new: impl Fn(WorkloadCert)) {
    loop {
        let cert = issue_with_retry(issuer.as_ref(), &id).await;
        let renew_in = renew_delay(&cert, jittered_ratio()).max(MIN_RENEW);
        tracing::info!(
            identity = %id,
            expires_in_s = cert.not_after.duration_since(SystemTime::now()).unwrap_or_default().as_secs(),
            renew_in_s = renew_in.as_secs(),
            "workload certificate issued"
        );
        on_new(cert);
        let deadline = Instant::now() + renew_in;
        loop {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            tokio::time::sleep_until(deadline.min(now + CA_POLL)).await;
            if issuer.refresh() {
                break;
            }
        }
    }
}

async fn issue_with_retry(issuer: &dyn Issuer, id: &SpiffeId) -> WorkloadCert {
    let mut backoff = MIN_BACKOFF;
    loop {
        match issuer.issue(id).await {
            Ok(cert) => return cert,
            Err(e) => {
                tracing::warn!(identity = %id, error = %e, retry_in_ms = backoff.as_millis() as u64, "cannot issue the workload certificate");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

fn jittered_ratio() -> f64 {
    GRACE_RATIO + (rand::random::<f64>() * 2.0 - 1.0) * GRACE_JITTER
}

/// Time from now until less than `ratio` of the certificate's life remains.
fn renew_delay(cert: &WorkloadCert, ratio: f64) -> Duration {
    let grace = cert.lifetime().mul_f64(ratio.clamp(0.0, 1.0));
    let renew_at = cert.not_after.checked_sub(grace).unwrap_or(cert.not_before);
    renew_at
        .duration_since(SystemTime::now())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use rustls_pki_types::PrivateKeyDer;

    fn cert(not_before: SystemTime, not_after: SystemTime) -> WorkloadCert {
        WorkloadCert {
            id: SpiffeId::new("cluster.local", "default", "a"),
            chain: vec![],
            key: PrivateKeyDer::Pkcs8(Vec::new().into()),
            roots: vec![],
            not_before,
            not_after,
        }
    }

    #[test]
    fn renews_at_the_grace_ratio_of_the_lifetime() {
        let now = SystemTime::now();
        let c = cert(now, now + Duration::from_secs(1000));
        let d = renew_delay(&c, 0.5);
        assert!(
            d <= Duration::from_secs(500) && d > Duration::from_secs(490),
            "{d:?}"
        );
        let d = renew_delay(&c, 0.51);
        assert!(
            d <= Duration::from_secs(490) && d > Duration::from_secs(480),
            "{d:?}"
        );
        // Already past the renewal point: at once.
        let old = cert(
            now - Duration::from_secs(900),
            now + Duration::from_secs(100),
        );
        assert_eq!(renew_delay(&old, 0.5), Duration::ZERO);
    }

    #[test]
    fn jitter_stays_within_one_percent() {
        for _ in 0..1000 {
            let r = jittered_ratio();
            assert!((0.49..=0.51).contains(&r), "{r}");
        }
    }
}
