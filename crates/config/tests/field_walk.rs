//! The field walk: every field of the networking API tables of the reference sluice follows
//! (VirtualService, DestinationRule, Gateway, ServiceEntry, WorkloadEntry, Sidecar) is either
//! enforced, naming a test that covers it, or warns `SLC0100 not enforced yet` when set. README's
//! status section is checked against the same list.
//!
//! The inventory below transcribes the reference's tables field by field; a field added to the
//! API must be added here, and a field whose warning is removed must move to `Enforced`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use sluice_config::validate::validate_resource;
use sluice_config::{build_snapshot, ProxyConfig};
use sluice_lb::StateStore;
use sluice_model::{codes, parse_text};

/// What sluice does with a field.
enum Status {
    /// Enforced; the test named covers it: its file mentions the field's last path segment
    /// (camelCase or snake_case), or the word after a `:` (`test_name:word`).
    Enforced(&'static str),
    /// Not enforced: this spec (under the kind's `spec:`) sets it and gets `SLC0100` at the
    /// given field path; the text is what README's status section calls it.
    // Every networking field is enforced today; a field that is not goes here again.
    #[allow(dead_code)]
    NotEnforced {
        spec: &'static str,
        at: &'static str,
        readme: &'static str,
    },
}

use Status::{Enforced as E, NotEnforced as N};

/// (kind, field path as the reference writes it, status): one line each, as the reference's
/// tables read.
#[rustfmt::skip]
const FIELDS: &[(&str, &str, Status)] = &[
    // ----- VirtualService (reference §2) -----
    ("VirtualService", "hosts", E("first_match_wins_with_every_match_field")),
    ("VirtualService", "gateways", E("gateway_merges_virtual_services_oldest_first_with_catch_alls_last")),
    ("VirtualService", "http", E("first_match_wins_with_every_match_field")),
    ("VirtualService", "tls", E("sidecar_interception_in_network_namespaces")),
    ("VirtualService", "tls.not_intercepted", E("tls_rules_route_by_sni_on_mesh_listeners_without_interception")),
    ("VirtualService", "tcp", E("tcp_rules_on_mesh_listeners_and_the_service_default")),
    ("VirtualService", "exportTo", E("virtual_services_and_destination_rules_are_seen_where_they_are_exported")),
    ("VirtualService", "http.name", E("retries_default_disabled_and_overridden")),
    ("VirtualService", "http.match", E("first_match_wins_with_every_match_field")),
    ("VirtualService", "http.route", E("split_is_exact_over_1000_requests_and_every_window_of_100")),
    ("VirtualService", "http.redirect", E("redirect_and_direct_response")),
    ("VirtualService", "http.directResponse", E("redirect_and_direct_response")),
    ("VirtualService", "http.delegate", E("delegated_rules_replace_the_root_rule_in_order")),
    ("VirtualService", "http.rewrite", E("rewrite_and_header_operations")),
    ("VirtualService", "http.timeout", E("request_timeout_gives_504_ut")),
    ("VirtualService", "http.retries", E("retries_move_to_a_healthy_endpoint")),
    ("VirtualService", "http.fault", E("fault_abort_for_one_user_only")),
    ("VirtualService", "http.mirror", E("mirror_copies_every_request_and_the_client_sees_only_the_primary")),
    ("VirtualService", "http.mirrors", E("mirror_percentages")),
    ("VirtualService", "http.mirrorPercentage", E("mirror_percentages")),
    ("VirtualService", "http.mirrorPercent", E("mirror_percentages")),
    ("VirtualService", "http.corsPolicy", E("cors_preflight_and_actual_request")),
    ("VirtualService", "http.headers", E("rewrite_and_header_operations")),
    ("VirtualService", "http.match.name", E("first_match_wins_with_every_match_field")),
    ("VirtualService", "http.match.uri", E("first_match_wins_with_every_match_field")),
    ("VirtualService", "http.match.scheme", E("first_match_wins_with_every_match_field")),
    ("VirtualService", "http.match.method", E("first_match_wins_with_every_match_field")),
    ("VirtualService", "http.match.authority", E("first_match_wins_with_every_match_field")),
    ("VirtualService", "http.match.headers", E("first_match_wins_with_every_match_field")),
    ("VirtualService", "http.match.withoutHeaders", E("first_match_wins_with_every_match_field")),
    ("VirtualService", "http.match.queryParams", E("first_match_wins_with_every_match_field")),
    ("VirtualService", "http.match.port", E("source_labels_and_port_are_config_time_filters")),
    ("VirtualService", "http.match.sourceLabels", E("source_labels_and_port_are_config_time_filters")),
    ("VirtualService", "http.match.sourceNamespace", E("source_namespace_is_a_config_time_filter")),
    ("VirtualService", "http.match.gateways", E("gateway_merges_virtual_services_oldest_first_with_catch_alls_last")),
    ("VirtualService", "http.match.ignoreUriCase", E("first_match_wins_with_every_match_field")),
    ("VirtualService", "http.match.statPrefix", E("stat_prefix_counts_the_requests_of_its_match")),
    ("VirtualService", "http.route.destination.host", E("split_is_exact_over_1000_requests_and_every_window_of_100")),
    ("VirtualService", "http.route.destination.subset", E("split_is_exact_over_1000_requests_and_every_window_of_100")),
    ("VirtualService", "http.route.destination.port", E("envoy_failures_nc_uh_uf_and_nr")),
    ("VirtualService", "http.route.weight", E("split_is_exact_over_1000_requests_and_every_window_of_100")),
    ("VirtualService", "http.route.headers", E("header_operations_route_and_destination")),
    ("VirtualService", "http.rewrite.uri", E("rewrites_and_authority_from_host_headers")),
    ("VirtualService", "http.rewrite.authority", E("rewrites_and_authority_from_host_headers")),
    ("VirtualService", "http.rewrite.uriRegexRewrite", E("regex_rewrite_substitutes_every_match_and_keeps_dollars")),
    ("VirtualService", "http.redirect.uri", E("redirect_and_direct_response")),
    ("VirtualService", "http.redirect.authority", E("redirect_and_direct_response")),
    ("VirtualService", "http.redirect.port", E("redirect_and_direct_response")),
    ("VirtualService", "http.redirect.derivePort", E("redirect_code_and_derive_port")),
    ("VirtualService", "http.redirect.scheme", E("redirect_and_direct_response")),
    ("VirtualService", "http.redirect.redirectCode", E("redirect_code_and_derive_port")),
    ("VirtualService", "http.directResponse.status", E("redirect_and_direct_response")),
    ("VirtualService", "http.directResponse.body", E("redirect_and_direct_response")),
    ("VirtualService", "http.retries.attempts", E("retries_default_disabled_and_overridden")),
    ("VirtualService", "http.retries.perTryTimeout", E("per_try_timeouts_and_backoff_fit_in_the_route_timeout")),
    ("VirtualService", "http.retries.retryOn", E("retries_default_disabled_and_overridden")),
    ("VirtualService", "http.retries.retryOn.reset-before-request", E("reset_before_request_retries_a_refused_connection")),
    ("VirtualService", "http.retries.retryOn.retriable-headers", E("retriable_headers_follow_the_request_header")),
    ("VirtualService", "http.retries.retryOn.envoy-ratelimited", E("envoy_ratelimited_retries_rate_limited_answers")),
    ("VirtualService", "http.retries.retryOn.http3-post-connect-failure", E("header_conditions:http3")),
    ("VirtualService", "http.retries.retryOn.unavailable", E("grpc_status_retries_follow_retry_on")),
    ("VirtualService", "http.retries.retryRemoteLocalities", E("remote_locality_retries")),
    ("VirtualService", "http.retries.retryIgnorePreviousHosts", E("retries_default_disabled_and_overridden")),
    ("VirtualService", "http.retries.backoff", E("per_try_timeouts_and_backoff_fit_in_the_route_timeout")),
    ("VirtualService", "http.fault.delay.fixedDelay", E("injected_delay_is_not_charged_to_the_same_hop_timeout")),
    ("VirtualService", "http.fault.delay.percentage", E("fault_percentages_and_grpc_codes")),
    ("VirtualService", "http.fault.delay.percent", E("fault_percentages_and_grpc_codes")),
    ("VirtualService", "http.fault.abort.httpStatus", E("fault_abort_for_one_user_only")),
    ("VirtualService", "http.fault.abort.grpcStatus", E("grpc_fault_abort_is_a_grpc_status")),
    ("VirtualService", "http.fault.abort.percentage", E("fault_abort_for_one_user_only")),
    ("VirtualService", "http.corsPolicy.allowOrigins", E("cors_policy")),
    ("VirtualService", "http.corsPolicy.allowOrigin", E("cors_policy")),
    ("VirtualService", "http.corsPolicy.allowMethods", E("cors_policy")),
    ("VirtualService", "http.corsPolicy.allowHeaders", E("cors_policy")),
    ("VirtualService", "http.corsPolicy.exposeHeaders", E("cors_policy")),
    ("VirtualService", "http.corsPolicy.maxAge", E("cors_policy")),
    ("VirtualService", "http.corsPolicy.allowCredentials", E("cors_policy")),
    ("VirtualService", "http.corsPolicy.unmatchedPreflights", E("cors_policy")),
    ("VirtualService", "tls.match.sniHosts", E("passthrough_routes_by_sni_to_the_backend_certificate")),
    ("VirtualService", "tls.route", E("passthrough_routes_by_sni_to_the_backend_certificate")),
    ("VirtualService", "tcp.match", E("tcp_rules_on_mesh_listeners_and_the_service_default")),
    ("VirtualService", "tcp.route", E("tcp_traffic_shifting_through_a_gateway")),
    // ----- DestinationRule (reference §3) -----
    ("DestinationRule", "host", E("merge_precedence")),
    ("DestinationRule", "trafficPolicy", E("merge_precedence")),
    ("DestinationRule", "subsets", E("merge_precedence")),
    ("DestinationRule", "exportTo", E("virtual_services_and_destination_rules_are_seen_where_they_are_exported")),
    ("DestinationRule", "workloadSelector", E("workload_selector_rules_apply_to_matching_proxies_of_their_namespace")),
    ("DestinationRule", "trafficPolicy.portLevelSettings", E("merge_precedence")),
    ("DestinationRule", "trafficPolicy.tunnel", E("tcp_is_carried_in_a_connect_tunnel_through_the_endpoint")),
    ("DestinationRule", "trafficPolicy.tunnel.protocol", E("tcp_is_carried_as_post_bodies_through_the_endpoint:POST")),
    ("DestinationRule", "trafficPolicy.proxyProtocol", E("proxy_protocol_v1_carries_the_client_addresses")),
    ("DestinationRule", "trafficPolicy.retryBudget", E("retry_budget_limits_concurrent_retries")),
    ("DestinationRule", "trafficPolicy.retryBudget.percent", E("retry_budget_follows_the_active_requests")),
    ("DestinationRule", "trafficPolicy.retryBudget.minRetryConcurrency", E("retry_budget_limits_concurrent_retries")),
    ("DestinationRule", "trafficPolicy.retryBudget.budgetInterval", E("retry_budget_interval_counts_the_requests_of_the_interval")),
    ("DestinationRule", "trafficPolicy.loadBalancer.simple", E("endpoint_weights_are_honoured_by_round_robin")),
    ("DestinationRule", "trafficPolicy.loadBalancer.simple.PASSTHROUGH", E("passthrough_load_balancer_sends_intercepted_requests_to_their_original_destination")),
    ("DestinationRule", "trafficPolicy.loadBalancer.simple.PASSTHROUGH.not_intercepted", E("passthrough_load_balancer_answers_503_uh_on_a_gateway:PASSTHROUGH")),
    ("DestinationRule", "trafficPolicy.loadBalancer.consistentHash.httpHeaderName", E("session_affinity_by_header_cookie_and_source_ip")),
    ("DestinationRule", "trafficPolicy.loadBalancer.consistentHash.httpCookie", E("session_affinity_by_header_cookie_and_source_ip")),
    ("DestinationRule", "trafficPolicy.loadBalancer.consistentHash.httpCookie.attributes", E("generated_cookie_carries_the_attributes")),
    ("DestinationRule", "trafficPolicy.loadBalancer.consistentHash.useSourceIp", E("session_affinity_by_header_cookie_and_source_ip")),
    ("DestinationRule", "trafficPolicy.loadBalancer.consistentHash.httpQueryParameterName", E("load_balancer_variants")),
    ("DestinationRule", "trafficPolicy.loadBalancer.consistentHash.ringHash", E("load_balancer_variants")),
    ("DestinationRule", "trafficPolicy.loadBalancer.consistentHash.maglev", E("load_balancer_variants")),
    ("DestinationRule", "trafficPolicy.loadBalancer.consistentHash.minimumRingSize", E("load_balancer_variants")),
    ("DestinationRule", "trafficPolicy.loadBalancer.localityLbSetting", E("locality_failover_task")),
    ("DestinationRule", "trafficPolicy.loadBalancer.zoneAwareLbSetting", E("zone_aware_routing_weighs_zones_by_the_proxys_own_service")),
    ("DestinationRule", "trafficPolicy.loadBalancer.warmup", E("slow_start_holds_back_a_new_endpoint_until_its_window_has_passed")),
    ("DestinationRule", "trafficPolicy.loadBalancer.warmupDurationSecs", E("warmup_retry_budget_and_cookie_attributes")),
    ("DestinationRule", "trafficPolicy.connectionPool.tcp.maxConnections", E("circuit_breaker_overflows_with_503_uo")),
    ("DestinationRule", "trafficPolicy.connectionPool.tcp.connectTimeout", E("connect_timeout_of_the_destination_rule_applies")),
    ("DestinationRule", "trafficPolicy.connectionPool.tcp.tcpKeepalive", E("pool_limits")),
    ("DestinationRule", "trafficPolicy.connectionPool.tcp.maxConnectionDuration", E("max_connection_duration_retires_http1_connections")),
    ("DestinationRule", "trafficPolicy.connectionPool.tcp.idleTimeout", E("idle_timeout_closes_a_quiet_tcp_connection")),
    ("DestinationRule", "trafficPolicy.connectionPool.http.http1MaxPendingRequests", E("circuit_breaker_overflows_with_503_uo")),
    ("DestinationRule", "trafficPolicy.connectionPool.http.http2MaxRequests", E("pool_limits")),
    ("DestinationRule", "trafficPolicy.connectionPool.http.maxRequestsPerConnection", E("max_requests_per_connection_bounds_http1_connections")),
    ("DestinationRule", "trafficPolicy.connectionPool.http.maxRetries", E("pool_limits")),
    ("DestinationRule", "trafficPolicy.connectionPool.http.idleTimeout", E("idle_timeout_closes_pooled_upstream_connections")),
    ("DestinationRule", "trafficPolicy.connectionPool.http.h2UpgradePolicy", E("h2_upgrade_policy_sends_http2_upstream")),
    ("DestinationRule", "trafficPolicy.connectionPool.http.useClientProtocol", E("use_client_protocol_keeps_the_downstream_http_version")),
    ("DestinationRule", "trafficPolicy.connectionPool.http.maxConcurrentStreams", E("max_concurrent_streams_spreads_streams_over_http2_connections")),
    ("DestinationRule", "trafficPolicy.connectionPool.http.http2KeepAlive", E("answered_http2_keepalive_pings_keep_the_connection")),
    ("DestinationRule", "trafficPolicy.outlierDetection.consecutive5xxErrors", E("outlier_detection_ejects_a_failing_endpoint")),
    ("DestinationRule", "trafficPolicy.outlierDetection.consecutiveGatewayErrors", E("outlier_detection")),
    ("DestinationRule", "trafficPolicy.outlierDetection.interval", E("outlier_detection")),
    ("DestinationRule", "trafficPolicy.outlierDetection.baseEjectionTime", E("outlier_detection")),
    ("DestinationRule", "trafficPolicy.outlierDetection.maxEjectionPercent", E("outlier_detection")),
    ("DestinationRule", "trafficPolicy.outlierDetection.minHealthPercent", E("outlier_detection")),
    ("DestinationRule", "trafficPolicy.outlierDetection.splitExternalLocalOriginErrors", E("local_origin_failures_eject_on_their_own_threshold")),
    ("DestinationRule", "trafficPolicy.outlierDetection.consecutiveLocalOriginFailures", E("local_origin_failures_eject_on_their_own_threshold")),
    ("DestinationRule", "trafficPolicy.outlierDetection.outlierDetectionHttpErrorCodes", E("listed_statuses_count_as_errors")),
    ("DestinationRule", "trafficPolicy.outlierDetection.consecutiveErrors", E("outlier_detection")),
    ("DestinationRule", "trafficPolicy.tls.mode", E("egress_tls_origination_simple")),
    ("DestinationRule", "trafficPolicy.tls.clientCertificate", E("mutual_origination_presents_the_client_certificate")),
    ("DestinationRule", "trafficPolicy.tls.privateKey", E("mutual_origination_presents_the_client_certificate")),
    ("DestinationRule", "trafficPolicy.tls.caCertificates", E("egress_tls_origination_simple")),
    ("DestinationRule", "trafficPolicy.tls.caCrl", E("origination_refuses_a_revoked_server_certificate_by_ca_crl")),
    ("DestinationRule", "trafficPolicy.tls.credentialName", E("credential_name_secrets_are_served_and_rotated")),
    ("DestinationRule", "trafficPolicy.tls.subjectAltNames", E("egress_tls_origination_simple")),
    ("DestinationRule", "trafficPolicy.tls.sni", E("egress_tls_origination_simple")),
    ("DestinationRule", "trafficPolicy.tls.insecureSkipVerify", E("client_tls_settings_reach_the_cluster")),
    // ----- Gateway (reference §4) -----
    ("Gateway", "selector", E("a_gateway_selecting_other_labels_is_reported")),
    ("Gateway", "servers", E("gateway_merges_virtual_services_oldest_first_with_catch_alls_last")),
    ("Gateway", "servers.port", E("subdomain_gateway_routes_by_host")),
    ("Gateway", "servers.bind", E("server_bind_listens_on_that_address_only")),
    ("Gateway", "servers.bind.unix", E("server_bind_to_a_unix_socket_serves_http_there")),
    ("Gateway", "servers.bind.unix.TLS", E("tls_passthrough_server_on_a_unix_socket_routes_by_sni")),
    ("Gateway", "servers.bind.unix.HTTPS", E("https_server_on_a_unix_socket_terminates_tls_and_routes")),
    ("Gateway", "servers.bind.unix.TCP", E("tcp_server_on_a_unix_socket_relays_to_tcp_echo")),
    ("Gateway", "servers.bind.unix.sourceIp", E("unix_socket_clients_match_no_ip_blocks:ipBlocks")),
    ("Gateway", "servers.hosts", E("gateway_merges_virtual_services_oldest_first_with_catch_alls_last")),
    ("Gateway", "servers.name", E("named_https_server_counts_requests_under_its_name")),
    ("Gateway", "servers.tls", E("simple_tls_ingress_serves_https_with_alpn")),
    ("Gateway", "servers.tls.httpsRedirect", E("https_redirect_answers_301_before_routing")),
    ("Gateway", "servers.tls.mode", E("mutual_tls_ingress_requires_a_client_certificate")),
    ("Gateway", "servers.tls.credentialName", E("credential_name_secrets_are_served_and_rotated")),
    ("Gateway", "servers.tls.subjectAltNames", E("optional_mutual_and_certificate_pins")),
    ("Gateway", "servers.tls.verifyCertificateSpki", E("hex_pins_accept_colons_and_case:spki")),
    ("Gateway", "servers.tls.verifyCertificateHash", E("optional_mutual_and_certificate_pins")),
    ("Gateway", "servers.tls.minProtocolVersion", E("openssl_sees_sni_alpn_versions_and_client_auth")),
    ("Gateway", "servers.tls.maxProtocolVersion", E("openssl_sees_sni_alpn_versions_and_client_auth")),
    ("Gateway", "servers.tls.caCrl", E("revoked_client_certificates_are_refused_by_ca_crl")),
    // ----- ServiceEntry (reference §5) -----
    ("ServiceEntry", "hosts", E("egress_tls_origination_simple")),
    ("ServiceEntry", "addresses", E("original_destination_selects_the_listener")),
    ("ServiceEntry", "ports", E("egress_tls_origination_simple")),
    ("ServiceEntry", "location", E("auto_mtls_between_two_sidecars_and_a_destination_rule_turning_it_off")),
    ("ServiceEntry", "resolution", E("egress_tls_origination_simple")),
    ("ServiceEntry", "resolution.NONE", E("sidecar_interception_in_network_namespaces")),
    ("ServiceEntry", "resolution.DYNAMIC_DNS", E("dynamic_dns_resolves_each_request_host_and_follows_its_ttl")),
    ("ServiceEntry", "resolution.DYNAMIC_DNS.TLS", E("dynamic_dns_resolves_the_sni_of_each_tls_connection:DYNAMIC_DNS")),
    ("ServiceEntry", "endpoints", E("locality_failover_task")),
    ("ServiceEntry", "workloadSelector", E("auto_mtls_between_two_sidecars_and_a_destination_rule_turning_it_off")),
    ("ServiceEntry", "exportTo", E("service_entries_are_seen_where_they_are_exported")),
    ("ServiceEntry", "subjectAltNames", E("service_entry_subject_alt_names_are_accepted_server_identities")),
    // ----- WorkloadEntry (reference §6) -----
    ("WorkloadEntry", "address", E("split_is_exact_over_1000_requests_and_every_window_of_100")),
    ("WorkloadEntry", "ports", E("split_is_exact_over_1000_requests_and_every_window_of_100")),
    ("WorkloadEntry", "labels", E("split_is_exact_over_1000_requests_and_every_window_of_100")),
    ("WorkloadEntry", "network", E("endpoints_on_other_networks_are_reached_directly_without_a_gateway")),
    ("WorkloadEntry", "locality", E("locality_failover_task")),
    ("WorkloadEntry", "weight", E("endpoint_weights_are_honoured_by_round_robin")),
    ("WorkloadEntry", "serviceAccount", E("registry_endpoints_carry_their_service_account")),
    // ----- Sidecar (reference §7) -----
    ("Sidecar", "workloadSelector", E("the_sidecar_that_applies")),
    ("Sidecar", "ingress", E("ingress_ports_are_bound_only_without_inbound_interception")),
    ("Sidecar", "ingress.connectionPool", E("inbound_connection_pool_overflows_with_503_uo")),
    ("Sidecar", "egress", E("egress_hosts_narrow_the_services_a_sidecar_compiles")),
    ("Sidecar", "egress.bind", E("egress_bind_moves_the_listener_of_its_port")),
    ("Sidecar", "egress.bind.unix", E("egress_bind_to_a_unix_socket_serves_its_hosts_there")),
    ("Sidecar", "egress.bind.unix.TCP", E("egress_bind_to_a_unix_socket_relays_a_tcp_port")),
    ("Sidecar", "egress.bind.unix.TLS", E("egress_bind_to_a_unix_socket_passes_tls_through_by_sni")),
    ("Sidecar", "egress.captureMode", E("capture_mode_none_binds_the_egress_listener_of_an_intercepting_sidecar")),
    ("Sidecar", "inboundConnectionPool", E("inbound_connection_pool_overflows_with_503_uo")),
    ("Sidecar", "outboundTrafficPolicy", E("outbound_traffic_policy_comes_from_the_sidecar_else_the_mesh")),
    ("Sidecar", "outboundTrafficPolicy.egressProxy", E("egress_proxy_takes_requests_for_unknown_destinations")),
];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// Every `.rs` file under `dir` (bounded depth; `target` and hidden directories skipped).
fn rust_files(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) {
    if depth == 0 {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let name = e.file_name().to_string_lossy().to_string();
        if name.starts_with('.') || name == "target" {
            continue;
        }
        if p.is_dir() {
            rust_files(&p, depth - 1, out);
        } else if name.ends_with(".rs") {
            out.push(p);
        }
    }
}

/// The leaf of a field path: `http.match.statPrefix` → `statPrefix`; an enum value
/// (`retryOn.envoy-ratelimited`, `simple.PASSTHROUGH`) is its own leaf.
fn leaf(field: &str) -> &str {
    field.rsplit('.').next().unwrap_or(field)
}

/// `maxRetries` → `max_retries`.
fn snake_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for c in name.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

#[test]
fn every_enforced_field_names_a_test_that_mentions_it() {
    let mut files = Vec::new();
    rust_files(&workspace().join("crates"), 6, &mut files);
    let sources: Vec<(PathBuf, String)> = files
        .into_iter()
        .filter_map(|p| std::fs::read_to_string(&p).ok().map(|t| (p, t)))
        .collect();
    let mut problems = Vec::new();
    for (kind, field, status) in FIELDS {
        let E(named) = status else { continue };
        let (test, mention) = match named.split_once(':') {
            Some((t, m)) => (t, m.to_string()),
            None => (*named, leaf(field).to_string()),
        };
        let snake = snake_case(&mention);
        let needle = format!("fn {test}(");
        let mut defining = sources
            .iter()
            .filter(|(_, t)| t.contains(&needle))
            .peekable();
        if defining.peek().is_none() {
            problems.push(format!("{kind} {field}: no test named {test}"));
            continue;
        }
        if !defining.any(|(_, text)| text.contains(&mention) || text.contains(&snake)) {
            problems.push(format!(
                "{kind} {field}: the file of test {test} never mentions `{mention}`"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

fn document(kind: &str, spec: &str) -> String {
    let api = "networking.istio.io/v1";
    format!("apiVersion: {api}\nkind: {kind}\nmetadata: {{name: a, namespace: default}}\nspec:\n  {spec}\n")
}

#[test]
fn every_unenforced_field_warns_slc0100() {
    let mut problems = Vec::new();
    for (kind, field, status) in FIELDS {
        let N { spec, at, .. } = status else { continue };
        let parsed = parse_text(&document(kind, spec), Some("t.yaml".into()));
        let Some(resource) = parsed.resources.first() else {
            problems.push(format!(
                "{kind} {field}: does not parse: {:?}",
                parsed.diagnostics
            ));
            continue;
        };
        // Per-object validation, then what compiling says (gateway TLS is checked there).
        let mut diags = validate_resource(resource);
        match build_snapshot(
            parsed.resources.clone(),
            Vec::new(),
            &ProxyConfig::default(),
            &StateStore::new(),
            1,
        ) {
            Ok(snapshot) => diags.extend(snapshot.diagnostics.iter().cloned()),
            Err(rejected) => diags.extend(rejected.diagnostics),
        }
        if !diags
            .iter()
            .any(|d| d.code == codes::NOT_ENFORCED && d.field.as_deref() == Some(*at))
        {
            problems.push(format!("{kind} {field}: no SLC0100 at {at}: {diags:#?}"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The text between README's markers, as the inventory generates it.
fn readme_list() -> String {
    let mut out = String::new();
    for (_, _, status) in FIELDS {
        if let N { readme, .. } = status {
            out.push_str(&format!("- {readme}\n"));
        }
    }
    out
}

#[test]
fn readme_status_section_lists_exactly_the_unenforced_fields() {
    const BEGIN: &str =
        "<!-- not-enforced:begin (generated by crates/config/tests/field_walk.rs) -->\n";
    const END: &str = "<!-- not-enforced:end -->";
    let readme = std::fs::read_to_string(workspace().join("README.md")).unwrap();
    let want = readme_list();
    let got = readme
        .split_once(BEGIN)
        .and_then(|(_, rest)| rest.split_once(END))
        .map(|(list, _)| list);
    assert_eq!(
        got,
        Some(want.as_str()),
        "README.md's status section must hold, between its markers:\n{BEGIN}{want}{END}"
    );
}
