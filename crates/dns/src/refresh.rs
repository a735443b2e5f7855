//! One name's refresh loop: resolve, publish the addresses, sleep for the clamped TTL.

use std::net::IpAddr;
use std::sync::Weak;
use std::time::{Duration, Instant};

use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::ProtoErrorKind;
use hickory_resolver::{ResolveError, TokioResolver};
use sluice_config::dns::{refresh_interval, MIN_REFRESH};
use tokio::sync::oneshot;

use crate::Inner;

/// Resolves `name` until the resolver is gone or the task is aborted; `first` learns whether
/// the first resolution brought addresses.
pub(crate) async fn run(
    inner: Weak<Inner>,
    resolver: TokioResolver,
    refresh: Duration,
    name: String,
    first: oneshot::Sender<bool>,
) {
    let mut first = Some(first);
    // A trailing dot: the name is absolute, search domains do not apply (Istio's hosts are
    // fully qualified).
    let query = if name.ends_with('.') {
        name.clone()
    } else {
        format!("{name}.")
    };
    loop {
        let outcome = resolver.lookup_ip(query.as_str()).await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let (answered, wait) = match outcome {
            Ok(lookup) => {
                let addresses: Vec<IpAddr> = lookup.iter().collect();
                let ttl = lookup
                    .valid_until()
                    .saturating_duration_since(Instant::now());
                if inner.set(&name, addresses.clone()) {
                    tracing::info!(%name, ?addresses, "DNS answer changed");
                }
                (!addresses.is_empty(), refresh_interval(ttl, refresh))
            }
            // No address records is an answer, not a failure: the name has no endpoint now
            // (Envoy's DNS cluster empties too).
            Err(e) if no_such_records(&e) => {
                if inner.set(&name, Vec::new()) {
                    tracing::warn!(%name, "DNS name has no addresses any more");
                }
                (false, refresh_interval(refresh, refresh))
            }
            // A timeout or a server failure keeps the last addresses (as Envoy keeps its
            // hosts) and asks again at the refresh rate.
            Err(e) => {
                tracing::warn!(%name, error = %e, "DNS resolution failed; the last addresses stay in use");
                (false, refresh.max(MIN_REFRESH))
            }
        };
        drop(inner);
        if let Some(tx) = first.take() {
            let _ = tx.send(answered);
        }
        tokio::time::sleep(wait).await;
    }
}

/// Whether the server said the name has no address records (NXDOMAIN, or NOERROR without
/// them); a SERVFAIL or REFUSED also arrives as "no records" but is a failure.
fn no_such_records(e: &ResolveError) -> bool {
    match e.proto().map(|p| p.kind()) {
        Some(ProtoErrorKind::NoRecordsFound { response_code, .. }) => {
            matches!(
                *response_code,
                ResponseCode::NXDomain | ResponseCode::NoError
            )
        }
        _ => false,
    }
}
