//! Webhook/CRD validation of `DestinationRule`.

use std::collections::HashSet;

use sluice_model::location::{push_index, push_key};
use sluice_model::{
    ClientTlsSettings, ConnectionPoolSettings, DestinationRule, OutlierDetection,
    PortTrafficPolicy, TrafficPolicy, TunnelSettings,
};

use super::common::{
    check_duration, check_duration_syntax, check_duration_zero_ok, check_enum, check_export_to,
    check_labels, check_percent, check_port, check_selector_labels, DNS1123_LABEL,
};
use super::load_balancer::check_load_balancer;
use super::Ctx;
use crate::host::{is_dns1123_label, is_ip, validate_domain, validate_wildcard_domain};

pub(crate) fn validate(ctx: &mut Ctx<'_>, dr: &DestinationRule) {
    if dr.host.is_empty() {
        ctx.error(
            "spec.host",
            "host is required: the service this rule applies to",
        );
    } else if let Err(e) = validate_wildcard_domain(&dr.host) {
        ctx.error("spec.host", e);
    }
    if let Some(tp) = &dr.traffic_policy {
        check_traffic_policy(ctx, "spec.trafficPolicy", tp);
    }
    let mut names = HashSet::new();
    for (i, s) in dr.subsets.iter().enumerate() {
        let field = push_index("spec.subsets", i);
        let name_path = push_key(&field, "name");
        if s.name.is_empty() {
            ctx.error(&name_path, "subset name is required");
        } else if !names.insert(s.name.as_str()) {
            ctx.error(&name_path, format!("duplicate subset name `{}`", s.name));
        } else if !is_dns1123_label(&s.name) {
            ctx.error(
                &name_path,
                format!("invalid subset name `{}`: must be {DNS1123_LABEL}", s.name),
            );
        }
        check_labels(ctx, &push_key(&field, "labels"), &s.labels);
        if let Some(tp) = &s.traffic_policy {
            check_traffic_policy(ctx, &push_key(&field, "trafficPolicy"), tp);
        }
    }
    check_export_to(
        ctx,
        "spec.exportTo",
        &dr.export_to,
        false,
        dr.workload_selector.is_some(),
    );
    if let Some(sel) = &dr.workload_selector {
        if sel.match_labels.is_empty() {
            ctx.warn(
                "spec.workloadSelector",
                "workloadSelector has no matchLabels, so the rule applies to every workload in the namespace",
            );
        }
        check_selector_labels(ctx, "spec.workloadSelector.matchLabels", &sel.match_labels);
    }
}

fn check_traffic_policy(ctx: &mut Ctx<'_>, field: &str, tp: &TrafficPolicy) {
    let f = |k: &str| push_key(field, k);
    if tp.load_balancer.is_none()
        && tp.connection_pool.is_none()
        && tp.outlier_detection.is_none()
        && tp.tls.is_none()
        && tp.port_level_settings.is_empty()
        && tp.tunnel.is_none()
        && tp.proxy_protocol.is_none()
        && tp.retry_budget.is_none()
    {
        ctx.error(
            field,
            "trafficPolicy must set at least one of loadBalancer, connectionPool, outlierDetection, tls, portLevelSettings, tunnel, proxyProtocol or retryBudget",
        );
        return;
    }
    if tp.tunnel.is_some() && tp.proxy_protocol.is_some() {
        ctx.error(
            f("proxyProtocol"),
            "`tunnel` and `proxyProtocol` cannot be set together",
        );
    }
    check_policy_parts(
        ctx,
        field,
        tp.load_balancer.as_ref(),
        tp.connection_pool.as_ref(),
        tp.outlier_detection.as_ref(),
        tp.tls.as_ref(),
    );
    if tp.port_level_settings.len() > 4096 {
        ctx.error(
            f("portLevelSettings"),
            format!(
                "{} portLevelSettings entries; at most 4096 are allowed",
                tp.port_level_settings.len()
            ),
        );
    }
    for (i, p) in tp.port_level_settings.iter().enumerate() {
        check_port_policy(ctx, &push_index(&f("portLevelSettings"), i), p);
    }
    if let Some(t) = &tp.tunnel {
        check_tunnel(ctx, &f("tunnel"), t);
    }
    if let Some(p) = &tp.proxy_protocol {
        check_enum(
            ctx,
            &push_key(&f("proxyProtocol"), "version"),
            "proxyProtocol.version",
            p.version.as_deref(),
            &["V1", "V2"],
        );
    }
    if let Some(b) = &tp.retry_budget {
        let bf = f("retryBudget");
        if let Some(p) = &b.percent {
            check_percent(
                ctx,
                &push_key(&push_key(&bf, "percent"), "value"),
                "retryBudget.percent",
                p.value,
            );
        }
        check_duration_syntax(
            ctx,
            &push_key(&bf, "budgetInterval"),
            "retryBudget.budgetInterval",
            b.budget_interval.as_deref(),
        );
    }
}

