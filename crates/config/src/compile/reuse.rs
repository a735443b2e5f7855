//! Incremental compilation: what a build takes from the previous build's compiled parts.
//!
//! Every build records its compiled units (the clusters of each service, each gateway and mesh
//! virtual host) with what they were made from: the objects that contributed and the hosts
//! their routes resolved. The next build compares its objects with the previous ones (the same
//! `Arc`, or equal), finds the hosts whose service or DestinationRule changed, and keeps every
//! unit whose objects are the same and whose hosts are untouched. A unit kept is the previous
//! snapshot's `Arc`: one edited VirtualService in a 10,000-service config recompiles its own
//! virtual hosts, not 20,000. Changes it cannot scope (Gateways, Sidecars, security objects,
//! the proxy's settings, DNS answers) make a full compile, as does a first build.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use foldhash::fast::RandomState as Fast;
use sluice_model::{Diagnostic, Kind, Resource, Spec};
use smallvec::SmallVec;

use super::Compiler;
use crate::cluster::Cluster;
use crate::cluster_map::ClusterMap;
use crate::dns::DnsAnswers;
use crate::host::fqdn;
use crate::local_cluster::LocalCluster;
use crate::proxy::ProxyConfig;
use crate::registry::{Registry, Service};
use crate::vhost::{VirtualHost, VirtualHostTable};

/// An object's identity for the duration of a build: its address, stable while the previous
/// build's memo keeps the object alive.
pub(crate) fn address(r: &Resource) -> usize {
    std::ptr::from_ref(r) as usize
}

/// The compiled units of one build, for the next build to take from.
#[derive(Debug, Default)]
pub struct Memo {
    /// The objects compiled (after canary overlays); kept alive so that an address seen in a
    /// unit names the same object for as long as this memo exists.
    inputs: Vec<Arc<Resource>>,
    /// Whether `inputs` are the objects the units' addresses point into (not the case for a
    /// build from borrowed objects, whose memo cannot be reused).
    usable: bool,
    proxy: Option<ProxyConfig>,
    dns: Option<DnsAnswers>,
    /// The services each ServiceEntry made, by its address (before any Sidecar scoping).
    pub(crate) services: HashMap<usize, Arc<[Arc<Service>]>, Fast>,
    /// The clusters of each service, by host name.
    pub(crate) clusters: HashMap<String, Arc<[Arc<Cluster>]>, Fast>,
    /// Every cluster by name, as the snapshot has them.
    pub(crate) cluster_map: Arc<ClusterMap>,
    /// Virtual hosts by their key (listener, filter chain, domain or service), as a
    /// [`unit_key`]: kept as strings, the keys were 30,000 allocations at 10,000 services,
    /// and a build that made them anew left them scattered among its transient allocations,
    /// keeping their pages resident after the build.
    pub(crate) vhosts: HashMap<UnitKey, Arc<VhostUnit>, Fast>,
    /// Host tables by listener (gateway address, mesh port).
    pub(crate) tables: HashMap<String, Arc<VirtualHostTable>, Fast>,
    /// The proxy's own service instances, which zone-aware clusters were balanced by.
    pub(crate) local: LocalCluster,
}

impl Memo {
    /// What a registry build over `objects` may take from this memo's services: a
    /// ServiceEntry that is the same object keeps its services unless it selects workloads
    /// and a WorkloadEntry was added, changed or removed (for the cross-object analysis, which
    /// builds a registry of its own beside the compile).
    pub(crate) fn kept_services<'m>(
        &'m self,
        objects: &[&Resource],
    ) -> impl Fn(&Resource) -> Option<&'m [Arc<Service>]> + 'm {
        let mut now = objects
            .iter()
            .filter(|r| matches!(r.spec, Spec::WorkloadEntry(_)))
            .map(|r| address(r));
        let mut before = self
            .inputs
            .iter()
            .filter(|r| matches!(r.spec, Spec::WorkloadEntry(_)))
            .map(|r| address(r));
        let workloads_changed = !self.usable || !now.by_ref().eq(before.by_ref());
        move |r: &Resource| {
            let Spec::ServiceEntry(se) = &r.spec else {
                return None;
            };
            if !self.usable || se.workload_selector.is_some() && workloads_changed {
                return None;
            }
            self.services.get(&address(r)).map(|s| &**s)
        }
    }

    /// Room for as many services, clusters, virtual hosts and tables as `other` holds.
    pub(crate) fn reserve_like(&mut self, other: &Memo) {
        self.services.reserve(other.services.len());
        self.clusters.reserve(other.clusters.len());
        self.vhosts.reserve(other.vhosts.len());
        self.tables.reserve(other.tables.len());
    }

    /// A memo for the objects `inputs`, to be filled by the build that compiles them.
    pub(crate) fn new(
        inputs: Option<Vec<Arc<Resource>>>,
        proxy: &ProxyConfig,
        dns: Option<&DnsAnswers>,
    ) -> Memo {
        Memo {
            usable: inputs.is_some(),
            inputs: inputs.unwrap_or_default(),
            proxy: Some(proxy.clone()),
            dns: dns.cloned(),
            services: HashMap::default(),
            clusters: HashMap::default(),
            cluster_map: Arc::default(),
            vhosts: HashMap::default(),
            tables: HashMap::default(),
            local: LocalCluster::default(),
        }
    }
}

