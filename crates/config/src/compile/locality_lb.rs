//! DestinationRule `loadBalancer.localityLbSetting` → the [`LocalityPolicy`] a cluster balances
//! with. Validation has already rejected malformed settings; what is left unreadable is ignored.

use serde_json::Value;
use sluice_lb::{Distribute, LocalityPolicy};
use sluice_model::LoadBalancerSettings;

/// The setting in force: the DestinationRule's when it has one (`zoneAwareLbSetting` or
/// `localityLbSetting`), otherwise the mesh default (enabled, no rules); `enabled: false` turns
/// locality balancing off (`None`).
pub(crate) fn locality_policy(lb: Option<&LoadBalancerSettings>) -> Option<LocalityPolicy> {
    // `zoneAwareLbSetting` (exclusive with `localityLbSetting`): tiers by region and routes by
    // zone within the proxy's region. `enabled: false` still wins over the mesh default: Istio
    // then sets Envoy's `routing_enabled` to 0 % and assigns no priorities at all.
    if let Some(zone_aware) = lb.and_then(|lb| lb.zone_aware_lb_setting.as_ref()) {
        if zone_aware.get("enabled").and_then(enabled) == Some(false) {
            return None;
        }
        let mut policy = rules(zone_aware);
        policy.zone_aware = true;
        policy.min_cluster_size = zone_aware.get("minClusterSize").and_then(|m| {
            m.as_u64()
                .or_else(|| m.as_str().and_then(|s| s.parse().ok()))
                .or_else(|| m.get("value").and_then(Value::as_u64))
        });
        return Some(policy);
    }
    let Some(setting) = lb.and_then(|lb| lb.locality_lb_setting.as_ref()) else {
        return Some(LocalityPolicy::default());
    };
    if setting.get("enabled").and_then(enabled) == Some(false) {
        return None;
    }
    Some(rules(setting))
}

/// The `distribute`, `failover` and `failoverPriority` rules of a setting.
fn rules(setting: &Value) -> LocalityPolicy {
    let list = |key: &str| -> &[Value] {
        setting
            .get(key)
            .and_then(Value::as_array)
            .map_or(&[], Vec::as_slice)
    };
    let text = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).map(str::to_string);
    let distribute = list("distribute")
        .iter()
        .filter_map(|d| {
            let to = d
                .get("to")
                .and_then(Value::as_object)?
                .iter()
                .filter_map(|(loc, w)| Some((loc.clone(), u32::try_from(w.as_u64()?).ok()?)))
                .collect();
            Some(Distribute {
                from: text(d, "from")?,
                to,
            })
        })
        .collect();
    let failover = list("failover")
        .iter()
        .filter_map(|f| Some((text(f, "from")?, text(f, "to")?)))
        .collect();
    let failover_priority = list("failoverPriority")
        .iter()
        .filter_map(|p| p.as_str().map(str::to_string))
        .collect();
    LocalityPolicy {
        distribute,
        failover,
        failover_priority,
        zone_aware: false,
        min_cluster_size: None,
    }
}

/// `enabled` as a boolean, or the `{value: bool}` wrapper form.
fn enabled(v: &Value) -> Option<bool> {
    v.as_bool()
        .or_else(|| v.get("value").and_then(Value::as_bool))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lb(setting: Value) -> LoadBalancerSettings {
        LoadBalancerSettings {
            locality_lb_setting: Some(setting),
            ..Default::default()
        }
    }

    #[test]
    fn zone_aware_setting_tiers_by_region_unless_disabled() {
        let zone_aware = |setting: Value| LoadBalancerSettings {
            zone_aware_lb_setting: Some(setting),
            ..Default::default()
        };
        let on = locality_policy(Some(&zone_aware(serde_json::json!({
            "enabled": true,
            "failover": [{"from": "region1", "to": "region3"}],
        }))))
        .unwrap();
        assert!(on.zone_aware);
        assert_eq!(on.failover, vec![("region1".into(), "region3".into())]);
        assert_eq!(on.min_cluster_size, None);
        let sized = locality_policy(Some(&zone_aware(serde_json::json!({"minClusterSize": 4}))));
        assert_eq!(sized.and_then(|p| p.min_cluster_size), Some(4));
        // Istio: a disabled zone-aware setting turns locality balancing off altogether.
        let off = locality_policy(Some(&zone_aware(serde_json::json!({"enabled": false}))));
        assert_eq!(off, None);
    }

    #[test]
    fn absent_means_enabled_without_rules() {
        assert_eq!(locality_policy(None), Some(LocalityPolicy::default()));
        assert_eq!(
            locality_policy(Some(&LoadBalancerSettings::default())),
            Some(LocalityPolicy::default())
        );
    }

    #[test]
    fn disabled_is_none() {
        let s = lb(serde_json::json!({"enabled": false, "failover": [{"from": "a", "to": "b"}]}));
        assert_eq!(locality_policy(Some(&s)), None);
    }

    #[test]
    fn reads_every_rule() {
        let s = lb(serde_json::json!({
            "enabled": true,
            "distribute": [{"from": "r1/z1/*", "to": {"r1/z1/*": 70, "r1/z2/*": 30}}],
            "failoverPriority": ["topology.istio.io/network"],
        }));
        let p = locality_policy(Some(&s)).unwrap_or_default();
        assert_eq!(p.distribute.len(), 1);
        assert_eq!(p.distribute[0].to.len(), 2);
        assert_eq!(p.failover_priority, vec!["topology.istio.io/network"]);
        let s = lb(serde_json::json!({"failover": [{"from": "r1", "to": "r2"}]}));
        let p = locality_policy(Some(&s)).unwrap_or_default();
        assert_eq!(p.failover, vec![("r1".to_string(), "r2".to_string())]);
    }
}
