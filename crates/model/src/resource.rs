//! A parsed config object: its envelope (kind, apiVersion, metadata), typed spec and origin.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::diagnostic::{codes, Diagnostic, Location, ResourceRef, Severity};
use crate::location::{push_index, push_key, SpanMap, Spans};
use crate::{
    AuthorizationPolicy, Canary, DestinationRule, Gateway, PeerAuthentication,
    RequestAuthentication, ServiceEntry, Sidecar, VirtualService, WorkloadEntry,
};

/// The networking API group sluice reads.
pub const ISTIO_GROUP: &str = "networking.istio.io";
/// The networking API versions that share one schema.
pub const ISTIO_VERSIONS: [&str; 3] = ["v1alpha3", "v1beta1", "v1"];
/// The security API group sluice reads.
pub const SECURITY_GROUP: &str = "security.istio.io";
/// The security API versions that share one schema.
pub const SECURITY_VERSIONS: [&str; 2] = ["v1beta1", "v1"];
/// sluice's own progressive-delivery API group.
pub const ROLLOUTS_GROUP: &str = "rollouts.sluice.dev";
/// The rollouts API versions sluice reads.
pub const ROLLOUTS_VERSIONS: [&str; 1] = ["v1alpha1"];

/// The kinds sluice reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Kind {
    /// `VirtualService`.
    VirtualService,
    /// `DestinationRule`.
    DestinationRule,
    /// `Gateway`.
    Gateway,
    /// `ServiceEntry`.
    ServiceEntry,
    /// `WorkloadEntry`.
    WorkloadEntry,
    /// `Sidecar`.
    Sidecar,
    /// `AuthorizationPolicy` (security.istio.io).
    AuthorizationPolicy,
    /// `PeerAuthentication` (security.istio.io).
    PeerAuthentication,
    /// `RequestAuthentication` (security.istio.io).
    RequestAuthentication,
    /// `Canary` (rollouts.sluice.dev).
    Canary,
}

impl Kind {
    /// Parses a `kind:` value.
    pub fn from_name(s: &str) -> Option<Kind> {
        Some(match s {
            "VirtualService" => Kind::VirtualService,
            "DestinationRule" => Kind::DestinationRule,
            "Gateway" => Kind::Gateway,
            "ServiceEntry" => Kind::ServiceEntry,
            "WorkloadEntry" => Kind::WorkloadEntry,
            "Sidecar" => Kind::Sidecar,
            "AuthorizationPolicy" => Kind::AuthorizationPolicy,
            "PeerAuthentication" => Kind::PeerAuthentication,
            "RequestAuthentication" => Kind::RequestAuthentication,
            "Canary" => Kind::Canary,
            _ => return None,
        })
    }

    /// The `kind:` value.
    pub fn name(self) -> &'static str {
        match self {
            Kind::VirtualService => "VirtualService",
            Kind::DestinationRule => "DestinationRule",
            Kind::Gateway => "Gateway",
            Kind::ServiceEntry => "ServiceEntry",
            Kind::WorkloadEntry => "WorkloadEntry",
            Kind::Sidecar => "Sidecar",
            Kind::AuthorizationPolicy => "AuthorizationPolicy",
            Kind::PeerAuthentication => "PeerAuthentication",
            Kind::RequestAuthentication => "RequestAuthentication",
            Kind::Canary => "Canary",
        }
    }

    /// The API group the kind belongs to.
    pub fn group(self) -> &'static str {
        match self {
            Kind::AuthorizationPolicy | Kind::PeerAuthentication | Kind::RequestAuthentication => {
                SECURITY_GROUP
            }
            Kind::Canary => ROLLOUTS_GROUP,
            _ => ISTIO_GROUP,
        }
    }

    /// The API versions of the kind's group that sluice reads.
    pub fn versions(self) -> &'static [&'static str] {
        match self.group() {
            SECURITY_GROUP => &SECURITY_VERSIONS,
            ROLLOUTS_GROUP => &ROLLOUTS_VERSIONS,
            _ => &ISTIO_VERSIONS,
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The metadata fields sluice uses.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ObjectMeta {
    /// Object name.
    pub name: String,
    /// Namespace (`default` when absent).
    pub namespace: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    pub annotations: BTreeMap<String, String>,
    /// RFC 3339 creation time, which orders VirtualServices the way Istio does.
    pub creation_timestamp: Option<String>,
    /// Kubernetes resource version.
    pub resource_version: Option<String>,
}

/// A typed spec of one of the kinds sluice reads.
// Boxed: a `Resource` lives in every snapshot, and inline the largest kind (a DestinationRule)
// made each of the others as large (1.5 KB per object, 40 MB at 10,000 services).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Spec {
    /// `VirtualService`.
    VirtualService(Box<VirtualService>),
    /// `DestinationRule`.
    DestinationRule(Box<DestinationRule>),
    /// `Gateway`.
    Gateway(Box<Gateway>),
    /// `ServiceEntry`.
    ServiceEntry(Box<ServiceEntry>),
    /// `WorkloadEntry`.
    WorkloadEntry(Box<WorkloadEntry>),
    /// `Sidecar`.
    Sidecar(Box<Sidecar>),
    /// `AuthorizationPolicy`.
    AuthorizationPolicy(Box<AuthorizationPolicy>),
    /// `PeerAuthentication`.
    PeerAuthentication(Box<PeerAuthentication>),
    /// `RequestAuthentication`.
    RequestAuthentication(Box<RequestAuthentication>),
    /// `Canary`.
    Canary(Box<Canary>),
}

/// Where an object came from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    /// Source file (absent for objects from the Kubernetes API).
    pub file: Option<Arc<str>>,
    /// Positions of the object's fields (paths rooted at the object: `spec.hosts[0]`).
    pub spans: Spans,
}

