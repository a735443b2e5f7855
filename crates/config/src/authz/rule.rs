//! A compiled AuthorizationPolicy rule: any `from`, any `to`, every `when`, each field a list
//! of precompiled values (or their negation).

use std::borrow::Cow;
use std::net::IpAddr;

use http::HeaderName;
use ipnet::IpNet;
use regex::Regex;
use sluice_model::{Condition, Operation, Rule, Source};

use super::attributes::{header_value, RequestAttributes};
use super::condition_key::ConditionKey;
use super::identity::{
    namespace_regex, service_account_regex, trust_domain_of, PrincipalMatch, RequestPrincipalMatch,
    TrustBundle,
};
use super::value_match::{PathMatch, ValueMatch};

/// One compiled value of one attribute.
#[derive(Debug, Clone)]
pub(crate) enum Attr {
    /// Peer identity.
    Principal(PrincipalMatch),
    /// Namespace inside the peer identity.
    Namespace(Regex),
    /// Service account inside the peer identity.
    ServiceAccount(Regex),
    /// Trust domain of the peer identity.
    TrustDomain(ValueMatch),
    /// Peer address.
    SourceIp(IpNet),
    /// Client address.
    RemoteIp(IpNet),
    /// Local address.
    DestinationIp(IpNet),
    /// Local port.
    DestinationPort(u16),
    /// JWT `iss`/`sub`.
    RequestPrincipal(RequestPrincipalMatch),
    /// Host as sent, lowercased.
    Host(ValueMatch),
    /// Method.
    Method(ValueMatch),
    /// Path without query.
    Path(PathMatch),
    /// Request header.
    Header(HeaderName, ValueMatch),
    /// JWT claim at a path (`aud`, `azp` or `request.auth.claims[...]`).
    Claim(Vec<String>, ValueMatch),
    /// Downstream SNI.
    Sni(ValueMatch),
    /// Metadata sluice never produces: never matches.
    Never,
}

impl Attr {
    fn matches(&self, a: &RequestAttributes<'_>) -> bool {
        let http = a.http.as_ref();
        match self {
            Attr::Principal(m) => m.matches(a.peer_principal),
            Attr::Namespace(re) | Attr::ServiceAccount(re) => {
                a.peer_principal.is_some_and(|p| re.is_match(p))
            }
            Attr::TrustDomain(m) => a
                .peer_principal
                .and_then(trust_domain_of)
                .is_some_and(|td| m.matches(td)),
            Attr::SourceIp(net) => contains(net, a.source_ip),
            Attr::RemoteIp(net) => contains(net, a.remote_ip),
            Attr::DestinationIp(net) => contains(net, a.destination_ip),
            Attr::DestinationPort(p) => a.destination_port == *p,
            Attr::RequestPrincipal(m) => m.matches(a.jwt()),
            Attr::Host(m) => http.is_some_and(|h| {
                let host = if h.host.bytes().any(|b| b.is_ascii_uppercase()) {
                    Cow::Owned(h.host.to_ascii_lowercase())
                } else {
                    Cow::Borrowed(h.host)
                };
                m.matches(&host)
            }),
            Attr::Method(m) => http.is_some_and(|h| m.matches(h.method)),
            Attr::Path(m) => http.is_some_and(|h| m.matches(h.path)),
            Attr::Header(name, m) => {
                http.is_some_and(|h| header_value(h.headers, name).is_some_and(|v| m.matches(&v)))
            }
            Attr::Claim(path, m) => a
                .jwt()
                .and_then(|j| j.claim(path))
                .is_some_and(|c| m.matches_claim(c)),
            Attr::Sni(m) => a.sni.is_some_and(|s| m.matches(s)),
            Attr::Never => false,
        }
    }
}

/// An IPv4 block also covers the IPv4-mapped form a dual-stack socket reports. A unix domain
/// socket has no IP: no block contains it (as Envoy's IP matchers never match a pipe address).
fn contains(net: &IpNet, ip: IpAddr) -> bool {
    if crate::pipe::is_pipe(ip) {
        return false;
    }
    net.contains(&ip)
        || match ip {
            IpAddr::V6(v6) => v6
                .to_ipv4_mapped()
                .is_some_and(|v4| net.contains(&IpAddr::V4(v4))),
            IpAddr::V4(_) => false,
        }
}

