//! `/routes`: the routing tables first, the long clusters block last; `?host=` keeps the virtual
//! host each listener would pick for that Host and the host's clusters, `limit`/`offset` page
//! the virtual hosts of each listener and the clusters.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;
use sluice_config::cluster::Cluster;
use sluice_config::host::covers;
use sluice_config::listener::{Listener, ListenerRole};
use sluice_config::tcp_route::TcpListener;
use sluice_config::tls::TlsListener;
use sluice_config::vhost::VirtualHost;

use crate::query::Query;
use crate::AdminState;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Routes<'a> {
    version: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    query: Option<QueryEcho<'a>>,
    listeners: Option<Vec<ListenerView<'a>>>,
    tls_listeners: Option<&'a Vec<Arc<TlsListener>>>,
    tcp_listeners: Option<&'a Vec<Arc<TcpListener>>>,
    clusters: Option<BTreeMap<&'a str, &'a Arc<Cluster>>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct QueryEcho<'a> {
    host: Option<&'a str>,
    limit: Option<usize>,
    offset: usize,
    total_clusters: usize,
}

/// A listener as `Listener` serializes, with only the virtual hosts asked for.
#[derive(Serialize)]
struct ListenerView<'a> {
    name: &'a str,
    address: std::net::SocketAddr,
    role: &'a ListenerRole,
    virtual_hosts: VirtualHosts<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    default_virtual_host: Option<&'a Arc<VirtualHost>>,
}

#[derive(Serialize)]
struct VirtualHosts<'a> {
    vhosts: Vec<&'a Arc<VirtualHost>>,
    /// How many the listener has in all (only with a query).
    #[serde(skip_serializing_if = "Option::is_none")]
    total: Option<usize>,
}

fn listener_view<'a>(l: &'a Listener, query: &Query) -> ListenerView<'a> {
    let all = &l.virtual_hosts.vhosts;
    let vhosts = match &query.host {
        // The one a request for the host gets, as routing picks it.
        Some(host) => query.page(l.virtual_host(host)),
        None => query.page(all.iter()),
    };
    ListenerView {
        name: &l.name,
        address: l.address,
        role: &l.role,
        virtual_hosts: VirtualHosts {
            vhosts,
            total: query.is_set().then_some(all.len()),
        },
        default_virtual_host: l.default_virtual_host.as_ref(),
    }
}

/// The `/routes` document for `query`.
pub(crate) fn routes(state: &AdminState, query: &Query) -> Vec<u8> {
    let snap = state.config.load();
    let s = snap.as_deref();
    let longest = s.map_or(0, |s| {
        s.listeners
            .iter()
            .map(|l| l.virtual_hosts.vhosts.len())
            .chain([s.clusters.len()])
            .max()
            .unwrap_or(0)
    });
    let query = &query.or_first_page(longest);
    let clusters = s.map(|s| {
        s.clusters
            .iter()
            .filter(|(_, c)| query.host.as_deref().is_none_or(|h| covers(h, &c.host)))
            .collect::<Vec<_>>()
    });
    let total_clusters = clusters.as_ref().map_or(0, Vec::len);
    let doc = Routes {
        version: s.map(|s| s.version),
        query: query.is_set().then_some(QueryEcho {
            host: query.host.as_deref(),
            limit: query.limit,
            offset: query.offset,
            total_clusters,
        }),
        listeners: s.map(|s| {
            s.listeners
                .iter()
                .map(|l| listener_view(l, query))
                .collect()
        }),
        tls_listeners: s.map(|s| &s.tls_listeners),
        tcp_listeners: s.map(|s| &s.tcp_listeners),
        clusters: clusters.map(|c| query.page(c).into_iter().collect()),
    };
    serde_json::to_vec_pretty(&doc).unwrap_or_default()
}