/// One config object.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Resource {
    /// The apiVersion it was written with.
    pub api_version: String,
    /// Kind.
    pub kind: Kind,
    /// Metadata.
    pub metadata: ObjectMeta,
    /// Typed spec.
    pub spec: Spec,
    /// Origin, for diagnostics.
    #[serde(skip)]
    pub origin: Origin,
}

impl Resource {
    /// Kind, namespace and name.
    pub fn key(&self) -> ResourceRef {
        ResourceRef {
            kind: self.kind.name().to_string(),
            namespace: self.metadata.namespace.clone(),
            name: self.metadata.name.clone(),
        }
    }

    /// The source position of a field path, or of its nearest ancestor.
    pub fn locate(&self, field: &str) -> Option<Location> {
        self.origin.spans.locate(field)
    }

    /// A diagnostic about `field` of this object, positioned in its source.
    pub fn diag(
        &self,
        severity: Severity,
        code: &'static str,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Diagnostic {
        let field = field.into();
        let mut d = Diagnostic::new(severity, code, message)
            .at(self.origin.file.clone(), self.locate(&field));
        d.resource = Some(self.key());
        if !field.is_empty() {
            d.field = Some(field);
        }
        d
    }
}

/// Objects and diagnostics from one source.
#[derive(Debug, Clone, Default)]
pub struct Parsed {
    /// Objects that were read.
    pub resources: Vec<Resource>,
    /// Problems found while reading.
    pub diagnostics: Vec<Diagnostic>,
}

/// Parses YAML or JSON text holding any number of objects (and `kind: List`s).
pub fn parse_text(text: &str, file: Option<Arc<str>>) -> Parsed {
    parse_text_by_document(text, file).0
}

/// [`parse_text`], with how many objects each YAML document gave, by the line the document
/// starts on (empty when the text was not read as YAML documents).
pub fn parse_text_by_document(text: &str, file: Option<Arc<str>>) -> (Parsed, Vec<(u32, usize)>) {
    let mut out = Parsed::default();
    let mut counts = Vec::new();
    match crate::yaml::parse_documents(text) {
        Ok(docs) => {
            counts.reserve_exact(docs.len());
            for doc in docs {
                let before = out.resources.len();
                decode_into(doc.value, Arc::new(doc.spans), "", file.clone(), &mut out);
                counts.push((doc.line, out.resources.len() - before));
            }
        }
        Err(e) if e.kind == crate::yaml::SyntaxErrorKind::LimitExceeded => {
            out.diagnostics.push(
                Diagnostic::error(
                    codes::LIMIT_EXCEEDED,
                    format!("file refused: {}", e.message),
                )
                .at(file, Some(e.location)),
            );
        }
        Err(e) => {
            // JSON is YAML, except where JSON allows what YAML's block rules do not (tabs).
            if let Ok(v) = serde_json::from_str::<Value>(text) {
                decode_into(v, Arc::default(), "", file, &mut out);
            } else {
                out.diagnostics.push(
                    Diagnostic::error(codes::SYNTAX, format!("YAML syntax error: {}", e.message))
                        .at(file, Some(e.location)),
                );
            }
        }
    }
    (out, counts)
}

/// Decodes one object already parsed into a JSON value (the Kubernetes watcher's path).
pub fn decode_value(value: Value, spans: SpanMap, file: Option<Arc<str>>) -> Parsed {
    let mut out = Parsed::default();
    decode_into(value, Arc::new(spans), "", file, &mut out);
    out
}

