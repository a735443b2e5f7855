//! Rotation on tokio's paused clock: renewal at half-life, on a CA change, and after failures.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sluice_identity::init::{init_root, InitOptions};
use sluice_identity::{
    rotate, CaBundle, CaDir, IdentityError, IssueFuture, Issuer, SpiffeId, WorkloadCert,
    DEFAULT_TTL,
};
use tokio::sync::mpsc;
use tokio::time::Instant;

fn id() -> SpiffeId {
    SpiffeId::new("cluster.local", "default", "reviews")
}

fn start(issuer: Arc<dyn Issuer>) -> mpsc::UnboundedReceiver<(Instant, WorkloadCert)> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(rotate(issuer, id(), move |c| {
        let _ = tx.send((Instant::now(), c));
    }));
    rx
}

#[tokio::test(start_paused = true)]
async fn renews_when_half_the_life_is_left() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, inter) = support::root_and_intermediate(tmp.path());
    let ca: Arc<dyn Issuer> = Arc::new(CaBundle::load_dir(&inter).unwrap());
    let mut rx = start(ca);
    let (t0, first) = rx.recv().await.unwrap();
    let (t1, second) = rx.recv().await.unwrap();
    assert_ne!(first.chain[0], second.chain[0]);
    // 24 h plus the 2 min backdate, renewed with 50 % (± 1 %) left: about 11 h 59 min after
    // issuance.
    let lifetime = DEFAULT_TTL + Duration::from_secs(120);
    let elapsed = t1 - t0;
    let expected = lifetime / 2 - Duration::from_secs(120);
    let spread = lifetime.mul_f64(0.01) + Duration::from_secs(1);
    assert!(
        elapsed + spread >= expected && elapsed <= expected + spread,
        "renewed after {elapsed:?}, expected {expected:?} ± {spread:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_new_ca_in_the_directory_reissues_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ca");
    init_root(&dir, &support::opts()).unwrap();
    let issuer = Arc::new(CaDir::open(&dir, DEFAULT_TTL).unwrap());
    let mut rx = start(issuer.clone());
    let (t0, first) = rx.recv().await.unwrap();

    let forced = InitOptions {
        force: true,
        ..support::opts()
    };
    init_root(&dir, &forced).unwrap();
    let (t1, second) = rx.recv().await.unwrap();
    assert!(t1 - t0 <= Duration::from_secs(10), "{:?}", t1 - t0);
    assert_ne!(first.roots, second.roots);
    assert_eq!(second.roots, CaBundle::load_dir(&dir).unwrap().roots());
    assert_eq!(issuer.bundle().roots(), second.roots.as_slice());
}

#[tokio::test(start_paused = true)]
async fn an_unusable_ca_change_keeps_the_previous_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ca");
    init_root(&dir, &support::opts()).unwrap();
    let issuer = CaDir::open(&dir, DEFAULT_TTL).unwrap();
    let before = issuer.bundle().roots().to_vec();
    std::fs::write(dir.join(sluice_identity::CA_KEY), b"junk").unwrap();
    assert!(!issuer.refresh());
    assert_eq!(issuer.bundle().roots(), before.as_slice());
    // Unchanged files: nothing to do.
    assert!(!issuer.refresh());
}

/// Fails the first `failures` issuances.
struct Flaky {
    inner: CaBundle,
    failures: usize,
    calls: AtomicUsize,
}

impl Issuer for Flaky {
    fn issue<'a>(&'a self, id: &'a SpiffeId) -> IssueFuture<'a> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        if n < self.failures {
            return Box::pin(std::future::ready(Err(IdentityError::Remote {
                address: "test".into(),
                reason: "unavailable".into(),
            })));
        }
        Issuer::issue(&self.inner, id)
    }
}

#[tokio::test(start_paused = true)]
async fn failures_are_retried_with_a_growing_backoff() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, inter) = support::root_and_intermediate(tmp.path());
    let flaky = Arc::new(Flaky {
        inner: CaBundle::load_dir(&inter).unwrap(),
        failures: 3,
        calls: AtomicUsize::new(0),
    });
    let start_at = Instant::now();
    let mut rx = start(flaky.clone());
    let (t0, cert) = rx.recv().await.unwrap();
    // 1 s + 2 s + 4 s of backoff.
    assert_eq!(t0 - start_at, Duration::from_secs(7));
    assert_eq!(flaky.calls.load(Ordering::SeqCst), 4);
    assert_eq!(cert.id, id());
}
