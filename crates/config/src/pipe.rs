//! Unix domain socket ("pipe") addresses. A listener on a socket file and a client of one have
//! no IP; Envoy gives them its pipe address, and an IP matcher (`ipBlocks`, `sourceSubnet`,
//! `destinationSubnets`, hash on source IP) never matches one. The data plane keeps
//! `SocketAddr`s for both and gives them addresses of the IPv6 discard-only prefix `100::/64`
//! (RFC 6666), which no TCP connection has, so that "no IP" is told apart without a branch per
//! request on the TCP path.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

/// The peer address a client on a unix domain socket is given.
pub const UNIX_PEER: SocketAddr =
    SocketAddr::new(IpAddr::V6(Ipv6Addr::new(0x100, 0, 0, 0, 0, 0, 0, 0)), 0);

/// Whether `ip` stands for a unix domain socket (a listener's key or a client), not an IP.
pub fn is_pipe(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V6(v6) => v6.segments()[..4] == [0x100, 0, 0, 0],
        IpAddr::V4(_) => false,
    }
}

/// The IP of `peer`, or `None` for a unix domain socket client.
pub fn peer_ip(peer: SocketAddr) -> Option<IpAddr> {
    Some(peer.ip()).filter(|ip| !is_pipe(*ip))
}

/// A peer as logs show it: its address, or `unix` for a unix domain socket client (Envoy
/// prints the pipe's path; the listener's name already says it).
pub fn show_peer(peer: SocketAddr) -> String {
    match peer_ip(peer) {
        Some(_) => peer.to_string(),
        None => "unix".to_string(),
    }
}

/// The key address of a listener on the unix domain socket `path`: an address of `100::/64`,
/// never bound, derived from the path.
pub fn unix_key(path: &str) -> IpAddr {
    // FNV-1a: stable across runs and versions, unlike the standard hasher.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in path.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    IpAddr::V6(Ipv6Addr::from((0x0100_u128 << 112) | u128::from(h)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipe_addresses_are_not_ips() {
        assert!(is_pipe(UNIX_PEER.ip()));
        assert!(is_pipe(unix_key("/tmp/a.sock")));
        assert_eq!(peer_ip(UNIX_PEER), None);
        let tcp: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        assert_eq!(peer_ip(tcp), Some(tcp.ip()));
        assert!(!is_pipe("::1".parse().unwrap()));
        assert!(!is_pipe("100:0:0:1::".parse().unwrap()));
    }
}
