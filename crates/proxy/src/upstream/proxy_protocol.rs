//! The PROXY protocol header (HAProxy's spec, versions 1 and 2) an upstream connection starts
//! with when the cluster's `trafficPolicy.proxyProtocol` asks for it: the downstream client's
//! source and destination addresses, as Envoy's `proxy_protocol` upstream transport socket sends.

use std::net::{IpAddr, SocketAddr};

use sluice_config::pipe::is_pipe;
use sluice_config::policy::ProxyProtocolVersion;

/// The version 2 signature.
const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// The header for a connection opened for `downstream` (source, destination); without
/// addresses (a mirror copy, a health probe, a client on a unix domain socket, which has no IP)
/// the header says so: `UNKNOWN` (v1) or `LOCAL` (v2), as Envoy's for a pipe address.
pub(crate) fn header(
    version: ProxyProtocolVersion,
    downstream: Option<(SocketAddr, SocketAddr)>,
) -> Vec<u8> {
    let addrs = downstream
        .filter(|(src, dst)| !is_pipe(src.ip()) && !is_pipe(dst.ip()))
        .map(|(src, dst)| same_family(src, dst));
    match version {
        ProxyProtocolVersion::V1 => v1(addrs),
        ProxyProtocolVersion::V2 => v2(addrs),
    }
}

/// Both addresses in one family: an IPv4 address next to an IPv6 one is written IPv4-mapped.
fn same_family(src: SocketAddr, dst: SocketAddr) -> (SocketAddr, SocketAddr) {
    let v6 = |a: SocketAddr| match a.ip() {
        IpAddr::V4(ip) => SocketAddr::new(IpAddr::V6(ip.to_ipv6_mapped()), a.port()),
        IpAddr::V6(_) => a,
    };
    if src.is_ipv4() == dst.is_ipv4() {
        (src, dst)
    } else {
        (v6(src), v6(dst))
    }
}

fn v1(addrs: Option<(SocketAddr, SocketAddr)>) -> Vec<u8> {
    match addrs {
        Some((src, dst)) => format!(
            "PROXY {} {} {} {} {}\r\n",
            if src.is_ipv4() { "TCP4" } else { "TCP6" },
            src.ip(),
            dst.ip(),
            src.port(),
            dst.port()
        )
        .into_bytes(),
        None => b"PROXY UNKNOWN\r\n".to_vec(),
    }
}

fn v2(addrs: Option<(SocketAddr, SocketAddr)>) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + 36);
    out.extend_from_slice(&V2_SIGNATURE);
    let Some((src, dst)) = addrs else {
        // Version 2, LOCAL command, unspecified family, no address block.
        out.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
        return out;
    };
    // Version 2, PROXY command; then TCP over IPv4 (0x11) or IPv6 (0x21).
    out.push(0x21);
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            out.push(0x11);
            out.extend_from_slice(&12u16.to_be_bytes());
            out.extend_from_slice(&s.octets());
            out.extend_from_slice(&d.octets());
        }
        (s, d) => {
            let v6 = |ip: IpAddr| match ip {
                IpAddr::V4(ip) => ip.to_ipv6_mapped(),
                IpAddr::V6(ip) => ip,
            };
            out.push(0x21);
            out.extend_from_slice(&36u16.to_be_bytes());
            out.extend_from_slice(&v6(s).octets());
            out.extend_from_slice(&v6(d).octets());
        }
    }
    out.extend_from_slice(&src.port().to_be_bytes());
    out.extend_from_slice(&dst.port().to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn v1_headers() {
        let v4 = Some((addr("10.0.0.1:5000"), addr("10.0.0.2:80")));
        assert_eq!(
            header(ProxyProtocolVersion::V1, v4),
            b"PROXY TCP4 10.0.0.1 10.0.0.2 5000 80\r\n"
        );
        let mixed = Some((addr("10.0.0.1:5000"), addr("[2001:db8::2]:443")));
        assert_eq!(
            String::from_utf8(header(ProxyProtocolVersion::V1, mixed)).unwrap(),
            "PROXY TCP6 ::ffff:10.0.0.1 2001:db8::2 5000 443\r\n"
        );
        assert_eq!(header(ProxyProtocolVersion::V1, None), b"PROXY UNKNOWN\r\n");
        // A unix domain socket client has no IP.
        let pipe = Some((sluice_config::pipe::UNIX_PEER, addr("10.0.0.2:80")));
        assert_eq!(header(ProxyProtocolVersion::V1, pipe), b"PROXY UNKNOWN\r\n");
        assert_eq!(
            header(ProxyProtocolVersion::V2, pipe),
            header(ProxyProtocolVersion::V2, None)
        );
    }

    #[test]
    fn v2_headers() {
        let v4 = header(
            ProxyProtocolVersion::V2,
            Some((addr("10.0.0.1:5000"), addr("10.0.0.2:80"))),
        );
        let mut want = V2_SIGNATURE.to_vec();
        want.extend_from_slice(&[
            0x21, 0x11, 0, 12, 10, 0, 0, 1, 10, 0, 0, 2, 0x13, 0x88, 0, 80,
        ]);
        assert_eq!(v4, want);
        let v6 = header(
            ProxyProtocolVersion::V2,
            Some((addr("[2001:db8::1]:1"), addr("[2001:db8::2]:2"))),
        );
        assert_eq!(v6.len(), 16 + 36);
        assert_eq!(&v6[12..16], &[0x21, 0x21, 0, 36]);
        let local = header(ProxyProtocolVersion::V2, None);
        assert_eq!(&local[12..], &[0x20, 0, 0, 0]);
    }
}
