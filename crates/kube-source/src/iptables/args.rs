//! Command-line flags of `sluice iptables` (Istio's `istio-iptables` short flags where they exist).

use ipnet::IpNet;

use super::{IptablesOptions, Selection};

/// `sluice iptables`.
#[derive(Debug, Clone, clap::Args)]
pub struct IptablesArgs {
    /// Port outbound TCP is redirected to.
    #[arg(short = 'p', long, default_value_t = 15001)]
    pub outbound_port: u16,
    /// Port inbound TCP is redirected to.
    #[arg(short = 'z', long, default_value_t = 15006)]
    pub inbound_port: u16,
    /// UID of the proxy, whose traffic is never redirected.
    #[arg(short = 'u', long, default_value_t = 1337)]
    pub proxy_uid: u32,
    /// GID of the proxy (default: the UID).
    #[arg(short = 'g', long)]
    pub proxy_gid: Option<u32>,
    /// Inbound ports to intercept: `*` for all, a comma-separated list, or empty for none.
    #[arg(short = 'b', long, default_value = "*")]
    pub inbound_ports: String,
    /// Inbound ports not intercepted when all are (comma-separated).
    #[arg(
        short = 'd',
        long,
        value_delimiter = ',',
        default_value = "15000,15021,15090"
    )]
    pub exclude_inbound_ports: Vec<u16>,
    /// Outbound ports not intercepted (comma-separated).
    #[arg(short = 'o', long, value_delimiter = ',')]
    pub exclude_outbound_ports: Vec<u16>,
    /// Outbound CIDRs to intercept: `*` for all, a comma-separated list, or empty for none.
    #[arg(short = 'i', long, default_value = "*")]
    pub outbound_ip_ranges: String,
    /// Outbound CIDRs not intercepted (comma-separated).
    #[arg(short = 'x', long, value_delimiter = ',')]
    pub exclude_outbound_ip_ranges: Vec<String>,
    /// Also set up IPv6 (`ip6tables`).
    #[arg(long)]
    pub ipv6: bool,
    /// Print the commands instead of running them.
    #[arg(long)]
    pub dry_run: bool,
    /// The iptables binary (default: `iptables-nft`, else `iptables`, else `iptables-legacy`).
    #[arg(long)]
    pub iptables: Option<String>,
}

impl IptablesArgs {
    /// The options these flags describe.
    pub fn options(&self) -> anyhow::Result<IptablesOptions> {
        Ok(IptablesOptions {
            outbound_port: nonzero(self.outbound_port, "--outbound-port")?,
            inbound_port: nonzero(self.inbound_port, "--inbound-port")?,
            proxy_uid: self.proxy_uid,
            proxy_gid: self.proxy_gid.unwrap_or(self.proxy_uid),
            inbound_ports: selection(&self.inbound_ports, |p| {
                p.parse::<u16>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| anyhow::anyhow!("invalid inbound port `{p}`"))
            })?,
            exclude_inbound_ports: self.exclude_inbound_ports.clone(),
            exclude_outbound_ports: self.exclude_outbound_ports.clone(),
            outbound_ranges: selection(&self.outbound_ip_ranges, cidr)?,
            exclude_outbound_ranges: self
                .exclude_outbound_ip_ranges
                .iter()
                .map(|s| s.trim())
                .filter(|s| !s.is_empty())
                .map(cidr)
                .collect::<anyhow::Result<_>>()?,
            ipv6: self.ipv6,
        })
    }
}

fn nonzero(p: u16, flag: &str) -> anyhow::Result<u16> {
    if p == 0 {
        anyhow::bail!("{flag} must not be 0");
    }
    Ok(p)
}

fn selection<T>(
    s: &str,
    parse: impl Fn(&str) -> anyhow::Result<T>,
) -> anyhow::Result<Selection<T>> {
    if s.trim() == "*" {
        return Ok(Selection::All);
    }
    Ok(Selection::Only(
        s.split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(parse)
            .collect::<anyhow::Result<_>>()?,
    ))
}

/// Parses a CIDR or a bare IP (a host route).
fn cidr(s: &str) -> anyhow::Result<IpNet> {
    if let Ok(n) = s.parse::<IpNet>() {
        return Ok(n.trunc());
    }
    s.parse::<std::net::IpAddr>()
        .map(IpNet::from)
        .map_err(|_| anyhow::anyhow!("invalid CIDR `{s}`"))
}
