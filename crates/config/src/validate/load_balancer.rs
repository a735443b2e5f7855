//! Webhook/CRD validation of a DestinationRule `loadBalancer` (simple, consistent hash, locality, warm-up).

use std::collections::{BTreeMap, HashSet};

use serde_json::{Map, Value};
use sluice_model::location::{push_index, push_key};
use sluice_model::{codes, ConsistentHashLb, LoadBalancerSettings, Severity};

use super::common::{check_duration, check_duration_syntax, check_enum, check_percent};
use super::Ctx;

const TOPOLOGY_LABELS: [&str; 3] = [
    "topology.kubernetes.io/region",
    "topology.kubernetes.io/zone",
    "topology.istio.io/subzone",
];

/// Validates `loadBalancer` at `field`; `has_outlier` because locality failover needs outlier detection.
pub(super) fn check_load_balancer(
    ctx: &mut Ctx<'_>,
    field: &str,
    lb: &LoadBalancerSettings,
    has_outlier: bool,
) {
    let f = |k: &str| push_key(field, k);
    if lb.simple.is_some() && lb.consistent_hash.is_some() {
        ctx.error(
            f("consistentHash"),
            "loadBalancer may set only one of `simple` and `consistentHash`",
        );
    }
    check_enum(
        ctx,
        &f("simple"),
        "loadBalancer.simple",
        lb.simple.as_deref(),
        &[
            "UNSPECIFIED",
            "LEAST_CONN",
            "RANDOM",
            "PASSTHROUGH",
            "ROUND_ROBIN",
            "LEAST_REQUEST",
        ],
    );
    if let Some(ch) = &lb.consistent_hash {
        check_consistent_hash(ctx, &f("consistentHash"), ch);
    }
    if lb.locality_lb_setting.is_some() && lb.zone_aware_lb_setting.is_some() {
        ctx.error(
            f("zoneAwareLbSetting"),
            "loadBalancer may set only one of `localityLbSetting` and `zoneAwareLbSetting`",
        );
    }
    if let Some(v) = &lb.locality_lb_setting {
        check_locality(ctx, &f("localityLbSetting"), v, has_outlier);
    }
    if let Some(v) = &lb.zone_aware_lb_setting {
        check_zone_aware(ctx, &f("zoneAwareLbSetting"), v, has_outlier);
    }
    if let Some(w) = lb.warmup_duration_secs.as_deref() {
        check_duration(ctx, &f("warmupDurationSecs"), "warmupDurationSecs", Some(w));
        ctx.deprecated(
            f("warmupDurationSecs"),
            "warmupDurationSecs is deprecated: use warmup {duration: ...}",
        );
    }
    if let Some(w) = &lb.warmup {
        let wf = f("warmup");
        match w.duration.as_deref() {
            None => ctx.error(&wf, "warmup.duration is required"),
            Some(d) => check_duration(ctx, &push_key(&wf, "duration"), "warmup.duration", Some(d)),
        }
        if let Some(p) = &w.minimum_percent {
            check_percent(
                ctx,
                &push_key(&push_key(&wf, "minimumPercent"), "value"),
                "warmup.minimumPercent",
                p.value,
            );
        }
        if let Some(a) = w.aggression.filter(|a| *a <= 0.0) {
            ctx.error(
                push_key(&wf, "aggression"),
                format!("invalid warmup.aggression {a}: must be greater than 0 (1.0 is linear)"),
            );
        }
    }
}

