//! The address a redirected connection was going to before `iptables REDIRECT` sent it here.

use std::io;
use std::net::SocketAddr;

use socket2::SockRef;
use tokio::net::TcpStream;

/// The connection's original destination (`SO_ORIGINAL_DST`, or `IP6T_SO_ORIGINAL_DST` on an
/// IPv6 socket); an error when the kernel has no NAT record for it.
pub fn original_dst(stream: &TcpStream) -> io::Result<SocketAddr> {
    let sock = SockRef::from(stream);
    let local = stream.local_addr()?;
    let addr = if local.is_ipv4() {
        sock.original_dst_v4()?
    } else {
        sock.original_dst_v6()?
    };
    addr.as_socket()
        .ok_or_else(|| io::Error::other("original destination is not an IP address"))
}