/// One field of a Source, Operation or condition: any of `values` (or none of them, negated).
#[derive(Debug, Clone)]
pub(crate) struct Item {
    values: Vec<Attr>,
    negated: bool,
    http_only: bool,
}

impl Item {
    fn matches(&self, a: &RequestAttributes<'_>) -> bool {
        self.values.iter().any(|v| v.matches(a)) != self.negated
    }
}

/// A compiled rule.
#[derive(Debug, Clone)]
pub(crate) struct CompiledRule {
    from: Option<Vec<Vec<Item>>>,
    to: Option<Vec<Vec<Item>>>,
    when: Vec<Item>,
    has_http_only: bool,
}

impl CompiledRule {
    /// Whether the rule matches. On TCP (no HTTP attributes) an ALLOW rule with any HTTP-only
    /// field never matches, while DENY, AUDIT and CUSTOM rules ignore their HTTP-only fields:
    /// that is how Istio builds its network RBAC filter.
    pub(crate) fn matches(&self, a: &RequestAttributes<'_>, allow: bool) -> bool {
        let tcp = a.http.is_none();
        if tcp && allow && self.has_http_only {
            return false;
        }
        let ok = |it: &Item| (tcp && it.http_only) || it.matches(a);
        let any_of = |alts: &Option<Vec<Vec<Item>>>| {
            alts.as_ref()
                .is_none_or(|alts| alts.iter().any(|items| items.iter().all(ok)))
        };
        any_of(&self.from) && any_of(&self.to) && self.when.iter().all(ok)
    }

    /// Compiles a rule of a policy in `namespace`. Values that cannot be compiled (refused by
    /// validation before this) drop the field.
    pub(crate) fn compile(rule: &Rule, namespace: &str, bundle: &TrustBundle<'_>) -> CompiledRule {
        let b = Builder { namespace, bundle };
        let from = rule.from.as_ref().filter(|f| !f.is_empty()).map(|f| {
            f.iter()
                .map(|x| x.source.as_ref().map(|s| b.source(s)).unwrap_or_default())
                .collect::<Vec<_>>()
        });
        let to = rule.to.as_ref().filter(|t| !t.is_empty()).map(|t| {
            t.iter()
                .map(|x| {
                    x.operation
                        .as_ref()
                        .map(|o| b.operation(o))
                        .unwrap_or_default()
                })
                .collect::<Vec<_>>()
        });
        let when: Vec<Item> = rule
            .when
            .iter()
            .flatten()
            .flat_map(|c| b.condition(c))
            .collect();
        let has_http_only = from
            .iter()
            .chain(to.iter())
            .flatten()
            .flatten()
            .chain(when.iter())
            .any(|i| i.http_only);
        CompiledRule {
            from,
            to,
            when,
            has_http_only,
        }
    }
}

struct Builder<'a> {
    namespace: &'a str,
    bundle: &'a TrustBundle<'a>,
}

type Values = Option<Vec<String>>;

