//! `sluice inject`: adds the sluice sidecar to workloads, like `istioctl kube-inject`.
//!
//! Documents that are not changed are copied byte for byte (comments included); changed ones are
//! re-emitted in block style with their keys in the original order.

mod emit;
pub mod json;
pub mod node;
mod pod;

use std::io::{Read as _, Write as _};
use std::path::PathBuf;

use anyhow::Context as _;

pub use emit::emit;
pub use json::inject_pod;
pub use node::{Node, Scalar, Style};
pub use pod::{
    INIT_CONTAINER, PODINFO_DIR, PODINFO_VOLUME, PROXY_CONTAINER, STATUS_ANNOTATION, TLS_MODE_ISTIO,
};

/// The image used when none is given.
pub const DEFAULT_IMAGE: &str = "sluice:dev";

/// What the injected containers look like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InjectOptions {
    /// Image of the sidecar and the init container.
    pub image: String,
    /// `imagePullPolicy` of both.
    pub image_pull_policy: String,
    /// UID (and GID) the proxy runs as; its traffic is not intercepted.
    pub proxy_uid: u32,
    /// Port of the outbound (`SO_ORIGINAL_DST`) listener.
    pub outbound_port: u16,
    /// Port of the inbound listener.
    pub inbound_port: u16,
    /// Port of the admin API (readiness probe; never intercepted).
    pub admin_port: u16,
    /// Inbound ports never intercepted, besides the admin port.
    pub exclude_inbound_ports: Vec<u16>,
    /// Outbound ports never intercepted.
    pub exclude_outbound_ports: Vec<u16>,
    /// Outbound CIDRs never intercepted.
    pub exclude_outbound_ip_ranges: Vec<String>,
    /// The cluster CA (`sluice ca serve`) the sidecar gets its workload certificate from; with
    /// it the pod mounts a projected token (audience `istio-ca`) and the root ConfigMap.
    pub ca_address: Option<String>,
}

impl Default for InjectOptions {
    fn default() -> Self {
        InjectOptions {
            image: DEFAULT_IMAGE.into(),
            image_pull_policy: "IfNotPresent".into(),
            proxy_uid: 1337,
            outbound_port: 15001,
            inbound_port: 15006,
            admin_port: 15000,
            exclude_inbound_ports: Vec::new(),
            exclude_outbound_ports: Vec::new(),
            exclude_outbound_ip_ranges: Vec::new(),
            ca_address: None,
        }
    }
}

/// `sluice inject`.
#[derive(Debug, Clone, clap::Args)]
pub struct InjectArgs {
    /// Input manifest (`-` reads standard input).
    #[arg(short = 'f', long = "filename", default_value = "-")]
    pub filename: String,
    /// Output file (default: standard output).
    #[arg(short = 'o', long)]
    pub output: Option<PathBuf>,
    /// Sidecar and init container image.
    #[arg(long, env = "SLUICE_PROXY_IMAGE", default_value = DEFAULT_IMAGE)]
    pub image: String,
    /// Image pull policy of the injected containers.
    #[arg(long, default_value = "IfNotPresent")]
    pub image_pull_policy: String,
    /// UID and GID of the proxy (its own traffic is not intercepted).
    #[arg(long, default_value_t = 1337)]
    pub proxy_uid: u32,
    /// Outbound listener port.
    #[arg(long, default_value_t = 15001)]
    pub outbound_port: u16,
    /// Inbound listener port.
    #[arg(long, default_value_t = 15006)]
    pub inbound_port: u16,
    /// Sidecar admin port (readiness probe).
    #[arg(long, default_value_t = 15000)]
    pub admin_port: u16,
    /// Inbound ports not intercepted (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub exclude_inbound_ports: Vec<u16>,
    /// Outbound ports not intercepted (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub exclude_outbound_ports: Vec<u16>,
    /// Outbound CIDRs not intercepted (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub exclude_outbound_ip_ranges: Vec<String>,
    /// The cluster CA's address (`sluice ca serve`, e.g.
    /// `https://sluice-ca.sluice-system.svc:15012`): the sidecars get their workload
    /// certificates from it, authenticated by a projected service account token.
    #[arg(long)]
    pub ca_address: Option<String>,
}

impl From<&InjectArgs> for InjectOptions {
    fn from(a: &InjectArgs) -> Self {
        InjectOptions {
            image: a.image.clone(),
            image_pull_policy: a.image_pull_policy.clone(),
            proxy_uid: a.proxy_uid,
            outbound_port: a.outbound_port,
            inbound_port: a.inbound_port,
            admin_port: a.admin_port,
            exclude_inbound_ports: a.exclude_inbound_ports.clone(),
            exclude_outbound_ports: a.exclude_outbound_ports.clone(),
            exclude_outbound_ip_ranges: a.exclude_outbound_ip_ranges.clone(),
            ca_address: a.ca_address.clone(),
        }
    }
}

/// Runs `sluice inject`: reads the manifest, writes it with sidecars added.
pub async fn run(args: InjectArgs) -> anyhow::Result<()> {
    let input = if args.filename == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("cannot read standard input")?;
        s
    } else {
        std::fs::read_to_string(&args.filename)
            .with_context(|| format!("cannot read {}", args.filename))?
    };
    let out = inject_with(&input, &InjectOptions::from(&args))
        .with_context(|| format!("cannot inject {}", args.filename))?;
    match &args.output {
        Some(path) => {
            std::fs::write(path, out).with_context(|| format!("cannot write {}", path.display()))
        }
        None => std::io::stdout()
            .write_all(out.as_bytes())
            .context("cannot write standard output"),
    }
}

