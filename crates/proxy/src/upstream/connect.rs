//! TCP connections to upstream endpoints: connect timeout, `TCP_NODELAY` and TCP keepalive.

use std::net::SocketAddr;
use std::time::Duration;

use sluice_config::policy::TcpKeepalive;
use tokio::net::TcpStream;

/// How connections to a cluster are opened (DestinationRule `connectionPool.tcp`).
#[derive(Debug, Clone)]
pub(crate) struct ConnectSettings {
    /// `connectTimeout`.
    pub timeout: Duration,
    /// `tcpKeepalive`, when set.
    pub keepalive: Option<TcpKeepalive>,
}

/// Opens a TCP connection to `authority` (`ip:port`, or `host:port` resolved by the system).
pub(crate) async fn tcp(authority: &str, settings: &ConnectSettings) -> Result<TcpStream, String> {
    let connect = async {
        match authority.parse::<SocketAddr>() {
            Ok(addr) => TcpStream::connect(addr).await,
            Err(_) => TcpStream::connect(authority).await,
        }
    };
    let stream = match tokio::time::timeout(settings.timeout, connect).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(format!("tcp connect error: {e}")),
        Err(_) => {
            return Err(format!(
                "tcp connect error: timed out after {:?}",
                settings.timeout
            ))
        }
    };
    // Small requests and responses must not wait for Nagle's algorithm.
    stream
        .set_nodelay(true)
        .map_err(|e| format!("setting TCP_NODELAY: {e}"))?;
    if let Some(k) = &settings.keepalive {
        // Linux defaults (7200 s idle, 75 s interval, 9 probes) apply to what is unset, as in
        // Envoy.
        let mut ka =
            socket2::TcpKeepalive::new().with_time(k.time.unwrap_or(Duration::from_secs(7200)));
        if let Some(i) = k.interval {
            ka = ka.with_interval(i);
        }
        if let Some(p) = k.probes {
            ka = ka.with_retries(p);
        }
        socket2::SockRef::from(&stream)
            .set_tcp_keepalive(&ka)
            .map_err(|e| format!("setting TCP keepalive: {e}"))?;
    }
    Ok(stream)
}
