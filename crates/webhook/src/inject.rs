//! `/inject`: the mutating webhook. A selected Pod gets, as a JSONPatch, exactly the sidecar
//! that `sluice inject` adds to a manifest (both call `sluice_kube::inject_pod`'s edit).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Namespace;
use kube::core::admission::{AdmissionResponse, Operation};
use kube::{Api, Client};
use sluice_kube::inject::InjectOptions;

use crate::error::WebhookError;
use crate::review::Request;
use crate::selection::{decide, Decision, ISTIO_INJECTION};

/// Reads a namespace's labels from the API server (the review carries only the pod).
#[derive(Clone)]
pub struct NamespaceLabels {
    api: Api<Namespace>,
}

impl std::fmt::Debug for NamespaceLabels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NamespaceLabels").finish_non_exhaustive()
    }
}

impl NamespaceLabels {
    /// Looks namespaces up through `client`.
    pub fn new(client: Client) -> Self {
        NamespaceLabels {
            api: Api::all(client),
        }
    }

    /// The labels of `namespace` (none when it does not exist).
    pub async fn get(&self, namespace: &str) -> Result<BTreeMap<String, String>, WebhookError> {
        let ns = self
            .api
            .get_opt(namespace)
            .await
            .map_err(|source| WebhookError::Namespace {
                namespace: namespace.to_string(),
                source,
            })?;
        Ok(ns.and_then(|n| n.metadata.labels).unwrap_or_default())
    }
}

/// Answers injection reviews.
#[derive(Debug, Clone)]
pub struct Injector {
    namespaces: NamespaceLabels,
    own_namespace: Option<String>,
    options: InjectOptions,
}

impl Injector {
    /// An injector that looks namespaces up with `namespaces`, never injects into
    /// `own_namespace`, and adds containers described by `options`.
    pub fn new(
        namespaces: NamespaceLabels,
        own_namespace: Option<String>,
        options: InjectOptions,
    ) -> Self {
        Injector {
            namespaces,
            own_namespace,
            options,
        }
    }

    /// The answer to one review: allowed, with a patch when the pod gets a sidecar. An error
    /// means the namespace could not be read: the server answers 500, and the webhook
    /// configuration's `failurePolicy: Ignore` lets the pod through uninjected.
    pub async fn review(&self, req: &Request) -> Result<AdmissionResponse, WebhookError> {
        let t = &req.typed;
        let is_pod = t.kind.group.is_empty() && t.kind.kind == "Pod";
        let Some(pod) = req.object.as_ref().filter(|_| is_pod) else {
            return Ok(req.allow());
        };
        if t.operation != Operation::Create {
            return Ok(req.allow());
        }
        let namespace = t
            .namespace
            .as_deref()
            .or_else(|| pod["metadata"]["namespace"].as_str())
            .unwrap_or("default");
        let own = self.own_namespace.as_deref();
        // Whatever the namespace says cannot overturn a pod-level refusal: settle those
        // without asking the API server.
        let enabled = BTreeMap::from([(ISTIO_INJECTION.to_string(), "enabled".to_string())]);
        if let Decision::Skip(why) = decide(pod, namespace, &enabled, own) {
            tracing::debug!(namespace, reason = %why, "not injected");
            return Ok(req.allow());
        }
        let labels = self.namespaces.get(namespace).await?;
        if let Decision::Skip(why) = decide(pod, namespace, &labels, own) {
            tracing::debug!(namespace, reason = %why, "not injected");
            return Ok(req.allow());
        }
        match sluice_kube::inject::inject_pod(pod, &self.options) {
            Ok(Some(injected)) => {
                let patch = json_patch::diff(pod, &injected);
                tracing::info!(namespace, ops = patch.0.len(), "sidecar injected");
                match req.allow().with_patch(patch) {
                    Ok(r) => Ok(r),
                    Err(e) => Ok(req.allow().deny(format!("cannot encode the patch: {e}"))),
                }
            }
            Ok(None) => Ok(req.allow()),
            // As Istio's injector does: a pod that cannot be injected is refused with the reason.
            Err(e) => Ok(req.allow().deny(format!("cannot inject the sidecar: {e}"))),
        }
    }
}
