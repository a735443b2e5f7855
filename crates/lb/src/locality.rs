//! Localities (`region/zone/subzone`) and Istio's locality patterns (`region1/zone1/*`).

use std::fmt;

/// Where a proxy or an endpoint runs. Missing parts are empty strings, as in Envoy's `Locality`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Locality {
    /// Region (`topology.kubernetes.io/region`).
    pub region: String,
    /// Zone (`topology.kubernetes.io/zone`).
    pub zone: String,
    /// Sub-zone (`topology.istio.io/subzone`).
    pub subzone: String,
}

impl Locality {
    /// Parses `region/zone/subzone`; zone and subzone are optional, and anything after a third
    /// `/` stays in the subzone (Istio splits into at most three parts).
    pub fn parse(text: &str) -> Locality {
        let mut parts = text.trim().splitn(3, '/');
        let mut next = || parts.next().unwrap_or("").to_string();
        Locality {
            region: next(),
            zone: next(),
            subzone: next(),
        }
    }

    /// Whether nothing is known (no region, zone or subzone).
    pub fn is_empty(&self) -> bool {
        self.region.is_empty() && self.zone.is_empty() && self.subzone.is_empty()
    }

    /// Istio's `LocalityMatch`: `pattern` is `region[/zone[/subzone]]`, each part either a value
    /// or `*`; parts the pattern leaves out match anything.
    pub fn matches(&self, pattern: &str) -> bool {
        let mine = [&self.region, &self.zone, &self.subzone];
        pattern
            .split('/')
            .zip(mine)
            .all(|(want, have)| want == "*" || want == have)
    }

    /// The value of a topology label key for this locality, for `failoverPriority`
    /// (`topology.kubernetes.io/region`, `…/zone`, `topology.istio.io/subzone`).
    pub fn topology_label(&self, key: &str) -> Option<&str> {
        match key {
            "topology.kubernetes.io/region" | "failure-domain.beta.kubernetes.io/region" => {
                Some(&self.region)
            }
            "topology.kubernetes.io/zone" | "failure-domain.beta.kubernetes.io/zone" => {
                Some(&self.zone)
            }
            "topology.istio.io/subzone" => Some(&self.subzone),
            _ => None,
        }
    }
}

impl fmt::Display for Locality {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.region)?;
        if !self.zone.is_empty() || !self.subzone.is_empty() {
            write!(f, "/{}", self.zone)?;
        }
        if !self.subzone.is_empty() {
            write!(f, "/{}", self.subzone)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_partial_localities() {
        let l = Locality::parse("region1/zone1");
        assert_eq!(
            (l.region.as_str(), l.zone.as_str(), l.subzone.as_str()),
            ("region1", "zone1", "")
        );
        assert_eq!(Locality::parse("r/z/s/x").subzone, "s/x");
        assert!(Locality::parse("").is_empty());
        assert_eq!(Locality::parse("r/z/s").to_string(), "r/z/s");
        assert_eq!(Locality::parse("r").to_string(), "r");
    }

    #[test]
    fn patterns_match_with_wildcards_and_prefixes() {
        let l = Locality::parse("region1/zone1/sub1");
        assert!(l.matches("region1/zone1/*"));
        assert!(l.matches("region1/*"));
        assert!(l.matches("region1"));
        assert!(l.matches("*"));
        assert!(l.matches("region1/zone1/sub1"));
        assert!(!l.matches("region1/zone2/*"));
        assert!(!l.matches("region2"));
        assert!(Locality::parse("region1/zone1").matches("region1/zone1/*"));
    }

    #[test]
    fn topology_labels_read_the_parts() {
        let l = Locality::parse("a/b/c");
        assert_eq!(l.topology_label("topology.kubernetes.io/zone"), Some("b"));
        assert_eq!(l.topology_label("topology.istio.io/subzone"), Some("c"));
        assert_eq!(l.topology_label("app"), None);
    }
}
