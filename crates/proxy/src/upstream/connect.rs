//! TCP connections to upstream endpoints: connect timeout, `TCP_NODELAY` and TCP keepalive.

use std::net::SocketAddr;
use std::time::Duration;

use std::sync::Arc;

use rustls::pki_types::ServerName;
use sluice_config::policy::TcpKeepalive;
use sluice_config::tls::ClientTls;
use tokio::net::TcpStream;

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

/// Opens a connection to `authority` for HTTP: TCP, then TLS when the cluster originates it.
pub(crate) async fn open(
    authority: &str,
    settings: &ConnectSettings,
) -> Result<UpstreamStream, String> {
    let started = tokio::time::Instant::now();
    let tcp = tcp(authority, settings).await?;
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