fn check_policy_parts(
    ctx: &mut Ctx<'_>,
    field: &str,
    lb: Option<&sluice_model::LoadBalancerSettings>,
    pool: Option<&ConnectionPoolSettings>,
    outlier: Option<&OutlierDetection>,
    tls: Option<&ClientTlsSettings>,
) {
    let f = |k: &str| push_key(field, k);
    if let Some(o) = outlier {
        check_outlier(ctx, &f("outlierDetection"), o);
    }
    if let Some(p) = pool {
        check_pool(ctx, &f("connectionPool"), p);
    }
    if let Some(lb) = lb {
        check_load_balancer(ctx, &f("loadBalancer"), lb, outlier.is_some());
    }
    if let Some(t) = tls {
        check_client_tls(ctx, &f("tls"), t);
    }
}

fn check_port_policy(ctx: &mut Ctx<'_>, field: &str, p: &PortTrafficPolicy) {
    match &p.port {
        None => ctx.error(
            push_key(field, "port"),
            "portLevelSettings entries need `port: {number: ...}`",
        ),
        Some(port) => {
            check_port(
                ctx,
                &push_key(&push_key(field, "port"), "number"),
                "portLevelSettings port",
                u64::from(port.number),
            );
        }
    }
    if p.load_balancer.is_none()
        && p.connection_pool.is_none()
        && p.outlier_detection.is_none()
        && p.tls.is_none()
    {
        ctx.error(
            field,
            "a portLevelSettings entry must set at least one of loadBalancer, connectionPool, outlierDetection or tls",
        );
        return;
    }
    check_policy_parts(
        ctx,
        field,
        p.load_balancer.as_ref(),
        p.connection_pool.as_ref(),
        p.outlier_detection.as_ref(),
        p.tls.as_ref(),
    );
}

/// Checks an integer that the API declares as int32 and Istio requires to be non-negative.
fn check_count(ctx: &mut Ctx<'_>, field: &str, what: &str, value: Option<i64>) {
    if let Some(v) = value {
        if !(0..=i64::from(i32::MAX)).contains(&v) {
            ctx.error(
                field,
                format!("invalid {what} {v}: must be between 0 and {}", i32::MAX),
            );
        }
    }
}

/// Checks an integer that the API declares as uint32.
fn check_u32(ctx: &mut Ctx<'_>, field: &str, what: &str, value: Option<i64>) {
    if let Some(v) = value {
        if !(0..=i64::from(u32::MAX)).contains(&v) {
            ctx.error(
                field,
                format!("invalid {what} {v}: must be between 0 and {}", u32::MAX),
            );
        }
    }
}

fn check_outlier(ctx: &mut Ctx<'_>, field: &str, o: &OutlierDetection) {
    let f = |k: &str| push_key(field, k);
    check_duration(
        ctx,
        &f("baseEjectionTime"),
        "outlierDetection.baseEjectionTime",
        o.base_ejection_time.as_deref(),
    );
    check_duration(
        ctx,
        &f("interval"),
        "outlierDetection.interval",
        o.interval.as_deref(),
    );
    if let Some(v) = o.consecutive_errors.filter(|v| *v != 0) {
        if i32::try_from(v).is_err() {
            ctx.error(
                f("consecutiveErrors"),
                format!("invalid consecutiveErrors {v}: out of int32 range"),
            );
        }
        ctx.deprecated(
            f("consecutiveErrors"),
            "outlierDetection.consecutiveErrors is deprecated: use consecutive5xxErrors or consecutiveGatewayErrors",
        );
    }
    check_u32(
        ctx,
        &f("consecutive5xxErrors"),
        "consecutive5xxErrors",
        o.consecutive_5xx_errors,
    );
    check_u32(
        ctx,
        &f("consecutiveGatewayErrors"),
        "consecutiveGatewayErrors",
        o.consecutive_gateway_errors,
    );
    check_u32(
        ctx,
        &f("consecutiveLocalOriginFailures"),
        "consecutiveLocalOriginFailures",
        o.consecutive_local_origin_failures,
    );
    if o.split_external_local_origin_errors != Some(true)
        && o.consecutive_local_origin_failures.is_some_and(|v| v > 0)
    {
        ctx.error(
            f("consecutiveLocalOriginFailures"),
            "consecutiveLocalOriginFailures requires splitExternalLocalOriginErrors: true",
        );
    }
    for (key, what, v) in [
        (
            "maxEjectionPercent",
            "outlierDetection.maxEjectionPercent",
            o.max_ejection_percent,
        ),
        (
            "minHealthPercent",
            "outlierDetection.minHealthPercent",
            o.min_health_percent,
        ),
    ] {
        if let Some(v) = v.filter(|v| !(0..=100).contains(v)) {
            ctx.error(
                f(key),
                format!("invalid {what} {v}: must be between 0 and 100"),
            );
        }
    }
    for (i, code) in o.outlier_detection_http_error_codes.iter().enumerate() {
        if !(100..=599).contains(code) {
            ctx.error(
                push_index(&f("outlierDetectionHttpErrorCodes"), i),
                format!(
                    "invalid HTTP status {code} in outlierDetectionHttpErrorCodes: must be 100-599"
                ),
            );
        }
    }
}

