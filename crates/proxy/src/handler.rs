//! The request path: route with the current snapshot, apply the route's filters, then answer
//! locally or forward upstream (with retries, timeouts and mirrors).

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use sluice_config::listener::Listener;
use sluice_config::policy::{LbPolicy, RoutePolicy};
use sluice_config::route_table::{RouteAction, RouteDestination};
use sluice_config::tls::ChainAction;
use sluice_config::{route, RequestInfo, RouteMatch, Routed, Snapshot};
use sluice_lb::PickContext;
use sluice_telemetry::{Telemetry, TextField};
use tokio::time::Instant;

use crate::authority;
use crate::body::Body;
use crate::circuit_breaker::ClusterRuntimes;
use crate::config_handle::ConfigHandle;
use crate::downstream::{ConnectionLimit, DownstreamOptions};
use crate::error::{DownstreamFailure, ProxyError};
use crate::filters::{cors, fault, header_ops, rewrite};
use crate::hash_key::{self, RequestHash};
use crate::headers::{add_forwarding, strip_hop_by_hop};
use crate::mirror;
use crate::observe::{grpc_status, Observation};
use crate::passthrough;
use crate::replay::{Recorder, DEFAULT_REPLAY_CAP};
use crate::retry::{forward, ForwardRequest};
use crate::security::{self, ConnFacts};
use crate::tls::TlsRuntime;
use crate::trace_span;
use crate::upstream::Upstreams;

/// Response flags of a finished request (Envoy `%RESPONSE_FLAGS%`), attached for telemetry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseFlags(pub String);

/// Default of [`ProxyOptions::max_mirror_in_flight`].
///
/// Each copy in flight holds an upstream connection and its buffers. Behind a mirror that answers
/// in 1 s, 1,024 of them raised the primary's p99 by 40 % with one worker, and 128 kept it within
/// 10 % (`bench/policies.sh`). 128 still carries 12,800 copies a second to a mirror that answers
/// in 10 ms.
pub const DEFAULT_MAX_MIRROR_IN_FLIGHT: usize = 128;

/// Data-plane options that are not Istio config.
#[derive(Debug, Clone)]
pub struct ProxyOptions {
    /// Add `-shadow` to the Host of mirror copies (Istio ≤ 1.27 behaviour).
    pub mirror_shadow_suffix: bool,
    /// Request bytes kept for retries and mirror copies.
    pub replay_cap: usize,
    /// With a consistent hash on the destination host, use the hash key to choose among weighted
    /// destinations too, so a user stays on one version (Envoy draws the version at random).
    pub sticky_canary: bool,
    /// Mirror copies in flight at once; beyond it new copies are dropped (and counted) so a slow
    /// mirror costs bounded memory and never the primary's time.
    pub max_mirror_in_flight: usize,
    /// Timeouts and limits of client connections.
    pub downstream: DownstreamOptions,
}

impl Default for ProxyOptions {
    fn default() -> Self {
        ProxyOptions {
            mirror_shadow_suffix: false,
            replay_cap: DEFAULT_REPLAY_CAP,
            sticky_canary: true,
            max_mirror_in_flight: DEFAULT_MAX_MIRROR_IN_FLIGHT,
            downstream: DownstreamOptions::default(),
        }
    }
}

/// Everything the request path shares.
pub struct ProxyContext {
    /// Published config.
    pub config: Arc<ConfigHandle>,
    /// Upstream pools.
    pub upstreams: Upstreams,
    /// Circuit breakers by cluster.
    pub runtimes: Arc<ClusterRuntimes>,
    /// Metrics, graph, access log.
    pub telemetry: Arc<Telemetry>,
    /// Mirror copies in flight.
    pub mirrors_in_flight: Arc<std::sync::atomic::AtomicUsize>,
    /// Relayed TCP connections (`tcp` rules), waited for at shutdown.
    pub relays: crate::tcp_proxy::Relays,
    /// Certificates and TLS configs (termination and origination).
    pub tls: TlsRuntime,
    /// The client connection budget shared by every proxy listener.
    pub connections: Arc<ConnectionLimit>,
    /// Options.
    pub options: ProxyOptions,
    /// JWT verification (RequestAuthentication) and its key cache.
    pub authn: security::Authn,
    /// Resolves request host names for `resolution: DYNAMIC_DNS` (none: such requests get
    /// `503 DF`).
    pub dynamic_dns: Option<Arc<dyn crate::dynamic_dns::HostResolver>>,
}