/// Decodes the object at `root` of a document with positions `spans` (keyed by paths in the
/// document).
fn decode_into(
    value: Value,
    spans: Arc<SpanMap>,
    root: &str,
    file: Option<Arc<str>>,
    out: &mut Parsed,
) {
    let located = |field: &str, d: Diagnostic| {
        let path = join(root, field);
        let mut d = d.at(file.clone(), spans.locate(&path));
        if !path.is_empty() {
            d.field = Some(path);
        }
        d
    };
    let Value::Object(mut obj) = value else {
        if !value.is_null() {
            out.diagnostics.push(located(
                "",
                Diagnostic::error(codes::WRONG_TYPE, "a config document must be a mapping"),
            ));
        }
        return;
    };
    let api_version = obj
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let kind_name = obj
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if kind_name.is_empty() || api_version.is_empty() {
        out.diagnostics.push(located(
            "",
            Diagnostic::error(
                codes::SCHEMA_VALIDATION,
                "object has no `apiVersion` or `kind`",
            ),
        ));
        return;
    }
    if kind_name == "List" || kind_name.ends_with("List") && api_version == "v1" {
        if let Some(Value::Array(items)) = obj.remove("items") {
            let items_path = join(root, "items");
            // Each item of a top-level List keeps the positions of its own part of the
            // document, so an item compares equal to itself parsed again after an edit of
            // another item. The items of a List nested in a List share their document's.
            let mut parts = if root.is_empty() {
                spans.split_items()
            } else {
                Default::default()
            };
            for (i, item) in items.into_iter().enumerate() {
                let path = push_index(&items_path, i);
                let own = u32::try_from(i).ok().and_then(|i| parts.remove(&i));
                let item_spans = own.map_or_else(|| Arc::clone(&spans), Arc::new);
                decode_into(item, item_spans, &path, file.clone(), out);
            }
        }
        return;
    }
    let (group, version) = api_version.split_once('/').unwrap_or(("", &api_version));
    let kind = match Kind::from_name(&kind_name) {
        Some(k) if group == k.group() => k,
        _ => {
            let name = obj
                .get("metadata")
                .and_then(|m| m.get("name"))
                .and_then(Value::as_str)
                .unwrap_or("");
            out.diagnostics.push(located(
                "kind",
                crate::skipped::skipped_kind(&api_version, &kind_name, name),
            ));
            return;
        }
    };
    if !kind.versions().contains(&version) {
        let group = kind.group();
        let message = if group == SECURITY_GROUP {
            format!("unsupported apiVersion `{api_version}`: use {group}/v1 or v1beta1")
        } else if group == ROLLOUTS_GROUP {
            format!("unsupported apiVersion `{api_version}`: use {group}/v1alpha1")
        } else {
            format!("unsupported apiVersion `{api_version}`: use {group}/v1, v1beta1 or v1alpha3")
        };
        out.diagnostics.push(located(
            "apiVersion",
            Diagnostic::error(codes::SCHEMA_VALIDATION, message),
        ));
        return;
    }
    let metadata = match read_metadata(obj.get("metadata")) {
        Ok(m) => m,
        Err(msg) => {
            out.diagnostics.push(located(
                "metadata",
                Diagnostic::error(codes::SCHEMA_VALIDATION, msg),
            ));
            return;
        }
    };
    let resource_ref = ResourceRef {
        kind: kind.name().to_string(),
        namespace: metadata.namespace.clone(),
        name: metadata.name.clone(),
    };
    let mut diags = Vec::new();
    for key in obj.keys() {
        if !matches!(
            key.as_str(),
            "apiVersion" | "kind" | "metadata" | "spec" | "status"
        ) {
            diags.push(located(
                key,
                Diagnostic::warning(
                    codes::UNKNOWN_FIELD,
                    format!("unknown field `{key}` is ignored"),
                ),
            ));
        }
    }
    let spec_value = obj
        .remove("spec")
        .unwrap_or(Value::Object(Default::default()));
    let spec_root = join(root, "spec");
    let spec =
        match kind {
            Kind::VirtualService => typed(spec_value, &spec_root, &mut diags, &located)
                .map(|v| Spec::VirtualService(Box::new(v))),
            Kind::DestinationRule => typed(spec_value, &spec_root, &mut diags, &located)
                .map(|v| Spec::DestinationRule(Box::new(v))),
            Kind::Gateway => typed(spec_value, &spec_root, &mut diags, &located)
                .map(|v| Spec::Gateway(Box::new(v))),
            Kind::ServiceEntry => typed(spec_value, &spec_root, &mut diags, &located)
                .map(|v| Spec::ServiceEntry(Box::new(v))),
            Kind::WorkloadEntry => typed(spec_value, &spec_root, &mut diags, &located)
                .map(|v| Spec::WorkloadEntry(Box::new(v))),
            Kind::Sidecar => typed(spec_value, &spec_root, &mut diags, &located)
                .map(|v| Spec::Sidecar(Box::new(v))),
            Kind::AuthorizationPolicy => typed(spec_value, &spec_root, &mut diags, &located)
                .map(|v| Spec::AuthorizationPolicy(Box::new(v))),
            Kind::PeerAuthentication => typed(spec_value, &spec_root, &mut diags, &located)
                .map(|v| Spec::PeerAuthentication(Box::new(v))),
            Kind::RequestAuthentication => typed(spec_value, &spec_root, &mut diags, &located)
                .map(|v| Spec::RequestAuthentication(Box::new(v))),
            Kind::Canary => typed(spec_value, &spec_root, &mut diags, &located)
                .map(|v| Spec::Canary(Box::new(v))),
        };
    for d in &mut diags {
        d.resource = Some(resource_ref.clone());
        // Paths in diagnostics are relative to the object, not to a surrounding List.
        if let Some(f) = d.field.as_mut() {
            if let Some(rest) = f.strip_prefix(root) {
                *f = rest.trim_start_matches('.').to_string();
            }
        }
    }
    out.diagnostics.extend(diags);
    if let Some(spec) = spec {
        let spans = if root.is_empty() {
            Spans::from(Arc::try_unwrap(spans).unwrap_or_else(|shared| (*shared).clone()))
        } else {
            Spans::rooted(spans, root)
        };
        out.resources.push(Resource {
            api_version,
            kind,
            metadata,
            spec,
            origin: Origin { file, spans },
        });
    }
}

