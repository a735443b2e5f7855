//! DestinationRules by host: the most specific rule for a service, with same-host rules merged.

use std::collections::BTreeMap;

use sluice_model::{DestinationRule, Resource, ResourceRef, Spec};

use crate::host::{covers, fqdn};

/// A subset as the compiler uses it.
#[derive(Debug, Clone)]
pub struct SubsetDef {
    /// Name.
    pub name: String,
    /// Endpoint label selector.
    pub labels: BTreeMap<String, String>,
    /// The DestinationRule defining it, and the subset's index there.
    pub source: (ResourceRef, usize),
}

/// Index of DestinationRules by their (expanded) host.
#[derive(Debug, Default)]
pub struct DestinationRuleIndex<'a> {
    rules: Vec<(String, &'a Resource, &'a DestinationRule)>,
}

impl<'a> DestinationRuleIndex<'a> {
    /// Indexes every DestinationRule, keeping the resources' order (oldest first).
    pub fn new(resources: &'a [&'a Resource]) -> Self {
        let rules = resources
            .iter()
            .filter_map(|r| match &r.spec {
                Spec::DestinationRule(dr) => Some((fqdn(&dr.host, &r.metadata.namespace), *r, dr)),
                _ => None,
            })
            .collect();
        DestinationRuleIndex { rules }
    }

    /// The rules that apply to `hostname`: all with the most specific matching host, oldest first.
    pub fn for_host(&self, hostname: &str) -> Vec<(&'a Resource, &'a DestinationRule)> {
        let best = self
            .rules
            .iter()
            .filter(|(h, _, _)| covers(h, hostname))
            .map(|(h, _, _)| specificity(h))
            .max();
        let Some(best) = best else { return Vec::new() };
        self.rules
            .iter()
            .filter(|(h, _, _)| covers(h, hostname) && specificity(h) == best)
            .map(|(_, r, dr)| (*r, *dr))
            .collect()
    }

    /// Merged subsets for a host: concatenated in rule order, the first of a name wins.
    pub fn subsets(&self, hostname: &str) -> Vec<SubsetDef> {
        let mut out: Vec<SubsetDef> = Vec::new();
        for (r, dr) in self.for_host(hostname) {
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

    /// Every indexed rule with its expanded host.
    pub fn all(&self) -> impl Iterator<Item = (&str, &'a Resource, &'a DestinationRule)> {
        self.rules.iter().map(|(h, r, dr)| (h.as_str(), *r, *dr))
    }
}

/// Exact hosts beat wildcards; longer wildcard suffixes beat shorter ones.
fn specificity(host: &str) -> usize {
    if host.starts_with('*') {
        host.len()
    } else {
        usize::MAX
    }
}
