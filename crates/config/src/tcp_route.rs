//! TCP listeners (VirtualService `tcp` rules): the rule a connection takes, by its addresses.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;
use serde::Serialize;

use crate::listener::ListenerRole;
use crate::route_table::{Forward, RouteSource};
use crate::tls::sni_matches;

/// A listener whose connections are relayed as bytes to the destination a `tcp` rule picks.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TcpListener {
    /// Name (`<ip>_<port>`, as Envoy names them).
    pub name: String,
    /// Bind address.
    pub address: SocketAddr,
    /// Role.
    pub role: ListenerRole,
    /// Rules in order; the first whose matches hold takes the connection.
    pub rules: Vec<TcpRule>,
    /// The unix domain socket it listens on (`bind: unix://PATH`); its `address` is then only a
    /// key, never bound.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unix: Option<Arc<str>>,
}

/// One compiled `tcp` rule (or a service's default route).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TcpRule {
    /// `<vs>.<index>`, or `default` for a service without a VirtualService.
    pub name: String,
    /// Origin.
    pub source: RouteSource,
    /// Match entries (OR'ed; empty = every connection). Port, gateway, source labels and
    /// source namespace were settled when the rule was compiled for this listener.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<L4Match>,
    /// Weighted destinations, split exactly over connections.
    pub forward: Forward,
}

/// The address conditions of one `L4MatchAttributes` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct L4Match {
    /// The connection's destination (the address it reached the proxy on) is in one of these.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub destination_subnets: Vec<IpNet>,
    /// The caller's address is in this subnet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_subnet: Option<IpNet>,
    /// The ClientHello's SNI matches one of these (`tls` rules; empty for `tcp` rules).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sni_hosts: Vec<String>,
}

impl L4Match {
    /// Whether a connection from `peer` to `local` (with the ClientHello's `sni`, for TLS)
    /// satisfies the entry. A unix domain socket peer or listener has no IP: no subnet holds it.
    pub fn matches(&self, peer: IpAddr, local: IpAddr, sni: Option<&str>) -> bool {
        let holds = |n: &IpNet, ip: IpAddr| !crate::pipe::is_pipe(ip) && n.contains(&ip);
        let dest_ok = self.destination_subnets.is_empty()
            || self.destination_subnets.iter().any(|n| holds(n, local));
        let source_ok = self.source_subnet.is_none_or(|n| holds(&n, peer));
        let sni_ok = self.sni_hosts.is_empty()
            || sni.is_some_and(|name| self.sni_hosts.iter().any(|p| sni_matches(p, name)));
        dest_ok && source_ok && sni_ok
    }
}

impl TcpListener {
    /// Whether its rules choose by the ClientHello's SNI (a TLS port's `tls` rules).
    pub fn by_sni(&self) -> bool {
        self.rules
            .iter()
            .any(|r| r.matches.iter().any(|m| !m.sni_hosts.is_empty()))
    }

    /// The rule for a connection from `peer` that reached the proxy at `local`, with the
    /// ClientHello's `sni` on a TLS passthrough chain.
    pub fn route(&self, peer: IpAddr, local: IpAddr, sni: Option<&str>) -> Option<&TcpRule> {
        self.rules
            .iter()
            .find(|r| r.matches.is_empty() || r.matches.iter().any(|m| m.matches(peer, local, sni)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_select_by_destination_and_source() {
        let m = L4Match {
            destination_subnets: vec!["127.0.0.0/24".parse().unwrap()],
            source_subnet: Some("10.0.0.0/8".parse().unwrap()),
            sni_hosts: vec![],
        };
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(m.matches(ip("10.1.2.3"), ip("127.0.0.5"), None));
        assert!(!m.matches(ip("192.168.1.1"), ip("127.0.0.5"), None));
        assert!(!m.matches(ip("10.1.2.3"), ip("127.0.1.5"), None));
        assert!(L4Match::default().matches(ip("1.2.3.4"), ip("5.6.7.8"), None));
        let sni = L4Match {
            sni_hosts: vec!["*.example.com".into()],
            ..Default::default()
        };
        assert!(sni.matches(ip("1.2.3.4"), ip("5.6.7.8"), Some("a.example.com")));
        assert!(!sni.matches(ip("1.2.3.4"), ip("5.6.7.8"), Some("example.com")));
        assert!(!sni.matches(ip("1.2.3.4"), ip("5.6.7.8"), None));
        // A unix domain socket client or listener has no IP: no subnet holds it.
        let all = L4Match {
            destination_subnets: vec!["::/0".parse().unwrap()],
            source_subnet: Some("::/0".parse().unwrap()),
            sni_hosts: vec![],
        };
        let pipe = crate::pipe::UNIX_PEER.ip();
        assert!(all.matches(ip("::1"), ip("::1"), None));
        assert!(!all.matches(pipe, ip("::1"), None));
        assert!(!all.matches(ip("::1"), crate::pipe::unix_key("/tmp/s.sock"), None));
    }
}