fn join(root: &str, field: &str) -> String {
    match (root.is_empty(), field.is_empty()) {
        (true, _) => field.to_string(),
        (false, true) => root.to_string(),
        (false, false) => format!("{root}.{field}"),
    }
}

/// Deserializes a spec, turning unknown fields into warnings and type errors into an error.
fn typed<T: DeserializeOwned>(
    value: Value,
    spec_root: &str,
    diags: &mut Vec<Diagnostic>,
    located: &dyn Fn(&str, Diagnostic) -> Diagnostic,
) -> Option<T> {
    let mut unknown = Vec::new();
    let mut track = serde_path_to_error::Track::new();
    let result = {
        let de = serde_path_to_error::Deserializer::new(value, &mut track);
        serde_ignored::deserialize(de, |path| unknown.push(ignored_path(spec_root, &path)))
    };
    for path in unknown {
        let field = path
            .rsplit(['.', '['])
            .next()
            .unwrap_or(&path)
            .trim_end_matches(']')
            .to_string();
        let rel = path
            .strip_prefix(spec_root.trim_end_matches("spec"))
            .unwrap_or(&path)
            .to_string();
        diags.push(located(
            &rel,
            Diagnostic::warning(
                codes::UNKNOWN_FIELD,
                format!("unknown field `{field}` is not part of the Istio API and is ignored"),
            ),
        ));
    }
    match result {
        Ok(v) => Some(v),
        Err(e) => {
            let path = track.path();
            let mut field = "spec".to_string();
            for seg in path.iter() {
                field = match seg {
                    serde_path_to_error::Segment::Seq { index } => push_index(&field, *index),
                    serde_path_to_error::Segment::Map { key } => push_key(&field, key),
                    serde_path_to_error::Segment::Enum { variant } => push_key(&field, variant),
                    serde_path_to_error::Segment::Unknown => field,
                };
            }
            diags.push(located(
                &field,
                Diagnostic::error(codes::WRONG_TYPE, format!("wrong type: {e}")),
            ));
            None
        }
    }
}

fn ignored_path(spec_root: &str, path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => spec_root.to_string(),
        Path::Seq { parent, index } => push_index(&ignored_path(spec_root, parent), *index),
        Path::Map { parent, key } => push_key(&ignored_path(spec_root, parent), key),
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => ignored_path(spec_root, parent),
    }
}

fn read_metadata(v: Option<&Value>) -> Result<ObjectMeta, String> {
    let Some(Value::Object(m)) = v else {
        return Err("`metadata` with a `name` is required".into());
    };
    let s = |k: &str| m.get(k).and_then(Value::as_str).map(str::to_string);
    let map = |k: &str| -> BTreeMap<String, String> {
        m.get(k)
            .and_then(Value::as_object)
            .map(|o| {
                o.iter()
                    .map(|(k, v)| {
                        (
                            k.clone(),
                            v.as_str()
                                .map(str::to_string)
                                .unwrap_or_else(|| v.to_string()),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let name = s("name")
        .filter(|n| !n.is_empty())
        .ok_or("`metadata.name` is required")?;
    Ok(ObjectMeta {
        name,
        namespace: s("namespace")
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "default".into()),
        labels: map("labels"),
        annotations: map("annotations"),
        creation_timestamp: s("creationTimestamp"),
        resource_version: s("resourceVersion"),
    })
}