impl ProxyContext {
    /// A context with empty pools, its TLS material from `tls`.
    pub fn new(
        config: Arc<ConfigHandle>,
        telemetry: Arc<Telemetry>,
        options: ProxyOptions,
        tls: TlsRuntime,
    ) -> Self {
        let connections =
            ConnectionLimit::new(options.downstream.max_connections, Some(telemetry.clone()));
        ProxyContext {
            config,
            upstreams: Upstreams::new(),
            runtimes: Arc::new(ClusterRuntimes::new(tls.clone())),
            tls,
            telemetry,
            mirrors_in_flight: Arc::default(),
            relays: Default::default(),
            connections,
            options,
            authn: security::Authn::default(),
            dynamic_dns: None,
        }
    }
}

/// A fixed body.
pub fn full(body: impl Into<Bytes>) -> Body {
    Body::full(body)
}

fn join_flags(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_string(),
        (_, true) => a.to_string(),
        _ => format!("{a},{b}"),
    }
}

pub(crate) fn local_reply(status: StatusCode, flags: String, body: &'static str) -> Response<Body> {
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    if !body.is_empty() {
        resp.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain"),
        );
    }
    resp.extensions_mut().insert(ResponseFlags(flags));
    resp
}

/// Marks a reply to a client that went away mid-request: telemetry records status 0 with flag
/// `DC`, as Envoy does, whatever hyper may still write to the dead connection.
#[derive(Debug, Clone, Copy)]
struct ClientGone;

pub(crate) fn error_reply(e: &ProxyError, extra_flags: &str) -> Response<Body> {
    let (status, flag, body) = e.envoy_reply();
    tracing::debug!(error = %e, flag, "local reply");
    let mut resp = local_reply(status, join_flags(flag, extra_flags), body);
    match e {
        ProxyError::Overflow => {
            resp.headers_mut()
                .insert("x-envoy-overloaded", HeaderValue::from_static("true"));
        }
        ProxyError::Downstream {
            failure: DownstreamFailure::Disconnected,
            ..
        } => {
            resp.extensions_mut().insert(ClientGone);
        }
        _ => {}
    }
    resp
}

/// How a request reached the proxy, which tells the snapshot listener that serves it.
#[derive(Debug, Clone)]
pub enum Entry {
    /// Through the listener bound at this address.
    Bound(SocketAddr),
    /// Through outbound interception, on a connection to this original destination.
    Outbound(SocketAddr),
    /// Through TLS terminated on the listener bound at `address`, whose ClientHello named `sni`:
    /// the server chosen by that SNI serves every request of the connection, with the config in
    /// force when each arrives.
    Terminated {
        /// The TLS listener's address.
        address: SocketAddr,
        /// The ClientHello's server name, lower-cased.
        sni: Option<Arc<str>>,
    },
    /// Through a Sidecar ingress listener: authenticated, authorized, then handed to the app.
    Inbound(Arc<crate::inbound::InboundConn>),
}

impl Entry {
    /// The snapshot listener serving this entry.
    pub fn listener<'s>(&self, snapshot: &'s Snapshot) -> Option<&'s Arc<Listener>> {
        match self {
            Entry::Bound(a) => snapshot.listener(*a),
            Entry::Outbound(dst) => snapshot.outbound_listener(*dst),
            Entry::Inbound(_) => None,
            Entry::Terminated { address, sni } => {
                match &snapshot
                    .tls_listener(*address)?
                    .chain(sni.as_deref())?
                    .action
                {
                    ChainAction::Terminate { http, .. } => Some(http),
                    _ => None,
                }
            }
        }
    }

    /// The scheme requests arrived with.
    /// The listener address the request arrived on.
    fn local_address(&self) -> SocketAddr {
        match self {
            Entry::Bound(a) | Entry::Outbound(a) | Entry::Terminated { address: a, .. } => *a,
            Entry::Inbound(c) => c.local,
        }
    }

    fn scheme(&self) -> &'static str {
        match self {
            Entry::Terminated { .. } => "https",
            _ => "http",
        }
    }
}

