//! TCP connections to upstream endpoints: connect timeout, `TCP_NODELAY`, TCP keepalive and the
//! PROXY protocol header.

use std::net::SocketAddr;
use std::time::Duration;

use std::sync::Arc;

use rustls::pki_types::ServerName;
use sluice_config::policy::{ProxyProtocolVersion, TcpKeepalive};
use sluice_config::tls::ClientTls;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::proxy_protocol;
use super::stream::UpstreamStream;
use crate::tls::TlsRuntime;

/// How connections to a cluster are opened (DestinationRule `connectionPool.tcp`, `tls`).
#[derive(Debug, Clone)]
pub(crate) struct ConnectSettings {
    /// `connectTimeout`.
    pub timeout: Duration,
    /// `tcpKeepalive`, when set.
    pub keepalive: Option<TcpKeepalive>,
    /// TLS origination (`tls.mode` SIMPLE or MUTUAL).
    pub tls: Option<UpstreamTls>,
    /// A PROXY protocol header starts each connection (`trafficPolicy.proxyProtocol`).
    pub proxy_protocol: Option<ProxyProtocolVersion>,
}

/// Where a connection goes, and the downstream connection it is opened for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Target<'a> {
    /// The endpoint (`ip:port`, or `host:port`).
    pub authority: &'a str,
    /// The pool key: the authority, joined with the downstream addresses when connections carry
    /// a PROXY header (a connection then serves one downstream peer only, as in Envoy).
    pub key: &'a str,
    /// The downstream connection's (source, destination) addresses.
    pub downstream: Option<(SocketAddr, SocketAddr)>,
}

impl<'a> Target<'a> {
    /// A target shared by every downstream connection.
    #[cfg(test)]
    pub(crate) fn shared(authority: &'a str) -> Self {
        Target {
            authority,
            key: authority,
            downstream: None,
        }
    }
}

/// A cluster's upstream TLS: its settings, and where their rustls config comes from.
#[derive(Debug, Clone)]
pub(crate) struct UpstreamTls {
    /// The DestinationRule's settings.
    pub policy: Arc<ClientTls>,
    /// Certificates and cached configs.
    pub runtime: TlsRuntime,
}

impl UpstreamTls {
    /// Runs the client handshake on a connected socket (within the connect timeout's budget).
    async fn handshake(
        &self,
        tcp: TcpStream,
    ) -> Result<tokio_rustls::client::TlsStream<TcpStream>, String> {
        let config = self
            .runtime
            .client_config(&self.policy)
            .map_err(|e| format!("upstream TLS settings: {e}"))?;
        let name = ServerName::try_from(self.policy.sni.clone())
            .map_err(|e| format!("TLS SNI {}: {e}", self.policy.sni))?;
        tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS error: {e}"))
    }
}

/// Opens a connection to `target` for HTTP: TCP (and its PROXY header), then TLS when the
/// cluster originates it.
pub(crate) async fn open(
    target: &Target<'_>,
    settings: &ConnectSettings,
) -> Result<UpstreamStream, String> {
    let started = tokio::time::Instant::now();
    let mut tcp = tcp(target.authority, settings).await?;
    send_proxy_header(&mut tcp, settings, target.downstream).await?;
    let Some(tls) = &settings.tls else {
        return Ok(UpstreamStream::Plain(tcp));
    };
    // Envoy's connect timeout covers the TLS handshake too.
    let left = settings.timeout.saturating_sub(started.elapsed());
    match tokio::time::timeout(left, tls.handshake(tcp)).await {
        Ok(Ok(s)) => Ok(UpstreamStream::Tls(Box::new(s))),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(format!(
            "TLS handshake timed out after {:?}",
            settings.timeout
        )),
    }
}

/// Writes the PROXY protocol header the cluster asks for, first thing on the connection.
pub(crate) async fn send_proxy_header(
    tcp: &mut TcpStream,
    settings: &ConnectSettings,
    downstream: Option<(SocketAddr, SocketAddr)>,
) -> Result<(), String> {
    let Some(version) = settings.proxy_protocol else {
        return Ok(());
    };
    let header = proxy_protocol::header(version, downstream);
    tcp.write_all(&header)
        .await
        .map_err(|e| format!("writing the PROXY protocol header: {e}"))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `tcpKeepalive` reaches the upstream socket; Linux defaults fill what is unset.
    #[tokio::test]
    async fn tcp_keepalive_settings_reach_the_socket() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let authority = listener.local_addr().unwrap().to_string();
        let settings = |keepalive| ConnectSettings {
            timeout: Duration::from_secs(2),
            keepalive,
            tls: None,
            proxy_protocol: None,
        };
        let s = tcp(
            &authority,
            &settings(Some(TcpKeepalive {
                probes: Some(3),
                time: Some(Duration::from_secs(30)),
                interval: Some(Duration::from_secs(5)),
            })),
        )
        .await
        .unwrap();
        let sock = socket2::SockRef::from(&s);
        assert!(sock.keepalive().unwrap());
        assert_eq!(sock.tcp_keepalive_time().unwrap(), Duration::from_secs(30));
        assert_eq!(
            sock.tcp_keepalive_interval().unwrap(),
            Duration::from_secs(5)
        );
        assert_eq!(sock.tcp_keepalive_retries().unwrap(), 3);
        assert!(s.nodelay().unwrap());
        let s = tcp(
            &authority,
            &settings(Some(TcpKeepalive {
                probes: None,
                time: None,
                interval: None,
            })),
        )
        .await
        .unwrap();
        let sock = socket2::SockRef::from(&s);
        assert!(sock.keepalive().unwrap());
        assert_eq!(
            sock.tcp_keepalive_time().unwrap(),
            Duration::from_secs(7200)
        );
        let s = tcp(&authority, &settings(None)).await.unwrap();
        assert!(!socket2::SockRef::from(&s).keepalive().unwrap());
    }
}
