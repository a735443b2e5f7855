//! Authenticating a workload's service account token with a Kubernetes TokenReview
//! (`authentication.k8s.io/v1`), as istiod does before signing a certificate.

use anyhow::Context as _;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use kube::api::PostParams;
use kube::{Api, Client};

/// What the API server said about a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenReviewOutcome {
    /// The token is valid for the audience; the user it belongs to
    /// (`system:serviceaccount:<namespace>:<name>` for a pod).
    Authenticated(String),
    /// The token was refused, with the API server's reason when it gave one.
    Refused(String),
}

/// Asks the API server whether `token` is valid for `audience` (e.g. `istio-ca`). An error means
/// the review itself failed (API server unreachable, no permission to create tokenreviews).
pub async fn review_token(
    client: &Client,
    token: &str,
    audience: &str,
) -> anyhow::Result<TokenReviewOutcome> {
    let review = TokenReview {
        spec: TokenReviewSpec {
            token: Some(token.to_string()),
            audiences: Some(vec![audience.to_string()]),
        },
        ..Default::default()
    };
    let api: Api<TokenReview> = Api::all(client.clone());
    let reply = api
        .create(&PostParams::default(), &review)
        .await
        .context("TokenReview failed (may this service account create tokenreviews?)")?;
    let status = reply.status.unwrap_or_default();
    if status.authenticated != Some(true) {
        return Ok(TokenReviewOutcome::Refused(
            status.error.unwrap_or_else(|| "not authenticated".into()),
        ));
    }
    // The API server lists the audiences the token was accepted for; one that does not list
    // ours ignored the request's audience, and the token may be meant for someone else.
    let audiences = status.audiences.unwrap_or_default();
    if !audiences.iter().any(|a| a == audience) {
        return Ok(TokenReviewOutcome::Refused(format!(
            "the token is not valid for the audience {audience}"
        )));
    }
    match status.user.and_then(|u| u.username) {
        Some(name) => Ok(TokenReviewOutcome::Authenticated(name)),
        None => Ok(TokenReviewOutcome::Refused(
            "no user name in the review".into(),
        )),
    }
}