fn check_pool(ctx: &mut Ctx<'_>, field: &str, p: &ConnectionPoolSettings) {
    if p.tcp.is_none() && p.http.is_none() {
        ctx.error(field, "connectionPool must set `tcp` and/or `http`");
        return;
    }
    if let Some(h) = &p.http {
        let hf = |k: &str| push_key(&push_key(field, "http"), k);
        check_count(
            ctx,
            &hf("http1MaxPendingRequests"),
            "http1MaxPendingRequests",
            h.http1_max_pending_requests,
        );
        check_count(
            ctx,
            &hf("http2MaxRequests"),
            "http2MaxRequests",
            h.http2_max_requests,
        );
        check_count(
            ctx,
            &hf("maxRequestsPerConnection"),
            "maxRequestsPerConnection",
            h.max_requests_per_connection,
        );
        check_count(ctx, &hf("maxRetries"), "maxRetries", h.max_retries);
        check_count(
            ctx,
            &hf("maxConcurrentStreams"),
            "maxConcurrentStreams",
            h.max_concurrent_streams,
        );
        check_duration(
            ctx,
            &hf("idleTimeout"),
            "connectionPool.http.idleTimeout",
            h.idle_timeout.as_deref(),
        );
        if let Some(ka) = &h.http2_keep_alive {
            let kf = |k: &str| push_key(&hf("http2KeepAlive"), k);
            for (key, value) in [("interval", &ka.interval), ("timeout", &ka.timeout)] {
                match value.as_deref() {
                    None => ctx.error(
                        kf(key),
                        format!("http2KeepAlive.{key} is required when http2KeepAlive is set"),
                    ),
                    Some(v) => {
                        check_duration(ctx, &kf(key), &format!("http2KeepAlive.{key}"), Some(v))
                    }
                }
            }
        }
        let policy = check_enum(
            ctx,
            &hf("h2UpgradePolicy"),
            "h2UpgradePolicy",
            h.h2_upgrade_policy.as_deref(),
            &["DEFAULT", "DO_NOT_UPGRADE", "UPGRADE"],
        );
        if policy.or("DEFAULT") == Some("UPGRADE") && h.use_client_protocol == Some(true) {
            ctx.error(
                hf("useClientProtocol"),
                "useClientProtocol cannot be true when h2UpgradePolicy is UPGRADE",
            );
        }
    }
    if let Some(t) = &p.tcp {
        let tf = |k: &str| push_key(&push_key(field, "tcp"), k);
        check_count(
            ctx,
            &tf("maxConnections"),
            "maxConnections",
            t.max_connections,
        );
        check_duration(
            ctx,
            &tf("connectTimeout"),
            "connectTimeout",
            t.connect_timeout.as_deref(),
        );
        check_duration(
            ctx,
            &tf("maxConnectionDuration"),
            "maxConnectionDuration",
            t.max_connection_duration.as_deref(),
        );
        check_duration_zero_ok(
            ctx,
            &tf("idleTimeout"),
            "connectionPool.tcp.idleTimeout",
            t.idle_timeout.as_deref(),
        );
        if let Some(ka) = &t.tcp_keepalive {
            let kf = tf("tcpKeepalive");
            check_duration(
                ctx,
                &push_key(&kf, "time"),
                "tcpKeepalive.time",
                ka.time.as_deref(),
            );
            check_duration(
                ctx,
                &push_key(&kf, "interval"),
                "tcpKeepalive.interval",
                ka.interval.as_deref(),
            );
        }
    }
}