/// A host's or gateway's name as a compiled unit remembers it: a hash, the same in every
/// build of the process. Units kept names as strings, three small allocations per virtual
/// host (4 MB at 10,000 services). Two names of one hash could only make a unit look
/// touched when it is not (compiled again for nothing), or a renamed object look bound
/// through its former gateway, whose change makes a full compile anyway.
pub(crate) fn name_hash(name: &str) -> u64 {
    use std::hash::BuildHasher as _;
    foldhash::quality::FixedState::with_seed(0x5eed_51c3).hash_one(name)
}

/// A compiled unit's key: 128 bits of two hashes of its name, seeded alike in every build of
/// the process (as [`sluice_lb::StateStore`] keys state). Two names share a unit only if both
/// 64-bit hashes agree: as likely as a random 128-bit collision.
pub(crate) type UnitKey = [u64; 2];

/// The [`UnitKey`] of a unit named `name`.
pub(crate) fn unit_key(name: &str) -> UnitKey {
    use std::hash::BuildHasher as _;
    [0x9e37_79b9_7f4a_7c15, 0xc2b2_ae3d_27d4_eb4f]
        .map(|seed| foldhash::quality::FixedState::with_seed(seed).hash_one(name))
}

/// A unit's record of `fresh` (address and gateway of each contributing object).
fn contributors(fresh: &[(usize, &str)]) -> SmallVec<[(usize, u64); 1]> {
    fresh.iter().map(|(a, g)| (*a, name_hash(g))).collect()
}

/// One compiled virtual host and what it was compiled from.
#[derive(Debug)]
pub(crate) struct VhostUnit {
    /// The contributing objects (addresses) with the gateway each reached it through
    /// ([`name_hash`]).
    pub(crate) contributors: SmallVec<[(usize, u64); 1]>,
    /// Every host the routes resolved (destinations, mirrors, the service itself), as
    /// [`name_hash`]es, sorted.
    pub(crate) deps: SmallVec<[u64; 2]>,
    /// The virtual host.
    pub(crate) vhost: Arc<VirtualHost>,
    /// Findings made while compiling it.
    pub(crate) diagnostics: Vec<Diagnostic>,
}

/// What changed since the previous build, and what of it can be kept.
pub(crate) struct Reuse<'p> {
    memo: &'p Memo,
    /// New address → previous address, for equal objects that are not the same `Arc`.
    renamed: HashMap<usize, usize, Fast>,
    /// Hosts (lowercase FQDN) whose service or DestinationRule changed.
    affected: HashSet<String, Fast>,
    /// Their [`name_hash`]es.
    affected_hashes: HashSet<u64, Fast>,
    /// Whether a WorkloadEntry was added, changed or removed (the endpoints of every
    /// ServiceEntry with a workload selector may have changed).
    workloads_changed: bool,
}

/// An object's name within its kind.
type Key<'r> = (Kind, &'r str, &'r str);

fn key(r: &Resource) -> Key<'_> {
    (
        r.kind,
        r.metadata.namespace.as_str(),
        r.metadata.name.as_str(),
    )
}