fn check_consistent_hash(ctx: &mut Ctx<'_>, field: &str, ch: &ConsistentHashLb) {
    let f = |k: &str| push_key(field, k);
    let keys: Vec<&str> = [
        ("httpHeaderName", ch.http_header_name.is_some()),
        ("httpCookie", ch.http_cookie.is_some()),
        ("useSourceIp", ch.use_source_ip.is_some()),
        (
            "httpQueryParameterName",
            ch.http_query_parameter_name.is_some(),
        ),
    ]
    .iter()
    .filter(|(_, s)| *s)
    .map(|(n, _)| *n)
    .collect();
    if keys.len() > 1 {
        ctx.error(
            field,
            format!(
                "consistentHash may use only one hash key, found {}",
                keys.join(" and ")
            ),
        );
    }
    if let Some(c) = &ch.http_cookie {
        let cf = f("httpCookie");
        if c.name.is_empty() {
            ctx.error(push_key(&cf, "name"), "httpCookie.name is required");
        }
        check_duration_syntax(
            ctx,
            &push_key(&cf, "ttl"),
            "httpCookie.ttl",
            c.ttl.as_deref(),
        );
        let mut seen = HashSet::new();
        for (i, a) in c.attributes.iter().enumerate() {
            let path = push_key(&push_index(&push_key(&cf, "attributes"), i), "name");
            if a.name.is_empty() {
                ctx.error(&path, "cookie attribute name must not be empty");
            } else if !seen.insert(a.name.as_str()) {
                ctx.error(&path, format!("duplicate cookie attribute `{}`", a.name));
            }
        }
    }
    if ch.ring_hash.is_some() && ch.maglev.is_some() {
        ctx.error(
            f("maglev"),
            "consistentHash may set only one of `ringHash` and `maglev`",
        );
    }
    if ch.minimum_ring_size.is_some_and(|s| s != 0) {
        if ch.ring_hash.is_some() || ch.maglev.is_some() {
            ctx.error(
                f("minimumRingSize"),
                "minimumRingSize cannot be combined with ringHash or maglev: use ringHash.minimumRingSize",
            );
        } else {
            ctx.deprecated(
                f("minimumRingSize"),
                "consistentHash.minimumRingSize is deprecated: use ringHash {minimumRingSize: ...}",
            );
        }
    }
    if let Some(m) = &ch.maglev {
        let path = push_key(&f("maglev"), "tableSize");
        match m.table_size.unwrap_or(0) {
            0 => ctx.error(
                &path,
                "maglev.tableSize is required (a prime below 5000011, e.g. 65537)",
            ),
            n if n >= 5_000_011 => ctx.error(
                &path,
                format!("invalid maglev.tableSize {n}: must be a prime below 5000011"),
            ),
            n if !is_prime(n) => ctx.error(
                &path,
                format!("invalid maglev.tableSize {n}: must be a prime number (e.g. 65537)"),
            ),
            _ => {}
        }
    }
}

/// Envoy's primality test (which, like Istio, counts 1 as prime).
fn is_prime(x: u64) -> bool {
    if x != 0 && x < 4 {
        return true;
    }
    if x & 1 == 0 {
        return false;
    }
    let mut f = 3u64;
    while f.saturating_mul(f) <= x {
        if x.is_multiple_of(f) {
            return false;
        }
        f += 2;
    }
    true
}

/// Reads a JSON object, reporting a wrong type and unknown keys.
fn object<'v>(
    ctx: &mut Ctx<'_>,
    field: &str,
    v: &'v Value,
    known: &[&str],
) -> Option<&'v Map<String, Value>> {
    let Some(obj) = v.as_object() else {
        ctx.error(
            field,
            format!(
                "wrong type: expected an object with fields {}",
                known.join(", ")
            ),
        );
        return None;
    };
    for k in obj.keys().filter(|k| !known.contains(&k.as_str())) {
        ctx.push(
            Severity::Warning,
            codes::UNKNOWN_FIELD,
            push_key(field, k),
            format!("unknown field `{k}` is not part of the Istio API and is ignored"),
        );
    }
    Some(obj)
}

fn array<'v>(ctx: &mut Ctx<'_>, field: &str, v: Option<&'v Value>) -> &'v [Value] {
    match v {
        None | Some(Value::Null) => &[],
        Some(Value::Array(a)) => a,
        Some(_) => {
            ctx.error(field, "wrong type: expected a list");
            &[]
        }
    }
}

fn string<'v>(ctx: &mut Ctx<'_>, field: &str, v: Option<&'v Value>) -> &'v str {
    match v {
        None | Some(Value::Null) => "",
        Some(Value::String(s)) => s,
        Some(_) => {
            ctx.error(field, "wrong type: expected a string");
            ""
        }
    }
}

