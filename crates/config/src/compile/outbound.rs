//! Outbound interception: every HTTP mesh port, reachable by original destination, unbound.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use super::mesh::MeshPort;
use crate::listener::{Listener, ListenerRole};
use crate::outbound::OutboundTable;

/// The outbound table for the mesh ports (nothing is bound: connections arrive redirected).
pub(crate) fn outbound_table(ports: &[MeshPort]) -> OutboundTable {
    let mut table = OutboundTable::default();
    for mp in ports {
        let any = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), mp.port);
        table.by_port.insert(
            mp.port,
            Arc::new(Listener {
                // Istio's name for the port's outbound route table.
                name: format!("0.0.0.0_{}", mp.port),
                address: any,
                role: ListenerRole::Mesh,
                virtual_hosts: mp.table.clone(),
                default_virtual_host: None,
                stat_prefix: None,
                unix: None,
            }),
        );
        for (ip, owner) in &mp.owners {
            let Some(vh) = owner else { continue };
            let address = SocketAddr::new(*ip, mp.port);
            table.by_address.insert(
                address,
                Arc::new(Listener {
                    name: format!("{ip}_{}", mp.port),
                    address,
                    role: ListenerRole::Mesh,
                    virtual_hosts: mp.table.clone(),
                    default_virtual_host: Some(vh.clone()),
                    stat_prefix: None,
                    unix: None,
                }),
            );
        }
    }
    table
}