impl<'p> Reuse<'p> {
    /// What `objects` (every object of the new build) may take from `memo`, the previous build
    /// compiled for the same proxy; `None` when it must compile in full. The services of the
    /// new registry are compared with `services_changed` once it is built.
    pub(crate) fn new(
        memo: &'p Memo,
        objects: &[&Resource],
        proxy: &ProxyConfig,
        dns: Option<&DnsAnswers>,
    ) -> Option<Reuse<'p>> {
        if !memo.usable || memo.proxy.as_ref() != Some(proxy) || memo.dns.as_ref() != dns {
            return None;
        }
        let mut reuse = Reuse {
            memo,
            renamed: HashMap::default(),
            affected: HashSet::default(),
            affected_hashes: HashSet::default(),
            workloads_changed: false,
        };
        // Mostly the very objects in the same places (unchanged files and watched objects keep
        // theirs): only the others need their previous version looked up by name.
        let same_place = memo.inputs.len() == objects.len()
            && memo
                .inputs
                .iter()
                .zip(objects)
                .all(|(b, r)| address(b) == address(r) || key(b) == key(r));
        if same_place {
            for (b, r) in memo.inputs.iter().zip(objects) {
                reuse.compare(Some(&**b), r)?;
            }
            return Some(reuse);
        }
        let mut old: HashMap<Key<'_>, &Resource, Fast> =
            memo.inputs.iter().map(|r| (key(r), &**r)).collect();
        for r in objects {
            reuse.compare(old.remove(&key(r)), r)?;
        }
        for gone in old.into_values() {
            reuse.changed(Some(gone))?;
        }
        Some(reuse)
    }

    /// Notes how `r` differs from its previous version `before`; `None` when the change
    /// cannot be scoped.
    fn compare(&mut self, before: Option<&Resource>, r: &Resource) -> Option<()> {
        match before {
            Some(b) if address(b) == address(r) => {}
            Some(b) if b == r => {
                self.renamed.insert(address(r), address(b));
            }
            _ => {
                self.changed(before)?;
                self.changed(Some(r))?;
            }
        }
        Some(())
    }

    /// The services a ServiceEntry of this build may take from the previous one: the same
    /// object, whose endpoints cannot have changed (no workload selector, or no WorkloadEntry
    /// changed).
    pub(crate) fn services_of(&self, r: &Resource) -> Option<&'p [Arc<Service>]> {
        let Spec::ServiceEntry(se) = &r.spec else {
            return None;
        };
        if se.workload_selector.is_some() && self.workloads_changed {
            return None;
        }
        self.memo.services.get(&address(r)).map(|s| &**s)
    }

    /// Notes the services whose endpoints, ports or addresses changed between the `previous`
    /// registry and this build's, and those gone (a service taken from the previous build is
    /// the same `Arc`: not compared).
    pub(crate) fn services_changed(&mut self, previous: &Registry, registry: &Registry) {
        for svc in registry.services() {
            let same = previous
                .get(&svc.hostname)
                .is_some_and(|p| Arc::ptr_eq(p, svc) || **p == **svc);
            if !same {
                self.affect(svc.hostname.clone());
            }
        }
        for svc in previous.services() {
            if registry.get(&svc.hostname).is_none() {
                self.affect(svc.hostname.clone());
            }
        }
    }

    /// Notes the services whose clusters balance by zone (`zoneAwareLbSetting`) when the
    /// proxy's own service instances, which weigh the zones, changed.
    pub(crate) fn local_cluster_changed(&mut self, now: &LocalCluster) {
        if self.memo.local == *now {
            return;
        }
        for (host, clusters) in &self.memo.clusters {
            let zone_aware = clusters
                .iter()
                .any(|c| c.policy.locality.as_ref().is_some_and(|l| l.zone_aware));
            if zone_aware {
                self.affect(host.clone());
            }
        }
    }

    /// Notes one version of a changed object; `None` when its kind cannot be scoped.
    fn changed(&mut self, r: Option<&Resource>) -> Option<()> {
        let Some(r) = r else { return Some(()) };
        match &r.spec {
            // Which VirtualService claims a host is decided afresh each build, and a unit is kept
            // only when the same objects contribute to it.
            Spec::VirtualService(_) | Spec::Canary(_) => {}
            Spec::DestinationRule(dr) => {
                let host = fqdn(&dr.host, &r.metadata.namespace);
                if host.contains('*') {
                    return None;
                }
                self.affect(host.to_ascii_lowercase());
            }
            Spec::ServiceEntry(se) => {
                for h in &se.hosts {
                    if h.contains('*') {
                        return None;
                    }
                    self.affect(h.trim_end_matches('.').to_ascii_lowercase());
                }
            }
            // The registry comparison finds the services it changes.
            Spec::WorkloadEntry(_) => self.workloads_changed = true,
            _ => return None,
        }
        Some(())
    }

    /// Notes a host whose service or DestinationRule changed.
    fn affect(&mut self, host: String) {
        self.affected_hashes.insert(name_hash(&host));
        self.affected.insert(host);
    }

    /// Whether a compiled part that resolved the hosts `deps` ([`name_hash`]es) is still
    /// what a compile would make.
    pub(crate) fn untouched(&self, deps: &[u64]) -> bool {
        self.affected_hashes.is_empty() || !deps.iter().any(|h| self.affected_hashes.contains(h))
    }

    /// The previous clusters of the service `host`, when they can be kept.
    pub(crate) fn clusters(&self, host: &str) -> Option<&Arc<[Arc<Cluster>]>> {
        if self.affected.contains(host) {
            return None;
        }
        self.memo.clusters.get(host)
    }

    /// The previous build's whole cluster map, when each of `services` keeps its clusters and
    /// no service came or went: the map is then the same, and building it again would cost as
    /// much as the config is large.
    pub(crate) fn all_clusters(&self, services: &[Arc<Service>]) -> Option<Arc<ClusterMap>> {
        (self.memo.clusters.len() == services.len()
            && services
                .iter()
                .all(|s| self.clusters(&s.hostname).is_some()))
        .then(|| Arc::clone(&self.memo.cluster_map))
    }

    /// The previous virtual host under `key`, when the same objects contribute to it now
    /// (`fresh`: address and gateway of each) and none of its hosts changed. The unit comes
    /// back with the new objects' addresses.
    pub(crate) fn vhost(&self, key: &UnitKey, fresh: &[(usize, &str)]) -> Option<Arc<VhostUnit>> {
        let unit = self.memo.vhosts.get(key)?;
        if unit.contributors.len() != fresh.len() {
            return None;
        }
        let mut renamed = false;
        for ((old, old_gw), (new, new_gw)) in unit.contributors.iter().zip(fresh) {
            // The same object binds through the same gateway: a build that reuses anything has
            // every Gateway unchanged (a changed one makes a full compile), so its gateway name,
            // a string elsewhere in memory, need not be read.
            if old == new {
                continue;
            }
            if *old_gw != name_hash(new_gw) || self.renamed.get(new) != Some(old) {
                return None;
            }
            renamed = true;
        }
        if !self.untouched(&unit.deps) {
            return None;
        }
        if !renamed {
            return Some(Arc::clone(unit));
        }
        let unit = VhostUnit {
            contributors: contributors(fresh),
            deps: unit.deps.clone(),
            vhost: Arc::clone(&unit.vhost),
            diagnostics: unit.diagnostics.clone(),
        };
        Some(Arc::new(unit))
    }
}

