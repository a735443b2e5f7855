//! The `when` keys of an AuthorizationPolicy rule, read once into a typed key.

/// A `when` key Istio accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConditionKey {
    /// `request.headers[<name>]`.
    RequestHeader(String),
    /// `source.ip`.
    SourceIp,
    /// `remote.ip`.
    RemoteIp,
    /// `source.namespace`.
    SourceNamespace,
    /// `source.principal`.
    SourcePrincipal,
    /// `source.serviceAccount`.
    SourceServiceAccount,
    /// `source.trustDomain`.
    SourceTrustDomain,
    /// `request.auth.principal`.
    RequestAuthPrincipal,
    /// `request.auth.audiences`.
    RequestAuthAudiences,
    /// `request.auth.presenter`.
    RequestAuthPresenter,
    /// `request.auth.claims[<a>][<b>]...`.
    RequestAuthClaims(Vec<String>),
    /// `destination.ip`.
    DestinationIp,
    /// `destination.port`.
    DestinationPort,
    /// `connection.sni`.
    ConnectionSni,
    /// `experimental.envoy.filters.*`: filter metadata sluice does not produce.
    ExperimentalMetadata,
}

impl ConditionKey {
    /// Reads a key; the error says why Istio's webhook would refuse it.
    pub fn parse(key: &str) -> Result<ConditionKey, String> {
        if let Some(rest) = key.strip_prefix("request.headers") {
            let names = brackets(rest)?;
            return match &names[..] {
                [name] if !name.is_empty() => Ok(ConditionKey::RequestHeader(name.clone())),
                _ => Err(format!(
                    "`{key}` must name one header: `request.headers[<name>]`"
                )),
            };
        }
        if let Some(rest) = key.strip_prefix("request.auth.claims") {
            let path = brackets(rest)?;
            if path.is_empty() || path.iter().any(String::is_empty) {
                return Err(format!(
                    "`{key}` must name a claim: `request.auth.claims[<claim>]`"
                ));
            }
            return Ok(ConditionKey::RequestAuthClaims(path));
        }
        if key.starts_with("experimental.envoy.filters.") {
            return Ok(ConditionKey::ExperimentalMetadata);
        }
        Ok(match key {
            "source.ip" => ConditionKey::SourceIp,
            "remote.ip" => ConditionKey::RemoteIp,
            "source.namespace" => ConditionKey::SourceNamespace,
            "source.principal" => ConditionKey::SourcePrincipal,
            "source.serviceAccount" => ConditionKey::SourceServiceAccount,
            "source.trustDomain" => ConditionKey::SourceTrustDomain,
            "request.auth.principal" => ConditionKey::RequestAuthPrincipal,
            "request.auth.audiences" => ConditionKey::RequestAuthAudiences,
            "request.auth.presenter" => ConditionKey::RequestAuthPresenter,
            "destination.ip" => ConditionKey::DestinationIp,
            "destination.port" => ConditionKey::DestinationPort,
            "connection.sni" => ConditionKey::ConnectionSni,
            "destination.namespace" | "destination.name" | "destination.user" => {
                return Err(format!("`{key}` is not supported by Istio"))
            }
            k if k.starts_with("destination.labels") => {
                return Err(format!("`{key}` is not supported by Istio"))
            }
            _ => return Err(format!("unknown condition key `{key}`")),
        })
    }

    /// Whether the key only exists on HTTP requests.
    pub fn http_only(&self) -> bool {
        matches!(
            self,
            ConditionKey::RequestHeader(_)
                | ConditionKey::RequestAuthPrincipal
                | ConditionKey::RequestAuthAudiences
                | ConditionKey::RequestAuthPresenter
                | ConditionKey::RequestAuthClaims(_)
        )
    }

    /// Whether the key compares IP addresses or CIDR blocks.
    pub fn is_ip(&self) -> bool {
        matches!(
            self,
            ConditionKey::SourceIp | ConditionKey::RemoteIp | ConditionKey::DestinationIp
        )
    }
}

/// `[a][b]` → `["a", "b"]`; anything else around the brackets is an error.
fn brackets(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut rest = s;
    while !rest.is_empty() {
        let inner = rest
            .strip_prefix('[')
            .and_then(|r| r.split_once(']'))
            .ok_or_else(|| format!("`{s}` must be of the form `[a][b]`"))?;
        out.push(inner.0.to_string());
        rest = inner.1;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        assert_eq!(
            ConditionKey::parse("request.headers[x-token]"),
            Ok(ConditionKey::RequestHeader("x-token".into()))
        );
        assert_eq!(
            ConditionKey::parse("request.auth.claims[a][b]"),
            Ok(ConditionKey::RequestAuthClaims(vec![
                "a".into(),
                "b".into()
            ]))
        );
        assert!(ConditionKey::parse("request.auth.claims").is_err());
        assert!(ConditionKey::parse("request.headers[a]x").is_err());
        assert!(ConditionKey::parse("destination.namespace").is_err());
        assert!(ConditionKey::parse("destination.labels[app]").is_err());
        assert!(ConditionKey::parse("source.bogus").is_err());
        assert_eq!(
            ConditionKey::parse("source.serviceAccount"),
            Ok(ConditionKey::SourceServiceAccount)
        );
    }
}
