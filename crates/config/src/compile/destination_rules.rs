//! DestinationRules by host: the most specific rule for a service, with same-host rules merged.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use smallvec::SmallVec;

use sluice_model::{DestinationRule, Resource, ResourceRef, Spec};

use crate::host::{covers, fqdn_cow};
use crate::labels::selector_matches;

/// A subset as the compiler uses it.
#[derive(Debug, Clone)]
pub struct SubsetDef {
    /// Name.
    pub name: String,
    /// Endpoint label selector.
    pub labels: sluice_model::SmallMap<String, String>,
    /// The DestinationRule defining it, and the subset's index there.
    pub source: (ResourceRef, usize),
}

/// Index of DestinationRules by their (expanded) host.
#[derive(Debug, Default)]
pub struct DestinationRuleIndex<'a> {
    /// Each rule's expanded host (lowercase), borrowed from the rule when it is one already.
    rules: Vec<(Cow<'a, str>, &'a Resource, &'a DestinationRule)>,
    /// Positions in `rules` of the rules for one exact host, oldest first: a lookup per
    /// service must not scan every rule (10,000 services made that quadratic). Keyed by the
    /// same names: an index is made on every edit (by the analysis), and a copy of each host
    /// and a list per host were 1 MB of its 2.4 MB at 10,000 services.
    exact: HashMap<Cow<'a, str>, SmallVec<[usize; 1]>, foldhash::fast::RandomState>,
    /// Positions of the wildcard rules, oldest first.
    wildcards: Vec<usize>,
    /// The labels of the proxy compiled for (`workloadSelector`); `None`: rules with a
    /// selector never apply.
    proxy_labels: Option<&'a BTreeMap<String, String>>,
}

