//! The `404 NR` for a Host that no virtual host of the listener serves. The reply is Envoy's
//! (an empty body); the access log's `response_code_details` and the debug log also name the
//! Host and the hosts the listener does serve, because a missing or misspelt Host is the most
//! common reason a request gets nothing.

use http::Response;
use sluice_config::listener::Listener;
use sluice_telemetry::access_log::TextField;

use crate::body::Body;
use crate::error::ProxyError;
use crate::handler::error_reply;
use crate::observe::Observation;

/// Hosts named before the rest of the listener's hosts are only counted.
const LISTED_HOSTS: usize = 5;

/// The hosts `listener` serves, without the `:port` forms of names it also lists bare, in
/// declaration order.
fn served_hosts(listener: &Listener) -> Vec<&str> {
    let mut hosts: Vec<&str> = Vec::new();
    for vh in &listener.virtual_hosts.vhosts {
        for d in &vh.domains {
            let bare = match d.rsplit_once(':') {
                Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
                _ => d.as_str(),
            };
            if !hosts.contains(&bare) {
                hosts.push(bare);
            }
        }
    }
    hosts
}

/// Envoy's `route_not_found`, followed by the Host asked for and (bounded) the hosts served.
pub fn details(listener: &Listener, authority: &str) -> String {
    let hosts = served_hosts(listener);
    let mut out = format!(
        "route_not_found: no virtual host for Host \"{authority}\" on {}",
        listener.name
    );
    if hosts.is_empty() {
        out.push_str(", which serves no host");
        return out;
    }
    out.push_str("; it serves ");
    out.push_str(&hosts[..hosts.len().min(LISTED_HOSTS)].join(", "));
    if hosts.len() > LISTED_HOSTS {
        out.push_str(&format!(" and {} more", hosts.len() - LISTED_HOSTS));
    }
    out
}

/// The `404 NR` reply, with the details in the request's access-log line and the debug log.
pub(crate) fn reply(listener: &Listener, authority: &str, obs: &mut Observation) -> Response<Body> {
    let details = details(listener, authority);
    tracing::debug!(listener = %listener.name, host = authority, %details, "404 NR");
    if let Some(log) = obs.log.as_mut() {
        log.text.set(TextField::ResponseCodeDetails, &details);
    }
    error_reply(&ProxyError::NoRoute, "")
}
