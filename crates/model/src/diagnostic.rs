//! Diagnostics: every problem found in config, with where it is and how bad it is.

use std::fmt;
use std::sync::Arc;

use serde::Serialize;

/// How serious a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Informational: nothing is wrong, but the operator may want to know.
    Info,
    /// The config is accepted, but probably does not do what was meant.
    Warning,
    /// The config is rejected.
    Error,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        })
    }
}

/// A position in a source file (1-based line and column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Default)]
pub struct Location {
    /// 1-based line number.
    pub line: u32,
    /// 1-based column number.
    pub column: u32,
}

/// Identifies one config object: kind, namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ResourceRef {
    /// Kind, e.g. `VirtualService`.
    pub kind: String,
    /// Namespace (defaulted to `default`).
    pub namespace: String,
    /// Object name.
    pub name: String,
}

impl fmt::Display for ResourceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// One problem (or remark) about the config.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Diagnostic {
    /// How serious it is.
    pub severity: Severity,
    /// Stable code: istioctl's `ISTxxxx` where one exists, else `SLCxxxx`.
    pub code: &'static str,
    /// What is wrong and what to check, in one sentence.
    pub message: String,
    /// The object it is about, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<ResourceRef>,
    /// Field path inside the object, e.g. `spec.http[0].route[1].weight`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Source file, when the config came from a file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<Arc<str>>,
    /// Position in the file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
}

impl Diagnostic {
    /// A diagnostic with no resource or location attached yet.
    pub fn new(severity: Severity, code: &'static str, message: impl Into<String>) -> Self {
        Diagnostic {
            severity,
            code,
            message: message.into(),
            resource: None,
            field: None,
            file: None,
            location: None,
        }
    }

    /// An error diagnostic.
    pub fn error(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(Severity::Error, code, message)
    }

    /// A warning diagnostic.
    pub fn warning(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(Severity::Warning, code, message)
    }

    /// An info diagnostic.
    pub fn info(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(Severity::Info, code, message)
    }

    /// Attaches a file and position.
    pub fn at(mut self, file: Option<Arc<str>>, location: Option<Location>) -> Self {
        self.file = file;
        self.location = location;
        self
    }