impl<'a> DestinationRuleIndex<'a> {
    /// Indexes every DestinationRule, keeping the resources' order (oldest first).
    pub fn new(resources: &'a [&'a Resource]) -> Self {
        let rules = resources
            .iter()
            .filter_map(|r| match &r.spec {
                Spec::DestinationRule(dr) => {
                    Some((fqdn_cow(&dr.host, &r.metadata.namespace), *r, &**dr))
                }
                _ => None,
            })
            .collect::<Vec<_>>();
        let mut exact: HashMap<Cow<'a, str>, SmallVec<[usize; 1]>, foldhash::fast::RandomState> =
            HashMap::with_capacity_and_hasher(rules.len(), Default::default());
        let mut wildcards = Vec::new();
        for (i, (host, _, _)) in rules.iter().enumerate() {
            if host.starts_with('*') {
                wildcards.push(i);
            } else {
                exact.entry(host.clone()).or_default().push(i);
            }
        }
        DestinationRuleIndex {
            rules,
            exact,
            wildcards,
            proxy_labels: None,
        }
    }

    /// The index for a proxy with these labels: rules with a `workloadSelector` apply to it
    /// when the selector matches.
    pub fn for_proxy(mut self, labels: &'a BTreeMap<String, String>) -> Self {
        self.proxy_labels = Some(labels);
        self
    }

    /// The rules that apply to `hostname`: all with the most specific matching host, oldest
    /// first, whatever their namespace.
    pub fn for_host(&self, hostname: &str) -> Vec<(&'a Resource, &'a DestinationRule)> {
        self.matching(hostname, None)
    }

    /// The rules a proxy applies to a service, as Istio looks them up: those of the first of
    /// `namespaces` (the proxy's, the service's, the root namespace) that has a rule for the
    /// host, the most specific host first within it.
    pub fn for_service(
        &self,
        hostname: &str,
        namespaces: &[&str],
    ) -> Vec<(&'a Resource, &'a DestinationRule)> {
        namespaces
            .iter()
            .enumerate()
            .filter(|(_, ns)| !ns.is_empty())
            .map(|(k, ns)| (k, self.matching(hostname, Some(ns))))
            .find(|(_, found)| !found.is_empty())
            .map(|(k, found)| self.selected(found, k == 0))
            .unwrap_or_default()
    }

    /// Istio's choice among the rules found for a host in one namespace (`SidecarScope.
    /// DestinationRule`): in the proxy's own namespace, the first rule whose `workloadSelector`
    /// matches the proxy wins (with the rules carrying the same selector, which Istio merges
    /// into it); otherwise the rules without a selector. A selector rule that does not match
    /// still hides other namespaces' rules for the host, as in Istio.
    fn selected(
        &self,
        found: Vec<(&'a Resource, &'a DestinationRule)>,
        proxy_namespace: bool,
    ) -> Vec<(&'a Resource, &'a DestinationRule)> {
        if found.iter().all(|(_, dr)| dr.workload_selector.is_none()) {
            return found;
        }
        let chosen = self
            .proxy_labels
            .filter(|_| proxy_namespace)
            .and_then(|labels| {
                found
                    .iter()
                    .filter_map(|(_, dr)| dr.workload_selector.as_ref())
                    .find(|sel| selector_matches(&sel.match_labels, labels))
            })
            .map(|sel| sel.match_labels.clone());
        found
            .into_iter()
            .filter(|(_, dr)| match (&chosen, &dr.workload_selector) {
                (Some(want), Some(sel)) => sel.match_labels == *want,
                (None, None) => true,
                _ => false,
            })
            .collect()
    }

    /// The rules with the most specific host covering `hostname`, of namespace `ns` if given.
    fn matching(
        &self,
        hostname: &str,
        ns: Option<&str>,
    ) -> Vec<(&'a Resource, &'a DestinationRule)> {
        let in_ns = |i: &usize| {
            ns.is_none_or(|ns| {
                self.rules
                    .get(*i)
                    .is_some_and(|(_, r, _)| r.metadata.namespace == ns)
            })
        };
        // An exact host is the most specific match there is (a wildcard name is only covered
        // by wildcards).
        if !hostname.starts_with('*') {
            if let Some(found) = self.exact.get(&*crate::host::lowercase(hostname)) {
                let found: Vec<_> = found
                    .iter()
                    .filter(|i| in_ns(i))
                    .filter_map(|&i| self.at(i))
                    .collect();
                if !found.is_empty() {
                    return found;
                }
            }
        }
        let covering = || {
            self.wildcards
                .iter()
                .filter(|i| in_ns(i))
                .filter_map(|&i| Some((i, &*self.rules.get(i)?.0)))
                .filter(|(_, h)| covers(h, hostname))
        };
        let Some(best) = covering().map(|(_, h)| specificity(h)).max() else {
            return Vec::new();
        };
        covering()
            .filter(|(_, h)| specificity(h) == best)
            .filter_map(|(i, _)| self.at(i))
            .collect()
    }

    fn at(&self, i: usize) -> Option<(&'a Resource, &'a DestinationRule)> {
        self.rules.get(i).map(|(_, r, dr)| (*r, *dr))
    }

    /// Merged subsets for a host: concatenated in rule order, the first of a name wins.
    pub fn subsets(&self, hostname: &str) -> Vec<SubsetDef> {
        merged_subsets(self.for_host(hostname))
    }

    /// Whether a rule for the host defines subset `name`: [`subsets`](Self::subsets) without
    /// copying every subset's labels (the analysis asks this once per routed destination).
    pub fn has_subset(&self, hostname: &str, name: &str) -> bool {
        self.for_host(hostname)
            .iter()
            .any(|(_, dr)| dr.subsets.iter().any(|s| s.name == name))
    }

    /// Merged subsets of the rules [`for_service`](Self::for_service) picks.
    pub fn subsets_for(&self, hostname: &str, namespaces: &[&str]) -> Vec<SubsetDef> {
        merged_subsets(self.for_service(hostname, namespaces))
    }

    /// Every indexed rule with its expanded host.
    pub fn all(&self) -> impl Iterator<Item = (&str, &'a Resource, &'a DestinationRule)> {
        self.rules.iter().map(|(h, r, dr)| (&**h, *r, *dr))
    }
}

/// Subsets concatenated in rule order; the first of a name wins.
fn merged_subsets(rules: Vec<(&Resource, &DestinationRule)>) -> Vec<SubsetDef> {
    let mut out: Vec<SubsetDef> = Vec::new();
    for (r, dr) in rules {
        for (i, s) in dr.subsets.iter().enumerate() {
            if !out.iter().any(|o| o.name == s.name) {
                out.push(SubsetDef {
                    name: s.name.clone(),
                    labels: s.labels.clone(),
                    source: (r.key(), i),
                });
            }
        }
    }
    out
}

/// Exact hosts beat wildcards; longer wildcard suffixes beat shorter ones.
fn specificity(host: &str) -> usize {
    if host.starts_with('*') {
        host.len()
    } else {
        usize::MAX
    }
}
