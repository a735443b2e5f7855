//! The `admission.k8s.io/v1` AdmissionReview envelope: reading a request and writing the answer.

use base64::Engine as _;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
use kube::core::DynamicObject;
use serde_json::Value;

use crate::error::WebhookError;

/// A review's request, with the object exactly as the API server sent it (the typed request
/// re-serialises objects, which a patch must not be computed against).
#[derive(Debug, Clone)]
pub struct Request {
    /// The typed request (uid, kind, namespace, operation).
    pub typed: AdmissionRequest<DynamicObject>,
    /// `request.object` as sent.
    pub object: Option<Value>,
}

impl Request {
    /// The API group of the object's kind (empty for the core group).
    pub fn group(&self) -> &str {
        &self.typed.kind.group
    }

    /// `group/version` (or `version` for the core group) of the object's kind.
    pub fn api_version(&self) -> String {
        let k = &self.typed.kind;
        if k.group.is_empty() {
            k.version.clone()
        } else {
            format!("{}/{}", k.group, k.version)
        }
    }

    /// An answer allowing the request, to be refined by the handler.
    pub fn allow(&self) -> AdmissionResponse {
        AdmissionResponse::from(&self.typed)
    }
}

/// Parses a review posted by the API server.
pub fn parse(body: &[u8]) -> Result<Request, WebhookError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| WebhookError::BadReview(e.to_string()))?;
    let object = value
        .get("request")
        .and_then(|r| r.get("object"))
        .filter(|o| !o.is_null())
        .cloned();
    let review: AdmissionReview<DynamicObject> =
        serde_json::from_value(value).map_err(|e| WebhookError::BadReview(e.to_string()))?;
    let typed: AdmissionRequest<DynamicObject> = review
        .try_into()
        .map_err(|_| WebhookError::BadReview("the review has no request".into()))?;
    Ok(Request { typed, object })
}

/// The review to send back, with the patch as a base64 string (kube's type writes bytes as a
/// number array; the API server's `[]byte` is documented as base64).
pub fn encode(response: AdmissionResponse) -> Vec<u8> {
    let patch = response.patch.clone();
    // Serialising plain data (strings, maps, byte arrays) cannot fail; an empty body would be
    // reported by the API server as a failed call, which failurePolicy then handles.
    let mut review = serde_json::to_value(response.into_review()).unwrap_or_default();
    if let (Some(patch), Some(slot)) = (patch, review.pointer_mut("/response/patch")) {
        *slot = Value::String(base64::engine::general_purpose::STANDARD.encode(patch));
    }
    serde_json::to_vec(&review).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keeps_the_raw_object_and_answers_with_the_uid() {
        let body = json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {
                "uid": "u-1", "operation": "CREATE", "namespace": "apps", "name": "",
                "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "userInfo": {"username": "alice"},
                "object": {"metadata": {"generateName": "web-"}, "spec": {"containers": []}}
            }
        });
        let req = parse(body.to_string().as_bytes()).unwrap();
        assert_eq!(req.api_version(), "v1");
        assert_eq!(
            req.object.as_ref().unwrap()["metadata"]["generateName"],
            "web-"
        );
        let out: Value = serde_json::from_slice(&encode(req.allow())).unwrap();
        assert_eq!(out["kind"], "AdmissionReview");
        assert_eq!(out["apiVersion"], "admission.k8s.io/v1");
        assert_eq!(out["response"]["uid"], "u-1");
        assert_eq!(out["response"]["allowed"], true);
        assert!(parse(b"{}").is_err());
        assert!(parse(b"not json").is_err());
    }
}
