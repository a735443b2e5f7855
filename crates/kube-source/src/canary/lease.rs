//! Leader election through a `coordination.k8s.io/v1` Lease, as client-go's leaderelection
//! does it: the holder renews `renewTime` every third of the lease duration; another proxy takes
//! over once the record it observes has not changed for a whole lease duration (judged on its
//! own clock, so clocks need not agree). Every write carries the resourceVersion read, so two
//! proxies racing for an expired lease cannot both win: the API server refuses the second
//! (409 Conflict).

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use kube::Client;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// The Lease's default name.
pub const LEASE_NAME: &str = "sluice-canary-leader";

/// Which Lease, as whom, for how long.
#[derive(Debug, Clone)]
pub struct LeaseSettings {
    /// The Lease's name.
    pub name: String,
    /// Its namespace (the proxy's own).
    pub namespace: String,
    /// `holderIdentity`: the pod name.
    pub identity: String,
    /// `leaseDurationSeconds` (whole seconds, at least 1); renewed every third of it.
    pub duration: Duration,
}

impl LeaseSettings {
    fn duration_secs(&self) -> i32 {
        self.duration.as_secs().clamp(1, i32::MAX as u64) as i32
    }

    fn renew_every(&self) -> Duration {
        Duration::from_secs(self.duration_secs() as u64) / 3
    }
}

/// What the elector remembers between rounds.
#[derive(Default)]
struct Observed {
    /// The other holder's record (holder and renew time) and when it was first seen unchanged.
    record: Option<(String, Instant)>,
    /// When this proxy last renewed successfully.
    renewed: Option<Instant>,
}

/// Starts electing; the receiver says whether this proxy leads now.
pub fn spawn(client: Client, settings: LeaseSettings) -> (JoinHandle<()>, watch::Receiver<bool>) {
    let (tx, rx) = watch::channel(false);
    let api: Api<Lease> = Api::namespaced(client, &settings.namespace);
    let task = tokio::spawn(run(api, settings, tx));
    (task, rx)
}

async fn run(api: Api<Lease>, s: LeaseSettings, tx: watch::Sender<bool>) {
    let mut seen = Observed::default();
    // The last error logged: a lasting one (e.g. a missing RBAC rule) is warned about once.
    let mut last_error: Option<String> = None;
    loop {
        let leading = match round(&api, &s, &mut seen).await {
            Ok(leading) => {
                last_error = None;
                leading
            }
            Err(e) => {
                // Unreachable API: keep leading only while the lease written last is surely
                // still ours (two thirds of its duration, client-go's renew deadline).
                let still = *tx.borrow()
                    && seen
                        .renewed
                        .is_some_and(|at| at.elapsed() < s.duration * 2 / 3);
                let text = e.to_string();
                if last_error.as_deref() == Some(text.as_str()) {
                    tracing::debug!(lease = %s.name, "cannot read or renew the canary leader Lease: {text}");
                } else {
                    tracing::warn!(lease = %s.name, namespace = %s.namespace, "cannot read or renew the canary leader Lease (check the leases RBAC rule in this namespace); a leader that cannot renew for two thirds of the lease duration stops leading: {text}");
                    last_error = Some(text);
                }
                still
            }
        };
        tx.send_if_modified(|was| {
            if *was == leading {
                return false;
            }
            if leading {
                tracing::info!(lease = %s.name, identity = %s.identity, "acquired the canary leader Lease");
            } else {
                tracing::info!(lease = %s.name, identity = %s.identity, "lost the canary leader Lease");
            }
            *was = leading;
            true
        });
        tokio::time::sleep(s.renew_every()).await;
    }
}

fn now() -> MicroTime {
    MicroTime(Timestamp::now())
}

/// One round: create, renew or take over the Lease; whether this proxy holds it after.
async fn round(api: &Api<Lease>, s: &LeaseSettings, seen: &mut Observed) -> kube::Result<bool> {
    let Some(mut lease) = api.get_opt(&s.name).await? else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(s.name.clone()),
                namespace: Some(s.namespace.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(s.identity.clone()),
                lease_duration_seconds: Some(s.duration_secs()),
                acquire_time: Some(now()),
                renew_time: Some(now()),
                lease_transitions: Some(0),
                ..LeaseSpec::default()
            }),
        };
        return written(api.create(&PostParams::default(), &lease).await, seen);
    };
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    let holder = spec.holder_identity.clone().unwrap_or_default();
    if holder == s.identity {
        spec.renew_time = Some(now());
        spec.lease_duration_seconds = Some(s.duration_secs());
        return written(
            api.replace(&s.name, &PostParams::default(), &lease).await,
            seen,
        );
    }
    seen.renewed = None;
    let record = format!("{holder} {:?}", spec.renew_time);
    let since = match &seen.record {
        Some((r, at)) if *r == record => *at,
        _ => {
            let at = Instant::now();
            seen.record = Some((record, at));
            at
        }
    };
    let duration = Duration::from_secs(spec.lease_duration_seconds.unwrap_or(15).max(1) as u64);
    if !holder.is_empty() && since.elapsed() < duration {
        return Ok(false);
    }
    tracing::info!(lease = %s.name, previous = %holder, "the canary leader Lease expired; taking over");
    spec.holder_identity = Some(s.identity.clone());
    spec.acquire_time = Some(now());
    spec.renew_time = Some(now());
    spec.lease_duration_seconds = Some(s.duration_secs());
    spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
    written(
        api.replace(&s.name, &PostParams::default(), &lease).await,
        seen,
    )
}

/// Gives the Lease up when this proxy holds it (at shutdown, once the elector is stopped), so
/// another proxy takes over at its next round instead of after a whole lease duration.
pub async fn release(client: Client, s: &LeaseSettings) {
    let api: Api<Lease> = Api::namespaced(client, &s.namespace);
    let result = async {
        let Some(mut lease) = api.get_opt(&s.name).await? else {
            return Ok(false);
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(s.identity.as_str()) {
            return Ok(false);
        }
        spec.holder_identity = None;
        spec.renew_time = Some(now());
        api.replace(&s.name, &PostParams::default(), &lease).await?;
        Ok::<_, kube::Error>(true)
    }
    .await;
    match result {
        Ok(true) => tracing::info!(lease = %s.name, "released the canary leader Lease"),
        Ok(false) => {}
        Err(e) => {
            tracing::warn!(lease = %s.name, "cannot release the canary leader Lease (another proxy takes over when it expires): {e}")
        }
    }
}

/// A create or replace: a conflict means another proxy wrote first.
fn written(result: kube::Result<Lease>, seen: &mut Observed) -> kube::Result<bool> {
    match result {
        Ok(_) => {
            seen.renewed = Some(Instant::now());
            seen.record = None;
            Ok(true)
        }
        Err(kube::Error::Api(e)) if e.code == 409 => {
            seen.renewed = None;
            Ok(false)
        }
        Err(e) => Err(e),
    }
}
