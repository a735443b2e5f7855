//! What a verified token changes in the request sent upstream.

use http::request::Parts;
use http::uri::PathAndQuery;
use http::{HeaderName, HeaderValue, Uri};

use crate::claims;
use crate::extract::{percent_decode, Place};
use crate::rule::JwtRule;
use crate::token::ParsedJwt;

/// Applies `rule`'s outputs for the token `jwt` found at `place`.
pub(crate) fn apply(parts: &mut Parts, rule: &JwtRule, jwt: &ParsedJwt<'_>, place: &Place) {
    if let Some(name) = rule.output_payload_to_header.as_deref() {
        if let (Some(name), Ok(value)) = (header_name(name), HeaderValue::from_str(jwt.payload_b64))
        {
            parts.headers.insert(name, value);
        }
    }
    for output in &rule.output_claim_to_headers {
        let Some(name) = header_name(&output.header) else {
            continue;
        };
        // Whatever the client sent under this name must not pass as a claim.
        parts.headers.remove(&name);
        let value = claims::lookup(&jwt.payload, &output.claim)
            .and_then(claims::header_text)
            .and_then(|text| HeaderValue::from_str(&text).ok());
        if let Some(value) = value {
            parts.headers.insert(name, value);
        }
    }
    if !rule.forward_original_token {
        remove_token(parts, place);
    }
}

fn header_name(name: &str) -> Option<HeaderName> {
    HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()).ok()
}

/// Removes the header or query parameter that carried the token. Cookies are left alone,
/// as Envoy leaves them.
fn remove_token(parts: &mut Parts, place: &Place) {
    match place {
        Place::Header(name) => {
            parts.headers.remove(name);
        }
        Place::Param(name) => {
            if let Some(uri) = without_param(&parts.uri, name) {
                parts.uri = uri;
            }
        }
        Place::Cookie(_) => {}
    }
}

/// `uri` with every `name=` pair dropped from its query; `None` if nothing changes.
fn without_param(uri: &Uri, name: &str) -> Option<Uri> {
    let query = uri.query()?;
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| {
            let key = pair.split_once('=').map_or(*pair, |(k, _)| k);
            percent_decode(key) != name
        })
        .collect();
    if kept.len() == query.split('&').count() {
        return None;
    }
    let path_and_query = if kept.is_empty() {
        uri.path().to_owned()
    } else {
        format!("{}?{}", uri.path(), kept.join("&"))
    };
    let mut builder = http::uri::Parts::default();
    builder.scheme = uri.scheme().cloned();
    builder.authority = uri.authority().cloned();
    builder.path_and_query = Some(PathAndQuery::try_from(path_and_query).ok()?);
    Uri::from_parts(builder).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn param_is_dropped_and_the_rest_kept() {
        let uri: Uri = "/a?x=1&access_token=t&y=2".parse().unwrap();
        assert_eq!(
            without_param(&uri, "access_token").unwrap(),
            "/a?x=1&y=2".parse::<Uri>().unwrap()
        );
        let uri: Uri = "http://h/a?access_token=t".parse().unwrap();
        assert_eq!(
            without_param(&uri, "access_token").unwrap(),
            "http://h/a".parse::<Uri>().unwrap()
        );
        let uri: Uri = "/a?x=1".parse().unwrap();
        assert!(without_param(&uri, "access_token").is_none());
    }
}
