//! Which `networking.istio.io` versions the cluster serves, per kind.

use anyhow::Context as _;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::APIGroup;
use kube::discovery::ApiResource;
use kube::Client;
use sluice_model::resource::{ISTIO_GROUP, ISTIO_VERSIONS};
use sluice_model::Kind;

/// The five kinds sluice reads, in watch order.
pub const ISTIO_KINDS: [Kind; 5] = [
    Kind::Gateway,
    Kind::VirtualService,
    Kind::DestinationRule,
    Kind::ServiceEntry,
    Kind::WorkloadEntry,
];

/// One Istio kind and the API resource it is watched through.
#[derive(Debug, Clone)]
pub struct IstioApi {
    /// The kind.
    pub kind: Kind,
    /// Group, version (the preferred one the cluster serves for this kind) and plural.
    pub resource: ApiResource,
}

/// Discovers, for each kind, the served version to watch: the group's preferred version when it
/// serves the kind, else the first of v1, v1beta1, v1alpha3 that does. Kinds not served are left out.
pub async fn discover_istio(client: &Client) -> anyhow::Result<Vec<IstioApi>> {
    let req = http::Request::get(format!("/apis/{ISTIO_GROUP}"))
        .body(Vec::new())
        .context("cannot build discovery request")?;
    let group: APIGroup = match client.request(req).await {
        Ok(g) => g,
        Err(kube::Error::Api(s)) if s.code == 404 => anyhow::bail!(
            "the cluster does not serve {ISTIO_GROUP}: install Istio's CRDs or deploy/crds/istio-networking-crds.yaml"
        ),
        Err(e) => return Err(e).context(format!("cannot discover {ISTIO_GROUP}")),
    };
    let served: Vec<String> = group.versions.iter().map(|v| v.version.clone()).collect();
    let mut order: Vec<String> = group
        .preferred_version
        .iter()
        .map(|v| v.version.clone())
        .chain(["v1", "v1beta1", "v1alpha3"].map(String::from))
        .filter(|v| ISTIO_VERSIONS.contains(&v.as_str()) && served.contains(v))
        .collect();
    order.dedup();
    let mut out: Vec<IstioApi> = Vec::new();
    for version in order {
        let gv = format!("{ISTIO_GROUP}/{version}");
        let list = client
            .list_api_group_resources(&gv)
            .await
            .with_context(|| format!("cannot list the resources of {gv}"))?;
        for r in list.resources.iter().filter(|r| !r.name.contains('/')) {
            let Some(kind) = Kind::from_name(&r.kind) else {
                continue;
            };
            if out.iter().any(|a| a.kind == kind) {
                continue;
            }
            out.push(IstioApi {
                kind,
                resource: ApiResource {
                    group: ISTIO_GROUP.into(),
                    version: version.clone(),
                    api_version: gv.clone(),
                    kind: r.kind.clone(),
                    plural: r.name.clone(),
                },
            });
        }
    }
    out.sort_by_key(|a| ISTIO_KINDS.iter().position(|k| *k == a.kind));
    for kind in ISTIO_KINDS {
        if !out.iter().any(|a| a.kind == kind) {
            tracing::warn!("the cluster does not serve {ISTIO_GROUP} {kind}; it is not watched");
        }
    }
    Ok(out)
}
