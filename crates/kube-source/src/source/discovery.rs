//! Which versions of the Istio groups (`networking.istio.io`, `security.istio.io`) the cluster
//! serves, per kind.

use anyhow::Context as _;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::APIGroup;
use kube::discovery::ApiResource;
use kube::Client;
use sluice_model::resource::{
    ISTIO_GROUP, ISTIO_VERSIONS, ROLLOUTS_GROUP, ROLLOUTS_VERSIONS, SECURITY_GROUP,
    SECURITY_VERSIONS,
};
use sluice_model::Kind;

/// The nine kinds sluice reads, in watch order.
pub const ISTIO_KINDS: [Kind; 9] = [
    Kind::Gateway,
    Kind::VirtualService,
    Kind::DestinationRule,
    Kind::ServiceEntry,
    Kind::WorkloadEntry,
    Kind::Sidecar,
    Kind::PeerAuthentication,
    Kind::RequestAuthentication,
    Kind::AuthorizationPolicy,
];

/// Versions tried after the group's preferred one, newest first.
const FALLBACK_ORDER: [&str; 4] = ["v1", "v1beta1", "v1alpha3", "v1alpha1"];

/// One Istio kind and the API resource it is watched through.
#[derive(Debug, Clone)]
pub struct IstioApi {
    /// The kind.
    pub kind: Kind,
    /// Group, version (the preferred one the cluster serves for this kind) and plural.
    pub resource: ApiResource,
}

/// Discovers, for each kind, the served version to watch: the group's preferred version when it
/// serves the kind, else the first of v1, v1beta1, v1alpha3 that does. Kinds not served are left
/// out with a warning; a cluster without `networking.istio.io` is an error, while one without
/// `security.istio.io` (e.g. only sluice's networking CRDs installed) runs without mesh security,
/// and one without `rollouts.sluice.dev` (deploy/canary-crd.yaml) runs without canaries. The
/// `Canary` kind, when served, comes last.
pub async fn discover_istio(client: &Client) -> anyhow::Result<Vec<IstioApi>> {
    let mut out = match discover_group(client, ISTIO_GROUP, &ISTIO_VERSIONS).await? {
        Some(apis) => apis,
        None => anyhow::bail!(
            "the cluster does not serve {ISTIO_GROUP}: install Istio's CRDs or deploy/crds/istio-networking-crds.yaml"
        ),
    };
    match discover_group(client, SECURITY_GROUP, &SECURITY_VERSIONS).await? {
        Some(apis) => out.extend(apis),
        None => tracing::warn!(
            "the cluster does not serve {SECURITY_GROUP}: install Istio's CRDs or deploy/crds/istio-security-crds.yaml to use AuthorizationPolicy, PeerAuthentication and RequestAuthentication"
        ),
    }
    out.sort_by_key(|a| ISTIO_KINDS.iter().position(|k| *k == a.kind));
    for kind in ISTIO_KINDS {
        if !out.iter().any(|a| a.kind == kind) {
            tracing::warn!(
                "the cluster does not serve {} {kind}; it is not watched",
                kind.group()
            );
        }
    }
    // Canaries are optional: without their CRD everything else keeps working.
    match discover_group(client, ROLLOUTS_GROUP, &ROLLOUTS_VERSIONS).await {
        Ok(Some(apis)) if apis.iter().any(|a| a.kind == Kind::Canary) => out.extend(apis),
        Ok(_) => tracing::info!(
            "the cluster does not serve {ROLLOUTS_GROUP} Canary: canaries are not watched (kubectl apply -f deploy/canary-crd.yaml to use them)"
        ),
        Err(e) => tracing::warn!("{e:#}; canaries are not watched"),
    }
    Ok(out)
}

/// The kinds of one group and the version each is watched in; `None` when the group is not served.
async fn discover_group(
    client: &Client,
    group_name: &str,
    readable: &[&str],
) -> anyhow::Result<Option<Vec<IstioApi>>> {
    let req = http::Request::get(format!("/apis/{group_name}"))
        .body(Vec::new())
        .context("cannot build discovery request")?;
    let group: APIGroup = match client.request(req).await {
        Ok(g) => g,
        Err(kube::Error::Api(s)) if s.code == 404 => return Ok(None),
        Err(e) => return Err(e).context(format!("cannot discover {group_name}")),
    };
    let served: Vec<String> = group.versions.iter().map(|v| v.version.clone()).collect();
    let mut order: Vec<String> = group
        .preferred_version
        .iter()
        .map(|v| v.version.clone())
        .chain(FALLBACK_ORDER.map(String::from))
        .filter(|v| readable.contains(&v.as_str()) && served.contains(v))
        .collect();
    order.dedup();
    let mut out: Vec<IstioApi> = Vec::new();
    for version in order {
        let gv = format!("{group_name}/{version}");
        let list = client
            .list_api_group_resources(&gv)
            .await
            .with_context(|| format!("cannot list the resources of {gv}"))?;
        for r in list.resources.iter().filter(|r| !r.name.contains('/')) {
            let Some(kind) = Kind::from_name(&r.kind).filter(|k| k.group() == group_name) else {
                continue;
            };
            if out.iter().any(|a| a.kind == kind) {
                continue;
            }
            out.push(IstioApi {
                kind,
                resource: ApiResource {
                    group: group_name.into(),
                    version: version.clone(),
                    api_version: gv.clone(),
                    kind: r.kind.clone(),
                    plural: r.name.clone(),
                },
            });
        }
    }
    Ok(Some(out))
}
