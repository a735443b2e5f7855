//! Request-time resolution for `resolution: DYNAMIC_DNS` (Envoy's dynamic forward proxy DNS
//! cache): the request's own host name is resolved when first seen and kept for its record's
//! TTL (bounded to [1 s, `--dns-refresh`]); later requests within the TTL cost a map lookup.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

use sluice_config::dns::refresh_interval;

use crate::{lock, DnsResolver};

/// Names kept at most (Envoy's dynamic forward proxy keeps 1,024 hosts by default); past it,
/// expired names go first, then the one expiring soonest.
const MAX_HOSTS: usize = 1024;

/// One cached answer.
#[derive(Debug, Clone)]
pub(crate) struct CachedHost {
    address: IpAddr,
    until: Instant,
}

/// The cache of request-time answers, by lower-case name.
#[derive(Debug, Default)]
pub(crate) struct HostCache {
    hosts: HashMap<String, CachedHost>,
}

impl HostCache {
    fn get(&self, name: &str, now: Instant) -> Option<IpAddr> {
        self.hosts
            .get(name)
            .filter(|h| h.until > now)
            .map(|h| h.address)
    }

    fn insert(&mut self, name: String, address: IpAddr, until: Instant, now: Instant) {
        if self.hosts.len() >= MAX_HOSTS && !self.hosts.contains_key(&name) {
            self.hosts.retain(|_, h| h.until > now);
            if self.hosts.len() >= MAX_HOSTS {
                if let Some(first) = self
                    .hosts
                    .iter()
                    .min_by_key(|(_, h)| h.until)
                    .map(|(k, _)| k.clone())
                {
                    self.hosts.remove(&first);
                }
            }
        }
        self.hosts.insert(name, CachedHost { address, until });
    }
}

impl DnsResolver {
    /// The address of `name` for a `DYNAMIC_DNS` request: from the cache while its TTL lasts,
    /// else resolved now (the first address of the answer, as Envoy's logical host uses).
    /// `None` when the name has no address or the resolution fails.
    pub async fn resolve_host(&self, name: &str) -> Option<IpAddr> {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if let Ok(ip) = name.parse::<IpAddr>() {
            return Some(ip);
        }
        let now = Instant::now();
        if let Some(ip) = lock(&self.inner.dynamic).get(&name, now) {
            return Some(ip);
        }
        // Absolute: search domains do not apply to a request's host.
        let lookup = self
            .inner
            .resolver
            .lookup_ip(format!("{name}.").as_str())
            .await;
        let lookup = match lookup {
            Ok(l) => l,
            Err(e) => {
                tracing::debug!(%name, error = %e, "DYNAMIC_DNS resolution failed");
                return None;
            }
        };
        let address = lookup.iter().next()?;
        let now = Instant::now();
        let ttl = lookup.valid_until().saturating_duration_since(now);
        let until = now + refresh_interval(ttl, self.inner.refresh);
        lock(&self.inner.dynamic).insert(name, address, until, now);
        Some(address)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn expired_answers_are_not_served_and_the_cache_is_bounded() {
        let now = Instant::now();
        let mut c = HostCache::default();
        let ip = IpAddr::from([10, 0, 0, 1]);
        c.insert(
            "a.example.com".into(),
            ip,
            now + Duration::from_secs(5),
            now,
        );
        assert_eq!(c.get("a.example.com", now), Some(ip));
        assert_eq!(c.get("a.example.com", now + Duration::from_secs(6)), None);
        for i in 0..(MAX_HOSTS + 10) {
            c.insert(format!("h{i}"), ip, now + Duration::from_secs(60), now);
        }
        assert!(c.hosts.len() <= MAX_HOSTS);
    }
}