impl Builder<'_> {
    /// Compiles `values` and `not_values` of one field into up to two items.
    fn pair(
        &self,
        out: &mut Vec<Item>,
        values: &Values,
        not_values: &Values,
        http_only: bool,
        f: &dyn Fn(&str) -> Vec<Attr>,
    ) {
        for (list, negated) in [(values, false), (not_values, true)] {
            let Some(list) = list.as_ref().filter(|l| !l.is_empty()) else {
                continue;
            };
            out.push(Item {
                values: list.iter().flat_map(|v| f(v)).collect(),
                negated,
                http_only,
            });
        }
    }

    fn principals(&self, v: &str) -> Vec<Attr> {
        self.bundle
            .expand(v)
            .iter()
            .map(|p| Attr::Principal(PrincipalMatch::new(p)))
            .collect()
    }

    fn namespace(&self, v: &str) -> Vec<Attr> {
        namespace_regex(v)
            .map(Attr::Namespace)
            .into_iter()
            .collect()
    }

    fn service_account(&self, v: &str) -> Vec<Attr> {
        service_account_regex(v, self.namespace)
            .map(Attr::ServiceAccount)
            .into_iter()
            .collect()
    }

    fn source(&self, s: &Source) -> Vec<Item> {
        let mut out = Vec::new();
        self.pair(&mut out, &s.principals, &s.not_principals, false, &|v| {
            self.principals(v)
        });
        self.pair(
            &mut out,
            &s.request_principals,
            &s.not_request_principals,
            true,
            &|v| vec![Attr::RequestPrincipal(RequestPrincipalMatch::new(v))],
        );
        self.pair(&mut out, &s.namespaces, &s.not_namespaces, false, &|v| {
            self.namespace(v)
        });
        self.pair(
            &mut out,
            &s.service_accounts,
            &s.not_service_accounts,
            false,
            &|v| self.service_account(v),
        );
        self.pair(
            &mut out,
            &s.trust_domains,
            &s.not_trust_domains,
            false,
            &|v| vec![Attr::TrustDomain(ValueMatch::parse(v, false))],
        );
        self.pair(&mut out, &s.ip_blocks, &s.not_ip_blocks, false, &|v| {
            ip_net(v).map(Attr::SourceIp).into_iter().collect()
        });
        self.pair(
            &mut out,
            &s.remote_ip_blocks,
            &s.not_remote_ip_blocks,
            false,
            &|v| ip_net(v).map(Attr::RemoteIp).into_iter().collect(),
        );
        out
    }

    fn operation(&self, o: &Operation) -> Vec<Item> {
        let mut out = Vec::new();
        self.pair(&mut out, &o.hosts, &o.not_hosts, true, &|v| {
            vec![Attr::Host(ValueMatch::parse(v, true))]
        });
        self.pair(&mut out, &o.ports, &o.not_ports, false, &|v| {
            v.parse().map(Attr::DestinationPort).into_iter().collect()
        });
        self.pair(&mut out, &o.methods, &o.not_methods, true, &|v| {
            vec![Attr::Method(ValueMatch::parse(v, false))]
        });
        self.pair(&mut out, &o.paths, &o.not_paths, true, &|v| {
            PathMatch::parse(v).map(Attr::Path).into_iter().collect()
        });
        out
    }

    fn condition(&self, c: &Condition) -> Vec<Item> {
        let Ok(key) = ConditionKey::parse(&c.key) else {
            return Vec::new();
        };
        let text = |v: &str| ValueMatch::parse(v, false);
        let f = |v: &str| -> Vec<Attr> {
            match &key {
                ConditionKey::RequestHeader(name) => HeaderName::try_from(name.as_str())
                    .map(|n| Attr::Header(n, text(v)))
                    .into_iter()
                    .collect(),
                ConditionKey::SourceIp => ip_net(v).map(Attr::SourceIp).into_iter().collect(),
                ConditionKey::RemoteIp => ip_net(v).map(Attr::RemoteIp).into_iter().collect(),
                ConditionKey::DestinationIp => {
                    ip_net(v).map(Attr::DestinationIp).into_iter().collect()
                }
                ConditionKey::DestinationPort => {
                    v.parse().map(Attr::DestinationPort).into_iter().collect()
                }
                ConditionKey::SourceNamespace => self.namespace(v),
                ConditionKey::SourcePrincipal => self.principals(v),
                ConditionKey::SourceServiceAccount => self.service_account(v),
                ConditionKey::SourceTrustDomain => vec![Attr::TrustDomain(text(v))],
                ConditionKey::RequestAuthPrincipal => {
                    vec![Attr::RequestPrincipal(RequestPrincipalMatch::new(v))]
                }
                ConditionKey::RequestAuthAudiences => {
                    vec![Attr::Claim(vec!["aud".into()], text(v))]
                }
                ConditionKey::RequestAuthPresenter => {
                    vec![Attr::Claim(vec!["azp".into()], text(v))]
                }
                ConditionKey::RequestAuthClaims(path) => vec![Attr::Claim(path.clone(), text(v))],
                ConditionKey::ConnectionSni => vec![Attr::Sni(text(v))],
                ConditionKey::ExperimentalMetadata => vec![Attr::Never],
            }
        };
        let mut out = Vec::new();
        self.pair(&mut out, &c.values, &c.not_values, key.http_only(), &f);
        out
    }
}

/// An IP address (a one-address block) or a CIDR block.
pub(crate) fn ip_net(v: &str) -> Option<IpNet> {
    if v.contains('/') {
        // Istio accepts host bits set in a CIDR (`10.1.2.3/8`): the block is what counts.
        v.parse::<IpNet>().ok().map(|n| n.trunc())
    } else {
        v.parse::<IpAddr>().ok().map(IpNet::from)
    }
}