impl Compiler<'_> {
    /// The virtual host under `key` ([`unit_key`]): the previous build's when `fresh` (the
    /// contributing objects' addresses and gateways) and the hosts it resolved are unchanged,
    /// else `build`'s, recorded for the next build with the hosts it resolved and its findings.
    pub(crate) fn vhost_unit(
        &mut self,
        key: UnitKey,
        fresh: &[(usize, &str)],
        build: impl FnOnce(&mut Self) -> VirtualHost,
    ) -> Arc<VirtualHost> {
        if let Some(unit) = self.reuse.as_ref().and_then(|r| r.vhost(&key, fresh)) {
            self.diagnostics.extend(unit.diagnostics.iter().cloned());
            let vh = Arc::clone(&unit.vhost);
            self.memo.vhosts.insert(key, unit);
            return vh;
        }
        let outer = std::mem::take(&mut self.diagnostics);
        self.deps.take();
        self.delegated.set(false);
        let mut built = build(self);
        // Kept for the life of the snapshot (and reused by later ones): no spare capacity
        // (`format!` leaves up to twice the length).
        built.name.shrink_to_fit();
        let vh = Arc::new(built);
        let diagnostics = std::mem::replace(&mut self.diagnostics, outer);
        self.diagnostics.extend(diagnostics.iter().cloned());
        let mut deps = self.deps.take();
        deps.sort_unstable();
        deps.dedup();
        let deps = SmallVec::from_vec(deps);
        if !self.delegated.get() {
            let unit = VhostUnit {
                contributors: contributors(fresh),
                deps,
                vhost: Arc::clone(&vh),
                diagnostics,
            };
            self.memo.vhosts.insert(key, Arc::new(unit));
        }
        vh
    }

    /// The host table of `vhosts` under `key`: the previous build's when it holds the very
    /// same virtual hosts in the same order (its domain index is then the same).
    pub(crate) fn vhost_table(
        &mut self,
        key: String,
        vhosts: Vec<Arc<VirtualHost>>,
    ) -> Arc<VirtualHostTable> {
        let previous = self.reuse.as_ref().and_then(|r| r.memo.tables.get(&key));
        let table = match previous {
            Some(t)
                if t.vhosts.len() == vhosts.len()
                    && t.vhosts.iter().zip(&vhosts).all(|(a, b)| Arc::ptr_eq(a, b)) =>
            {
                Arc::clone(t)
            }
            Some(t) => Arc::new(VirtualHostTable::updating(t, vhosts)),
            None => Arc::new(VirtualHostTable::new(vhosts)),
        };
        self.memo.tables.insert(key, Arc::clone(&table));
        table
    }
}