/// Handles one request that arrived through `entry` from `peer` on a connection to `local`
/// (the socket's own address, which a wildcard listener address does not tell); `source_node`
/// names the listener in the traffic graph.
pub async fn handle(
    ctx: Arc<ProxyContext>,
    entry: Entry,
    (peer, local): (SocketAddr, SocketAddr),
    source_node: Arc<str>,
    req: Request<Incoming>,
) -> Response<Body> {
    let mut obs = Observation::start(ctx.telemetry.clone(), source_node, &req);
    let resp = match ctx.config.load() {
        Some(snapshot) => proxy(&ctx, &snapshot, entry, (peer, local), req, &mut obs).await,
        None => local_reply(
            StatusCode::SERVICE_UNAVAILABLE,
            "NR".into(),
            "no configuration loaded",
        ),
    };
    observed(resp, obs)
}

/// Attaches the request's observation to the response body, recorded when the body ends.
pub(crate) fn observed(resp: Response<Body>, mut obs: Observation) -> Response<Body> {
    let (mut parts, body) = resp.into_parts();
    obs.status = parts.status.as_u16();
    if let Some(ResponseFlags(f)) = parts.extensions.remove::<ResponseFlags>() {
        obs.flags = f;
        if parts.extensions.remove::<ClientGone>().is_some() {
            obs.status = 0;
        }
    }
    if obs.grpc {
        obs.grpc_status = grpc_status(&parts.headers);
    }
    Response::from_parts(
        parts,
        Body::Observed(Box::new(crate::body::Observed { inner: body, obs })),
    )
}

/// A routed request about to be forwarded.
struct Plan<'s> {
    m: RouteMatch<'s>,
    dest: &'s RouteDestination,
    cors_origin: Option<HeaderValue>,
    hash: RequestHash,
}

enum Decision<'s> {
    Reply(Response<Body>),
    Forward(Plan<'s>),
    /// No virtual host for the Host: `404 NR`, or the original destination when intercepted.
    NoVirtualHost,
}

/// Routes and applies the local-reply actions; borrows from the request without copying it.
fn decide<'s>(
    listener: &'s sluice_config::listener::Listener,
    req: &Request<Incoming>,
    scheme: &'static str,
    peer: SocketAddr,
    options: &ProxyOptions,
) -> Result<Decision<'s>, ProxyError> {
    // `authority::settle` left the request's one authority in Host.
    let authority = req
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok());
    let info = RequestInfo {
        method: req.method().as_str(),
        scheme,
        authority: authority.unwrap_or(""),
        path_and_query: req.uri().path_and_query().map_or("/", |p| p.as_str()),
        headers: req.headers(),
        extensions: Some(req.extensions()),
    };
    let m = match route(listener, &info) {
        Routed::Matched(m) => m,
        Routed::NoVirtualHost => return Ok(Decision::NoVirtualHost),
        Routed::NoRoute(_) => return Err(ProxyError::NoRoute),
        Routed::RequireTls(_) => {
            // Envoy's `require_tls`: the Host as sent (port kept), the path and query unchanged.
            let location = format!("https://{}{}", info.authority, info.path_and_query);
            let mut resp = Response::new(full(Bytes::new()));
            *resp.status_mut() = StatusCode::MOVED_PERMANENTLY;
            if let Ok(v) = HeaderValue::from_str(&location) {
                resp.headers_mut().insert(http::header::LOCATION, v);
            }
            return Ok(Decision::Reply(resp));
        }
    };
    let forward = match &m.route.action {
        RouteAction::Forward(f) => f,
        RouteAction::DirectResponse(d) => {
            let mut resp = Response::new(full(d.body.clone()));
            *resp.status_mut() = StatusCode::from_u16(d.status).unwrap_or(StatusCode::OK);
            if !d.body.is_empty() {
                resp.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain"),
                );
            }
            header_ops::apply(&m.route.policy.headers().response, resp.headers_mut());
            return Ok(Decision::Reply(resp));
        }
        RouteAction::Redirect(r) => {
            let location = r.location(&info, m.matched_prefix(), listener.port());
            let mut resp = Response::new(full(Bytes::new()));
            *resp.status_mut() =
                StatusCode::from_u16(r.code).unwrap_or(StatusCode::MOVED_PERMANENTLY);
            if let Ok(v) = HeaderValue::from_str(&location) {
                resp.headers_mut().insert(http::header::LOCATION, v);
            }
            return Ok(Decision::Reply(resp));
        }
    };
    let mut cors_origin = None;
    if let Some(policy) = &m.route.policy.cors {
        match cors::check(policy, req.method(), req.headers()) {
            cors::CorsOutcome::Respond(r) => return Ok(Decision::Reply(r)),
            cors::CorsOutcome::Allowed(origin) => cors_origin = Some(origin),
            cors::CorsOutcome::Forward => {}
        }
    }
    // The hash key comes from the DestinationRule of the route's host (its first destination).
    let hash_policy = forward
        .destinations
        .first()
        .and_then(|d| d.cluster.as_ref())
        .and_then(|c| match &c.policy.lb {
            LbPolicy::ConsistentHash(ch) => Some(&ch.key),
            _ => None,
        });
    let hash = hash_policy
        .map(|key| hash_key::compute(key, req.headers(), info.path_and_query, peer.ip()))
        .unwrap_or_default();
    let dest = match hash.hash {
        Some(h) if options.sticky_canary => forward.pick_by_hash(h),
        _ => forward.pick(),
    }
    .ok_or(ProxyError::NoRoute)?;
    Ok(Decision::Forward(Plan {
        m,
        dest,
        cors_origin,
        hash,
    }))
}

