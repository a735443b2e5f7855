//! DestinationRule `loadBalancer.localityLbSetting` → the [`LocalityPolicy`] a cluster balances
//! with. Validation has already rejected malformed settings; what is left unreadable is ignored.

use serde_json::Value;
use sluice_lb::{Distribute, LocalityPolicy};
use sluice_model::LoadBalancerSettings;

/// The setting in force: the DestinationRule's when it has one, otherwise the mesh default
/// (enabled, no rules); `enabled: false` turns locality balancing off (`None`).
pub(crate) fn locality_policy(lb: Option<&LoadBalancerSettings>) -> Option<LocalityPolicy> {
    let Some(setting) = lb.and_then(|lb| lb.locality_lb_setting.as_ref()) else {
        return Some(LocalityPolicy::default());
    };
    if setting.get("enabled").and_then(enabled) == Some(false) {
        return None;
    }
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
    Some(LocalityPolicy {
        distribute,
        failover,
        failover_priority,
    })
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