    /// `file:line:col` (or what is known of it) for human output.
    pub fn position(&self) -> Option<String> {
        let file = self.file.as_deref()?;
        Some(match self.location {
            Some(l) => format!("{file}:{}:{}", l.line, l.column),
            None => file.to_string(),
        })
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(pos) = self.position() {
            write!(f, "{pos}: ")?;
        }
        write!(f, "{} [{}]", self.severity, self.code)?;
        if let Some(r) = &self.resource {
            write!(f, " {r}")?;
        }
        if let Some(field) = &self.field {
            write!(f, " {field}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Diagnostic codes used across sluice. istioctl's codes are reused where the meaning is the same.
pub mod codes {
    /// A referenced resource (subset, gateway, host, delegate) does not exist.
    pub const REFERENCED_RESOURCE_NOT_FOUND: &str = "IST0101";
    /// A field fails Istio's schema or webhook validation.
    pub const SCHEMA_VALIDATION: &str = "IST0106";
    /// Two VirtualServices bound to the mesh claim the same host.
    pub const CONFLICTING_MESH_VS_HOSTS: &str = "IST0109";
    /// A deprecated field (it still works; istioctl's `Deprecated`, an info).
    pub const DEPRECATED: &str = "IST0002";
    /// A VirtualService rule can never match because an earlier one always does.
    pub const VS_UNREACHABLE_RULE: &str = "IST0130";
    /// A VirtualService match is ineffective: an earlier, identical one always wins.
    pub const VS_INEFFECTIVE_MATCH: &str = "IST0131";
    /// A VirtualService host is not served by the Gateway it names.
    pub const VS_HOST_NOT_IN_GATEWAY: &str = "IST0132";
    /// A DestinationRule subset's labels select no endpoint.
    pub const SUBSET_SELECTS_NOTHING: &str = "IST0173";
    /// A VirtualService routes on JWT claims at a gateway no RequestAuthentication selects.
    pub const JWT_CLAIM_ROUTING_WITHOUT_REQUEST_AUTHN: &str = "IST0149";
    /// The YAML or JSON cannot be parsed.
    pub const SYNTAX: &str = "SLC0001";
    /// A field is not part of the Istio API (it is ignored).
    pub const UNKNOWN_FIELD: &str = "SLC0002";
    /// An object of a kind sluice does not read was skipped.
    pub const SKIPPED_KIND: &str = "SLC0003";
    /// A value has the wrong type.
    pub const WRONG_TYPE: &str = "SLC0004";
    /// Two objects of the same kind share a namespace and name.
    pub const DUPLICATE_OBJECT: &str = "SLC0005";
    /// A config file exceeds a loader limit (size, documents, nesting or alias expansion).
    pub const LIMIT_EXCEEDED: &str = "SLC0006";
    /// A directory symlink leads back into a directory being read; the loop is not followed.
    pub const SYMLINK_LOOP: &str = "SLC0007";
    /// Two VirtualServices on the same gateway host have overlapping rules.
    pub const GATEWAY_VS_OVERLAP: &str = "SLC0010";
    /// A gateway TCP server has no `tcp` rule bound to it: its connections are closed.
    pub const TCP_PORT_UNROUTED: &str = "SLC0011";
    /// Gateway servers that cannot share a port (plain text and TLS, or a repeated TLS host).
    pub const GATEWAY_PORT_CONFLICT: &str = "SLC0012";
    /// A certificate, key or CA file named in the config cannot be read or used.
    pub const TLS_MATERIAL: &str = "SLC0013";
    /// A listener the config needs cannot be bound (the port is held elsewhere): the reload
    /// is rejected.
    pub const LISTENER_UNBOUND: &str = "SLC0014";
    /// No Gateway selects this proxy's labels, so none of their servers is bound here.
    pub const GATEWAY_NOT_SELECTED: &str = "SLC0015";
    /// A security policy attached by `targetRef(s)` does not apply to sidecars or classic
    /// gateways.
    pub const TARGET_REF_IGNORED: &str = "SLC0016";
    /// A Sidecar `defaultEndpoint` sluice cannot forward to (a unix socket).
    pub const SIDECAR_ENDPOINT_UNSUPPORTED: &str = "SLC0017";
    /// A PeerAuthentication is ignored because an older one covers the same namespace or
    /// workload.
    pub const PEER_AUTHENTICATION_SHADOWED: &str = "SLC0018";
    /// An endpoint is on another network than the proxy's: Istio would go through that
    /// network's gateway, and with none known (sluice has none) reaches it directly.
    pub const CROSS_NETWORK_ENDPOINT: &str = "SLC0019";
    /// `zoneAwareLbSetting` is in force but the proxy's own service (Envoy's local cluster) was
    /// not found: no zone-aware routing happens.
    pub const ZONE_AWARE_WITHOUT_LOCAL_CLUSTER: &str = "SLC0020";
    /// Several services on one unix domain socket egress listener of a TCP or TLS port that a
    /// stream cannot tell apart (no Host, no SNI): the first one is served there.
    pub const EGRESS_LISTENER_CONFLICT: &str = "SLC0021";
    /// An original-destination cluster (`resolution: NONE` without endpoints, `simple:
    /// PASSTHROUGH`) is reachable where no connection was intercepted: as in Envoy, requests
    /// there find no upstream host (`503 UH`).
    pub const ORIGINAL_DST_WITHOUT_INTERCEPTION: &str = "SLC0022";
    /// Several Sidecars without a workload selector in one namespace (the oldest wins).
    pub const MULTIPLE_SIDECARS_WITHOUT_SELECTOR: &str = "IST0111";
    /// Several Sidecars select the same workload (the oldest wins).
    pub const CONFLICTING_SIDECAR_SELECTORS: &str = "IST0110";
    /// A field or an Istio kind is valid but sluice does not enforce it yet.
    pub const NOT_ENFORCED: &str = "SLC0100";
    /// sluice itself failed while loading config (a bug: please report it).
    pub const INTERNAL: &str = "SLC0999";
}