async fn proxy(
    ctx: &ProxyContext,
    snapshot: &Snapshot,
    entry: Entry,
    (peer, local): (SocketAddr, SocketAddr),
    mut req: Request<Incoming>,
    obs: &mut Observation,
) -> Response<Body> {
    if let Err(e) = authority::settle(&mut req) {
        return error_reply(&e.into(), "");
    }
    // Before routing and authorization, as Envoy's `normalize_path` that Istio turns on.
    if let Err(e) = crate::path_normalize::normalize(&mut req) {
        return error_reply(&ProxyError::BadRequest(e.to_string()), "");
    }
    if let Entry::Inbound(conn) = &entry {
        return Box::pin(crate::inbound::forward(ctx, snapshot, conn, peer, req, obs)).await;
    }
    let Some(listener) = entry.listener(snapshot) else {
        return match entry {
            // The port stopped being a mesh port since the connection was accepted. Boxed, like
            // the other passthrough below: each inline await would add an upstream exchange's
            // state to every request's future.
            Entry::Outbound(dst) => match &snapshot.outbound.black_hole {
                Some(black_hole) => crate::black_hole::reply(black_hole, obs),
                None => {
                    Box::pin(crate::egress_proxy::forward_unknown(
                        ctx, snapshot, dst, req,
                    ))
                    .await
                }
            },
            Entry::Bound(_) | Entry::Terminated { .. } | Entry::Inbound(_) => {
                error_reply(&ProxyError::NoRoute, "")
            }
        };
    };
    if listener.stat_prefix.is_some() {
        obs.server_stat = listener.stat_prefix.clone();
    }
    if listener.is_gateway() {
        // Envoy's order: the JWT filter (which also feeds claim-based routing), then RBAC.
        req = match ctx.authn.authenticate(snapshot, req) {
            Ok(r) => r,
            Err(denial) => return denial.reply(obs),
        };
        let sni = match &entry {
            Entry::Terminated { sni, .. } => sni.as_deref(),
            _ => None,
        };
        let facts = ConnFacts {
            peer,
            local: entry.local_address(),
            principal: None,
            sni,
        };
        if let Err(denial) = security::check_http(snapshot, &req, &facts) {
            return denial.reply(obs);
        }
    }
    if let Some(tracer) = ctx.telemetry.tracing() {
        obs.span = Some(trace_span::begin(tracer, listener, &req, peer));
    }
    let scheme = entry.scheme();
    let plan = match decide(listener, &req, scheme, peer, &ctx.options) {
        Ok(Decision::Forward(p)) => p,
        Ok(Decision::Reply(r)) => return r,
        Ok(Decision::NoVirtualHost) => {
            if let Some(black_hole) = &snapshot.outbound.black_hole {
                // REGISTRY_ONLY: a host outside the registry (or the Sidecar's scope) on a
                // mesh port is refused, intercepted or not.
                if !listener.is_gateway() && !matches!(entry, Entry::Inbound(_)) {
                    return crate::black_hole::reply(black_hole, obs);
                }
            }
            return match entry {
                // Istio's ALLOW_ANY: an unknown host goes to where the caller was going.
                Entry::Outbound(dst) => {
                    Box::pin(crate::egress_proxy::forward_unknown(
                        ctx, snapshot, dst, req,
                    ))
                    .await
                }
                Entry::Bound(_) | Entry::Terminated { .. } | Entry::Inbound(_) => {
                    let host = req
                        .headers()
                        .get(http::header::HOST)
                        .and_then(|h| h.to_str().ok())
                        .unwrap_or("");
                    crate::no_route::reply(listener, host, obs)
                }
            };
        }
        Err(e) => return error_reply(&e, ""),
    };
    let policy: &RoutePolicy = &plan.m.route.policy;
    obs.route = Some((plan.m.virtual_host.clone(), plan.m.index));
    if let Some(prefix) = plan
        .m
        .entry
        .and_then(|i| plan.m.route.matches.get(i))
        .and_then(|e| e.more().stat_prefix.as_ref())
    {
        obs.route_stat = Some(prefix.clone());
    }

    // Faults run before the router: an abort is never retried, a delay is not charged to the
    // route timeout.
    let mut flags = String::new();
    if let Some(f) = &policy.fault {
        let decision = fault::decide(f);
        if let Some(d) = decision.delay {
            tokio::time::sleep(d).await;
            flags = "DI".into();
        }
        if let Some(kind) = decision.abort {
            let mut resp = fault::abort_response(kind);
            resp.extensions_mut()
                .insert(ResponseFlags(join_flags(&flags, "FI")));
            return resp;
        }
    }

    let Some(cluster) = plan.dest.cluster.as_ref() else {
        return error_reply(
            &ProxyError::NoCluster(plan.dest.cluster_name.to_string()),
            &flags,
        );
    };

    obs.cluster = Some(cluster.clone());
    let (mut head, body) = req.into_parts();
    strip_hop_by_hop(&mut head.headers);
    // Forwarding headers add up to three and trace headers four more: one table growth at most
    // instead of several, and none when the map has room (hyper reuses the connection's previous
    // response map, so it usually has).
    head.headers.reserve(if obs.span.is_some() { 7 } else { 3 });
    add_forwarding(&mut head.headers, peer.ip(), listener.is_gateway(), scheme);
    if let Some(span) = obs.span.as_mut() {
        trace_span::routed(span, cluster, &mut head.headers);
    }
    if let Some(log) = obs.log.as_mut() {
        if let Some(id) = head
            .headers
            .get(&crate::headers::X_REQUEST_ID)
            .and_then(|v| v.to_str().ok())
        {
            log.text.set(TextField::RequestId, id);
        }
    }
    if let Some(rw) = &policy.rewrite {
        let original = head
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        if let Some(new_path) = rewrite::rewrite_path(rw, &plan.m, &original) {
            if let Ok(pq) = new_path.parse::<http::uri::PathAndQuery>() {
                let mut parts = std::mem::take(&mut head.uri).into_parts();
                parts.path_and_query = Some(pq);
                head.uri = http::Uri::from_parts(parts).unwrap_or_default();
                if let Ok(v) = HeaderValue::from_str(&original) {
                    head.headers.insert("x-envoy-original-path", v);
                }
            }
        }
        if let Some(a) = rw
            .authority
            .as_deref()
            .and_then(|a| HeaderValue::from_str(a).ok())
        {
            head.headers.insert(http::header::HOST, a);
        }
    }
    header_ops::apply(&policy.headers().request, &mut head.headers);
    header_ops::apply(&plan.dest.headers.request, &mut head.headers);
    // A destination's Host header operation rewrites the authority only when the route did not.
    let route_sets_authority = policy
        .rewrite
        .as_ref()
        .is_some_and(|r| r.authority.is_some());
    if let Some(a) = plan
        .dest
        .headers
        .authority
        .as_deref()
        .filter(|_| !route_sets_authority)
    {
        if let Ok(v) = HeaderValue::from_str(a) {
            head.headers.insert(http::header::HOST, v);
        }
    }
    let timeout = policy.timeout;
    if let Some(t) = timeout {
        head.headers.insert(
            "x-envoy-expected-rq-timeout-ms",
            HeaderValue::from(t.as_millis() as u64),
        );
    }

    let runtime = ctx.runtimes.get(
        &cluster.name,
        &cluster.policy.pool,
        cluster.protocol.upstream_h2(),
        cluster.policy.tls.as_ref(),
    );
    if cluster.policy.pool.max_requests_per_connection == 1
        && !runtime.upstream_h2_for(head.version)
    {
        // One request per connection: ask the upstream connection to close after this one.
        head.headers
            .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    }
    let recorder = Recorder::new(body, ctx.options.replay_cap);
    for m in &policy.mirrors {
        if mirror_sampled(m.percentage) {
            mirror::spawn_copy(
                ctx,
                m,
                &head,
                &recorder,
                mirror::Copy {
                    source_node: &obs.source_node,
                    route: obs.route.as_ref(),
                    timeout,
                },
            );
        }
    }

    let deadline = timeout.map(|t| Instant::now() + t);
    let hash = plan.hash.hash;
    // Istio omits the previous-hosts predicate with consistent hashing.
    let consistent = matches!(cluster.policy.lb, LbPolicy::ConsistentHash(_));
    let remote = policy
        .retry
        .as_ref()
        .is_some_and(|r| r.retry_remote_localities);
    let pick = |avoid: &[usize]| {
        let ctx = PickContext::at_pick_time(sluice_lb::fresh_seed())
            .with_hash(hash)
            .other_levels(remote);
        cluster
            .balancer()
            .pick(&ctx.excluding(if consistent { &[] } else { avoid }))
    };
    let metrics = ctx.telemetry.proxy().cluster(&cluster.name);
    // Istio's ORIGINAL_DST cluster: an intercepted request goes where its caller was going;
    // a DYNAMIC_DNS cluster sends it to its own host name, resolved now.
    let original_dst = match &entry {
        Entry::Outbound(dst) if cluster.original_dst => Some(passthrough::endpoint(*dst)),
        _ if cluster.dynamic_dns => {
            match crate::dynamic_dns::endpoint(ctx.dynamic_dns.as_ref(), &head, cluster).await {
                Ok(e) => Some(e),
                Err(e) => return error_reply(&e, &flags),
            }
        }
        _ => None,
    };
    let result = forward(ForwardRequest {
        upstreams: &ctx.upstreams,
        cluster,
        runtime: &runtime,
        head,
        body: recorder,
        retry: policy.retry.as_ref(),
        deadline,
        pick: &pick,
        metrics: &metrics,
        downstream: Some((peer, local)),
        original_dst: original_dst.as_ref(),
    })
    .await;
    let forwarded = match result {
        Ok(f) => f,
        Err(failed) => {
            let extra = if failed.retries_exhausted {
                join_flags(&flags, "URX")
            } else {
                flags
            };
            return error_reply(&failed.error, &extra);
        }
    };
    obs.endpoint = forwarded.endpoint;
    if forwarded.retries_exhausted {
        flags = join_flags(&flags, "URX");
    }
    let (mut parts, body) = forwarded.response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    header_ops::apply(&policy.headers().response, &mut parts.headers);
    header_ops::apply(&plan.dest.headers.response, &mut parts.headers);
    if let Some(cookie) = plan.hash.set_cookie {
        parts.headers.append(http::header::SET_COOKIE, cookie);
    }
    if let (Some(origin), Some(c)) = (plan.cors_origin, &policy.cors) {
        cors::decorate(c, origin, &mut parts.headers);
    }
    if !flags.is_empty() {
        parts.extensions.insert(ResponseFlags(flags));
    }
    let body = match deadline {
        Some(d) => Body::Deadline(Box::new(body), Box::pin(tokio::time::sleep_until(d))),
        None => body,
    };
    Response::from_parts(parts, body)
}

fn mirror_sampled(percent: f64) -> bool {
    if percent >= 100.0 {
        return true;
    }
    if percent <= 0.0 {
        return false;
    }
    use rand::Rng;
    rand::rng().random_range(0.0..100.0) < percent
}