fn check_bool(ctx: &mut Ctx<'_>, field: &str, v: Option<&Value>) {
    if v.is_some_and(|v| !v.is_boolean() && !v.is_null()) {
        ctx.error(field, "wrong type: expected true or false");
    }
}

/// `failover` entries name regions only, and must differ.
fn check_failover(ctx: &mut Ctx<'_>, field: &str, failover: &[Value], what: &str) -> usize {
    let mut n = 0;
    for (i, e) in failover.iter().enumerate() {
        let path = push_index(field, i);
        let Some(obj) = object(ctx, &path, e, &["from", "to"]) else {
            continue;
        };
        n += 1;
        let from = string(ctx, &push_key(&path, "from"), obj.get("from"));
        let to = string(ctx, &push_key(&path, "to"), obj.get("to"));
        if from == to {
            ctx.error(
                &path,
                format!("{what} failover from `{from}` to `{to}`: `from` and `to` must be different regions"),
            );
        } else if from.contains('/') || to.contains('/') {
            ctx.error(
                &path,
                format!(
                    "{what} failover `{from}` -> `{to}`: only regions are allowed (no `/zone`)"
                ),
            );
        } else if from.contains('*') || to.contains('*') {
            ctx.error(
                &path,
                format!("{what} failover `{from}` -> `{to}`: regions must not contain `*`"),
            );
        }
    }
    n
}

fn check_locality(ctx: &mut Ctx<'_>, field: &str, v: &Value, has_outlier: bool) {
    let f = |k: &str| push_key(field, k);
    let Some(obj) = object(
        ctx,
        field,
        v,
        &["enabled", "distribute", "failover", "failoverPriority"],
    ) else {
        return;
    };
    check_bool(ctx, &f("enabled"), obj.get("enabled"));
    let distribute = array(ctx, &f("distribute"), obj.get("distribute"));
    let failover = array(ctx, &f("failover"), obj.get("failover"));
    let priority = array(ctx, &f("failoverPriority"), obj.get("failoverPriority"));
    if !distribute.is_empty() && !failover.is_empty() {
        ctx.error(
            field,
            "localityLbSetting may set only one of `distribute` and `failover`",
        );
        return;
    }
    if !failover.is_empty() {
        for (i, p) in priority.iter().enumerate() {
            let label = string(ctx, &push_index(&f("failoverPriority"), i), Some(p));
            if TOPOLOGY_LABELS.contains(&label) {
                ctx.error(
                    push_index(&f("failoverPriority"), i),
                    format!("failoverPriority cannot use topology label `{label}` together with `failover`"),
                );
                return;
            }
        }
    }
    let mut sources = Vec::new();
    for (i, d) in distribute.iter().enumerate() {
        let path = push_index(&f("distribute"), i);
        let Some(obj) = object(ctx, &path, d, &["from", "to"]) else {
            continue;
        };
        sources.push(string(ctx, &push_key(&path, "from"), obj.get("from")).to_string());
        let to_path = push_key(&path, "to");
        let to = match obj.get("to") {
            None | Some(Value::Null) => BTreeMap::new(),
            Some(Value::Object(m)) => m.iter().collect(),
            Some(_) => {
                ctx.error(&to_path, "wrong type: expected a map of locality to weight");
                continue;
            }
        };
        let mut total = 0u64;
        for (loc, w) in &to {
            match w.as_u64() {
                Some(w) if (1..=100).contains(&w) => total += w,
                _ => {
                    ctx.error(
                        push_key(&to_path, loc),
                        format!(
                            "invalid locality weight {w} for `{loc}`: must be an integer in 1..100"
                        ),
                    );
                    return;
                }
            }
        }
        if total != 100 {
            ctx.error(
                &to_path,
                format!("locality weights in `to` add up to {total}; they must add up to 100"),
            );
            return;
        }
        let dests: Vec<String> = to.keys().map(|k| k.to_string()).collect();
        if let Err(e) = check_localities(&dests) {
            ctx.error(&to_path, e);
        }
    }
    if let Err(e) = check_localities(&sources) {
        ctx.error(f("distribute"), e);
    }
    if (!failover.is_empty() || !priority.is_empty()) && !has_outlier {
        ctx.warn(
            field,
            "locality failover only takes effect with outlierDetection: add an outlierDetection policy",
        );
    }
    check_failover(ctx, &f("failover"), failover, "locality lb");
}