fn check_client_tls(ctx: &mut Ctx<'_>, field: &str, t: &ClientTlsSettings) {
    let f = |k: &str| push_key(field, k);
    let set = |o: &Option<String>| o.as_deref().is_some_and(|s| !s.is_empty());
    let mode = check_enum(
        ctx,
        &f("mode"),
        "tls.mode",
        t.mode.as_deref(),
        &["DISABLE", "SIMPLE", "MUTUAL", "ISTIO_MUTUAL"],
    );
    let Some(mode) = mode.or("DISABLE") else {
        return;
    };
    if let Some(rest) = t
        .credential_name
        .as_deref()
        .and_then(|c| c.strip_prefix("configmap://"))
    {
        let ns = ctx.resource().metadata.namespace.clone();
        match rest.split_once('/') {
            Some((n, name)) if !n.is_empty() && !name.is_empty() => {
                if n != ns {
                    ctx.error(
                        f("credentialName"),
                        format!("configmap:// credentialName must be in this rule's namespace `{ns}`, not `{n}`"),
                    );
                }
            }
            _ => ctx.error(
                f("credentialName"),
                format!("invalid credentialName `configmap://{rest}`: expected configmap://<namespace>/<name>"),
            ),
        }
    }
    if t.insecure_skip_verify == Some(true) {
        let conflicting: Vec<&str> = [
            ("caCertificates", set(&t.ca_certificates)),
            (
                "credentialName",
                mode == "SIMPLE" && set(&t.credential_name),
            ),
            ("subjectAltNames", !t.subject_alt_names.is_empty()),
        ]
        .iter()
        .filter(|(_, s)| *s)
        .map(|(n, _)| *n)
        .collect();
        if (mode == "SIMPLE" || mode == "MUTUAL") && !conflicting.is_empty() {
            ctx.error(
                f("insecureSkipVerify"),
                format!(
                    "insecureSkipVerify: true skips verification, so {} must not be set",
                    conflicting.join(", ")
                ),
            );
        }
    }
    if (mode == "SIMPLE" || mode == "MUTUAL") && set(&t.credential_name) {
        let files: Vec<&str> = [
            ("clientCertificate", set(&t.client_certificate)),
            ("privateKey", set(&t.private_key)),
            ("caCertificates", set(&t.ca_certificates)),
            ("caCrl", set(&t.ca_crl)),
        ]
        .iter()
        .filter(|(_, s)| *s)
        .map(|(n, _)| *n)
        .collect();
        if !files.is_empty() {
            ctx.error(
                f("credentialName"),
                format!(
                    "credentialName provides the certificates, so {} must not be set",
                    files.join(", ")
                ),
            );
        }
        return;
    }
    if mode == "MUTUAL" {
        if !set(&t.client_certificate) {
            ctx.error(
                f("clientCertificate"),
                "tls mode MUTUAL requires clientCertificate (or credentialName)",
            );
        }
        if !set(&t.private_key) {
            ctx.error(
                f("privateKey"),
                "tls mode MUTUAL requires privateKey (or credentialName)",
            );
        }
    }
}

fn check_tunnel(ctx: &mut Ctx<'_>, field: &str, t: &TunnelSettings) {
    let f = |k: &str| push_key(field, k);
    if let Some(p) = t.protocol.as_deref().filter(|p| !p.is_empty()) {
        if p != "CONNECT" && p != "POST" {
            ctx.error(
                f("protocol"),
                format!("invalid tunnel.protocol `{p}`: must be one of CONNECT, POST"),
            );
        }
    }
    match t.target_host.as_deref() {
        None | Some("") => ctx.error(f("targetHost"), "tunnel.targetHost is required"),
        Some(h) => {
            if !is_ip(h) {
                if let Err(e) = validate_domain(h) {
                    ctx.error(
                        f("targetHost"),
                        format!(
                            "invalid tunnel.targetHost `{h}`: must be an FQDN or IP address ({e})"
                        ),
                    );
                }
            }
        }
    }
    match t.target_port {
        None => ctx.error(f("targetPort"), "tunnel.targetPort is required"),
        Some(p) => {
            check_port(ctx, &f("targetPort"), "tunnel.targetPort", u64::from(p));
        }
    }
}
