//! `--dns-server` and `--dns-refresh`, and the hickory resolver they make.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::config::{
    LookupIpStrategy, NameServerConfig, NameServerConfigGroup, ResolverConfig, ResolverOpts,
};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::TokioResolver;

use crate::DnsError;

/// Where names are resolved and how often at most they are re-resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsSettings {
    /// Name servers to ask (UDP, then TCP for truncated answers); empty: `/etc/resolv.conf`.
    pub servers: Vec<SocketAddr>,
    /// The longest time an answer is used before it is asked again (`--dns-refresh`).
    pub refresh: Duration,
}

impl Default for DnsSettings {
    fn default() -> Self {
        DnsSettings {
            servers: Vec::new(),
            refresh: Duration::from_secs(30),
        }
    }
}

/// Parses a `--dns-server` value: `IP`, `IP:PORT` or `[IPv6]:PORT` (port 53 when absent).
pub fn parse_server(s: &str) -> Result<SocketAddr, DnsError> {
    let s = s.trim();
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(addr);
    }
    s.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, 53))
        .map_err(|_| DnsError::Server(s.to_string()))
}

/// The hickory resolver for `settings`.
pub(crate) fn build(settings: &DnsSettings) -> Result<TokioResolver, DnsError> {
    let provider = TokioConnectionProvider::default();
    let mut builder = if settings.servers.is_empty() {
        TokioResolver::builder(provider).map_err(|e| DnsError::SystemConfig(e.to_string()))?
    } else {
        let servers: Vec<NameServerConfig> = settings
            .servers
            .iter()
            .flat_map(|addr| {
                [
                    NameServerConfig::new(*addr, Protocol::Udp),
                    NameServerConfig::new(*addr, Protocol::Tcp),
                ]
            })
            .collect();
        let config =
            ResolverConfig::from_parts(None, Vec::new(), NameServerConfigGroup::from(servers));
        TokioResolver::builder_with_config(config, provider)
    };
    let opts: &mut ResolverOpts = builder.options_mut();
    // IPv4 addresses, or IPv6 ones when a name has none (Envoy's V4_PREFERRED): a proxy on an
    // IPv4 network would otherwise get unreachable AAAA endpoints (Istio's IPv4 proxies ask
    // for A records only).
    opts.ip_strategy = LookupIpStrategy::Ipv4thenIpv6;
    // The refresh task is the cache; hickory's own would answer a re-resolution with what it
    // already had.
    opts.cache_size = 0;
    Ok(builder.build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_take_port_53_unless_given() {
        assert_eq!(
            parse_server("127.0.0.1").ok(),
            Some(SocketAddr::from(([127, 0, 0, 1], 53)))
        );
        assert_eq!(
            parse_server("127.0.0.1:5353").ok(),
            Some(SocketAddr::from(([127, 0, 0, 1], 5353)))
        );
        assert_eq!(parse_server("[::1]:54").ok().map(|a| a.port()), Some(54));
        assert_eq!(parse_server("::1").ok().map(|a| a.port()), Some(53));
        assert!(parse_server("dns.example.com").is_err());
    }
}