/// Injects with the default options.
pub fn inject(input: &str) -> anyhow::Result<String> {
    inject_with(input, &InjectOptions::default())
}

/// Adds the sidecar to every Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob and Pod
/// of a multi-document YAML stream (and of `kind: List` items); other documents pass through.
pub fn inject_with(input: &str, opts: &InjectOptions) -> anyhow::Result<String> {
    let mut out = String::with_capacity(input.len() * 2);
    for (i, chunk) in split_documents(input).into_iter().enumerate() {
        let docs = node::parse(chunk.text)
            .map_err(|e| anyhow::anyhow!("document {}: YAML syntax error: {e}", i + 1))?;
        let mut docs: Vec<Node> = docs.into_iter().flatten().collect();
        let mut changed = false;
        for doc in &mut docs {
            changed |= inject_document(doc, opts)
                .map_err(|e| anyhow::anyhow!("{}: {e}", describe(doc)))?;
        }
        if !changed {
            out.push_str(chunk.text);
            if !chunk.text.is_empty() && !chunk.text.ends_with('\n') {
                out.push('\n');
            }
            continue;
        }
        for (j, doc) in docs.iter().enumerate() {
            if chunk.marker || j > 0 {
                out.push_str("---\n");
            }
            out.push_str(&emit(doc));
        }
    }
    Ok(out)
}

fn describe(doc: &Node) -> String {
    let s = |n: Option<&Node>| n.and_then(Node::as_str).unwrap_or("?").to_string();
    format!(
        "{} {}",
        s(doc.get("kind")),
        s(doc.get("metadata").and_then(|m| m.get("name")))
    )
}

/// Injects one object; `Ok(true)` when it changed.
fn inject_document(doc: &mut Node, opts: &InjectOptions) -> Result<bool, String> {
    let kind = doc
        .get("kind")
        .and_then(Node::as_str)
        .unwrap_or("")
        .to_string();
    match kind.as_str() {
        "Pod" => pod::inject_template(doc, opts),
        "Deployment"
        | "StatefulSet"
        | "DaemonSet"
        | "ReplicaSet"
        | "ReplicationController"
        | "Job" => match doc.get_mut("spec").and_then(|s| s.get_mut("template")) {
            Some(t) => pod::inject_template(t, opts),
            None => Err("`spec.template` is missing".into()),
        },
        "CronJob" => match doc
            .get_mut("spec")
            .and_then(|s| s.get_mut("jobTemplate"))
            .and_then(|s| s.get_mut("spec"))
            .and_then(|s| s.get_mut("template"))
        {
            Some(t) => pod::inject_template(t, opts),
            None => Err("`spec.jobTemplate.spec.template` is missing".into()),
        },
        k if k.ends_with("List") => {
            let mut changed = false;
            if let Some(Node::Seq(items)) = doc.get_mut("items") {
                for item in items {
                    changed |= inject_document(item, opts)
                        .map_err(|e| format!("{}: {e}", describe(item)))?;
                }
            }
            Ok(changed)
        }
        _ => Ok(false),
    }
}

/// A piece of a YAML stream between `---` lines.
struct Chunk<'a> {
    /// The text, including its leading `---` line if any.
    text: &'a str,
    /// Whether it starts with a `---` line.
    marker: bool,
}

/// Splits a stream at `---` lines (a document marker is always at column 0, so this is exact).
fn split_documents(input: &str) -> Vec<Chunk<'_>> {
    let mut chunks = Vec::new();
    let mut start = 0;
    let mut marker = false;
    let mut pos = 0;
    for line in input.split_inclusive('\n') {
        let bare = line.trim_end_matches(['\n', '\r']);
        let is_marker = bare == "---" || bare.starts_with("--- ") || bare.starts_with("---\t");
        if is_marker && pos > start {
            chunks.push(Chunk {
                text: &input[start..pos],
                marker,
            });
        }
        if is_marker {
            start = pos;
            marker = true;
        }
        pos += line.len();
    }
    if pos > start {
        chunks.push(Chunk {
            text: &input[start..pos],
            marker,
        });
    }
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_at_markers_only() {
        let chunks = split_documents("# c\na: 1\n---\nb: |\n  ---x\n--- # end\nc: 2");
        let texts: Vec<&str> = chunks.iter().map(|c| c.text).collect();
        assert_eq!(
            texts,
            ["# c\na: 1\n", "---\nb: |\n  ---x\n", "--- # end\nc: 2"]
        );
        assert!(!chunks[0].marker && chunks[1].marker);
    }

    #[test]
    fn other_kinds_pass_through_byte_for_byte() {
        let text = "# keep me\napiVersion: v1\nkind: Service   # svc\nmetadata: {name: x}\n---\n";
        assert_eq!(inject(text).unwrap(), text);
    }

    #[test]
    fn opt_out_and_idempotence() {
        let text = "kind: Pod\nmetadata:\n  name: p\n  annotations:\n    sidecar.istio.io/inject: \"false\"\nspec:\n  containers:\n  - name: a\n";
        assert_eq!(inject(text).unwrap(), text);
        let once =
            inject("kind: Pod\nmetadata:\n  name: p\nspec:\n  containers:\n  - name: a\n").unwrap();
        assert_eq!(inject(&once).unwrap(), once);
    }

    #[test]
    fn malformed_workloads_are_errors() {
        let e = inject("kind: Deployment\nmetadata:\n  name: d\nspec: {}\n").unwrap_err();
        assert!(format!("{e:#}").contains("Deployment d"), "{e:#}");
        assert!(inject("kind: Pod\nspec:\n  containers: []\n").is_err());
        assert!(inject("a: [\n").is_err());
    }
}