fn check_zone_aware(ctx: &mut Ctx<'_>, field: &str, v: &Value, has_outlier: bool) {
    let f = |k: &str| push_key(field, k);
    let known = ["enabled", "failover", "failoverPriority", "minClusterSize"];
    let Some(obj) = object(ctx, field, v, &known) else {
        return;
    };
    check_bool(ctx, &f("enabled"), obj.get("enabled"));
    let failover = array(ctx, &f("failover"), obj.get("failover"));
    let priority = array(ctx, &f("failoverPriority"), obj.get("failoverPriority"));
    for (i, p) in priority.iter().enumerate() {
        let path = push_index(&f("failoverPriority"), i);
        let label = string(ctx, &path, Some(p));
        if TOPOLOGY_LABELS.contains(&label) {
            ctx.error(
                &path,
                format!("zoneAwareLbSetting.failoverPriority must not use topology label `{label}`: region and zone routing are automatic"),
            );
        }
    }
    if let Some(m) = obj.get("minClusterSize").filter(|m| !m.is_null()) {
        let n = m
            .as_u64()
            .or_else(|| m.as_str().and_then(|s| s.parse().ok()));
        if n.is_none_or(|n| n < 1) {
            ctx.error(
                f("minClusterSize"),
                format!("invalid minClusterSize {m}: must be an integer of at least 1"),
            );
        }
    }
    if (!failover.is_empty() || !priority.is_empty()) && !has_outlier {
        ctx.warn(
            field,
            "zone-aware failover only takes effect with outlierDetection: add an outlierDetection policy",
        );
    }
    check_failover(ctx, &f("failover"), failover, "zone aware lb");
}

/// Localities are `region[/zone[/subzone]]` with at most one trailing `*`, and may not overlap.
fn check_localities(localities: &[String]) -> Result<(), String> {
    type Zones = BTreeMap<String, BTreeMap<String, bool>>;
    let mut regions: BTreeMap<String, Zones> = BTreeMap::new();
    let star = || "*".to_string();
    for loc in localities {
        let overlap = || Err(format!("locality `{loc}` overlaps one listed before it"));
        let stars = loc.matches('*').count();
        if stars > 1 || (stars == 1 && !loc.ends_with('*')) {
            return Err(format!(
                "locality `{loc}`: the wildcard `*` may appear only once, at the end"
            ));
        }
        if regions.contains_key("*") {
            return overlap();
        }
        let items: Vec<&str> = loc.splitn(3, '/').collect();
        if items.iter().any(|i| i.is_empty()) {
            return Err(format!(
                "locality `{loc}` must not contain an empty region, zone or subzone"
            ));
        }
        let (region, zone, sub) = (items[0].to_string(), items.get(1), items.get(2));
        match (zone, sub) {
            (None, _) => {
                if regions.contains_key(&region) {
                    return overlap();
                }
                regions.insert(
                    region,
                    BTreeMap::from([(star(), BTreeMap::from([(star(), true)]))]),
                );
            }
            (Some(zone), None) => {
                let zones = regions.entry(region).or_default();
                if zones.contains_key("*") || zones.contains_key(*zone) {
                    return overlap();
                }
                zones.insert(zone.to_string(), BTreeMap::from([(star(), true)]));
            }
            (Some(zone), Some(sub)) => {
                let zones = regions.entry(region).or_default();
                if zones.contains_key("*") {
                    return overlap();
                }
                let subs = zones.entry(zone.to_string()).or_default();
                if subs.contains_key("*") || subs.contains_key(*sub) {
                    return overlap();
                }
                subs.insert(sub.to_string(), true);
            }
        }
    }
    Ok(())
}
