//! `sluice iptables`: the nat rules that send a pod's TCP traffic through the sidecar.
//!
//! The rules are those of Istio's `istio-iptables` in REDIRECT mode, with its chain names:
//! outbound TCP goes to the outbound port except the proxy's own (by UID/GID) and loopback
//! traffic, inbound TCP goes to the inbound port except excluded ports.

mod apply;
mod args;

use std::net::IpAddr;

use ipnet::IpNet;

pub use apply::{apply, detect_backend, restore_input, run, Backend};
pub use args::IptablesArgs;

/// Chain that PREROUTING jumps to for inbound TCP.
pub const INBOUND: &str = "ISTIO_INBOUND";
/// Chain that redirects to the outbound port.
pub const REDIRECT: &str = "ISTIO_REDIRECT";
/// Chain that redirects to the inbound port.
pub const IN_REDIRECT: &str = "ISTIO_IN_REDIRECT";
/// Chain that OUTPUT jumps to for outbound TCP.
pub const OUTPUT: &str = "ISTIO_OUTPUT";

/// Which ports or addresses a rule set applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection<T> {
    /// Everything (`*`).
    All,
    /// Only these (empty: nothing).
    Only(Vec<T>),
}

/// What to intercept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IptablesOptions {
    /// Port of the proxy's outbound listener.
    pub outbound_port: u16,
    /// Port of the proxy's inbound listener.
    pub inbound_port: u16,
    /// UID the proxy runs as.
    pub proxy_uid: u32,
    /// GID the proxy runs as.
    pub proxy_gid: u32,
    /// Inbound ports to intercept.
    pub inbound_ports: Selection<u16>,
    /// Inbound ports never intercepted (with `inbound_ports: All`).
    pub exclude_inbound_ports: Vec<u16>,
    /// Outbound ports never intercepted.
    pub exclude_outbound_ports: Vec<u16>,
    /// Outbound destinations to intercept.
    pub outbound_ranges: Selection<IpNet>,
    /// Outbound destinations never intercepted.
    pub exclude_outbound_ranges: Vec<IpNet>,
    /// Also write the IPv6 rules (`ip6tables`).
    pub ipv6: bool,
}

impl Default for IptablesOptions {
    fn default() -> Self {
        IptablesOptions {
            outbound_port: 15001,
            inbound_port: 15006,
            proxy_uid: 1337,
            proxy_gid: 1337,
            inbound_ports: Selection::All,
            exclude_inbound_ports: vec![15000, 15021, 15090],
            exclude_outbound_ports: Vec::new(),
            outbound_ranges: Selection::All,
            exclude_outbound_ranges: Vec::new(),
            ipv6: false,
        }
    }
}

/// The `iptables` (and, with `ipv6`, `ip6tables`) commands that set up interception, in order.
pub fn plan(opts: &IptablesOptions) -> Vec<String> {
    let mut out = family_rules(opts, false, "iptables");
    if opts.ipv6 {
        out.extend(family_rules(opts, true, "ip6tables"));
    }
    out
}

fn family_rules(opts: &IptablesOptions, v6: bool, bin: &str) -> Vec<String> {
    let (localhost, passthrough) = if v6 {
        ("::1/128", "::6/128")
    } else {
        ("127.0.0.1/32", "127.0.0.6/32")
    };
    let same_family = |n: &&IpNet| matches!(n.addr(), IpAddr::V6(_)) == v6;
    let mut r = Vec::new();
    let mut nat = |rule: String| r.push(format!("{bin} -t nat {rule}"));
    for chain in [INBOUND, REDIRECT, IN_REDIRECT, OUTPUT] {
        nat(format!("-N {chain}"));
    }
    nat(format!(
        "-A {REDIRECT} -p tcp -j REDIRECT --to-ports {}",
        opts.outbound_port
    ));
    nat(format!(
        "-A {IN_REDIRECT} -p tcp -j REDIRECT --to-ports {}",
        opts.inbound_port
    ));
    let inbound = !matches!(&opts.inbound_ports, Selection::Only(p) if p.is_empty());
    if inbound {
        nat(format!("-A PREROUTING -p tcp -j {INBOUND}"));
        match &opts.inbound_ports {
            Selection::All => {
                for p in sorted(&opts.exclude_inbound_ports) {
                    nat(format!("-A {INBOUND} -p tcp --dport {p} -j RETURN"));
                }
                nat(format!("-A {INBOUND} -p tcp -j {IN_REDIRECT}"));
            }
            Selection::Only(ports) => {
                for p in sorted(ports) {
                    nat(format!("-A {INBOUND} -p tcp --dport {p} -j {IN_REDIRECT}"));
                }
            }
        }
    }
    nat(format!("-A OUTPUT -p tcp -j {OUTPUT}"));
    for p in sorted(&opts.exclude_outbound_ports) {
        nat(format!("-A {OUTPUT} -p tcp --dport {p} -j RETURN"));
    }
    // The proxy's connections to the app on localhost come from the inbound passthrough address.
    nat(format!("-A {OUTPUT} -o lo -s {passthrough} -j RETURN"));
    for (flag, id) in [
        ("--uid-owner", opts.proxy_uid),
        ("--gid-owner", opts.proxy_gid),
    ] {
        if inbound {
            // The proxy calling its own pod IP is inbound traffic for this pod.
            nat(format!(
                "-A {OUTPUT} -o lo ! -d {localhost} -m owner {flag} {id} -j {IN_REDIRECT}"
            ));
        }
        nat(format!(
            "-A {OUTPUT} -o lo -m owner ! {flag} {id} -j RETURN"
        ));
        nat(format!("-A {OUTPUT} -m owner {flag} {id} -j RETURN"));
    }
    nat(format!("-A {OUTPUT} -d {localhost} -j RETURN"));
    for n in opts.exclude_outbound_ranges.iter().filter(same_family) {
        nat(format!("-A {OUTPUT} -d {n} -j RETURN"));
    }
    match &opts.outbound_ranges {
        Selection::All => nat(format!("-A {OUTPUT} -j {REDIRECT}")),
        Selection::Only(ranges) => {
            let ranges: Vec<&IpNet> = ranges.iter().filter(same_family).collect();
            for n in &ranges {
                nat(format!("-A {OUTPUT} -d {n} -j {REDIRECT}"));
            }
            if !ranges.is_empty() {
                nat(format!("-A {OUTPUT} -j RETURN"));
            }
        }
    }
    r
}

fn sorted(ports: &[u16]) -> Vec<u16> {
    let mut p = ports.to_vec();
    p.sort_unstable();
    p.dedup();
    p
}

#[cfg(test)]
mod tests;
