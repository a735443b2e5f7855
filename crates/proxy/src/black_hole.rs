//! Istio's `BlackHoleCluster`: under `outboundTrafficPolicy: REGISTRY_ONLY` a request for a host
//! outside the registry gets `502` with flag `NR`, counted with
//! `destination_service_name="BlackHoleCluster"`, instead of passing through.

use std::sync::Arc;

use http::{Response, StatusCode};
use sluice_config::cluster::Cluster;
use sluice_telemetry::access_log::TextField;

use crate::body::Body;
use crate::handler::local_reply;
use crate::observe::Observation;

/// The `502 NR` reply, recorded against the black-hole cluster.
pub(crate) fn reply(black_hole: &Arc<Cluster>, obs: &mut Observation) -> Response<Body> {
    obs.cluster = Some(black_hole.clone());
    if let Some(log) = obs.log.as_mut() {
        log.text.set(
            TextField::ResponseCodeDetails,
            "outbound traffic policy REGISTRY_ONLY: host not in the registry",
        );
    }
    local_reply(StatusCode::BAD_GATEWAY, "NR".into(), "")
}
