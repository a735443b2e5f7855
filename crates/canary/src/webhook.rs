//! Webhook gates: an HTTP POST with Flagger's payload; a 2xx answer passes. `https://` URLs are
//! called over TLS (rustls with ring), trusting the system's roots plus the PEM bundle named by
//! `SLUICE_WEBHOOK_CA` (a private CA, e.g. the cluster's).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use sluice_config::canary::Webhook;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// The environment variable naming a PEM file of extra CA certificates trusted for `https`
/// webhooks (read at each call, so it may change without a restart).
pub const WEBHOOK_CA_ENV: &str = "SLUICE_WEBHOOK_CA";

/// What the hook is told.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Payload<'a> {
    /// Canary name.
    pub name: &'a str,
    /// Canary namespace.
    pub namespace: &'a str,
    /// Phase.
    pub phase: &'a str,
    /// Hook type.
    #[serde(rename = "type")]
    pub hook_type: &'a str,
    /// The hook's metadata.
    pub metadata: &'a std::collections::BTreeMap<String, String>,
}

/// Calls one hook: `Ok` on a 2xx answer, else why not.
pub async fn call(hook: &Webhook, payload: &Payload<'_>) -> Result<(), String> {
    let body = serde_json::to_vec(payload).map_err(|e| e.to_string())?;
    let limit = hook.timeout.max(Duration::from_millis(1));
    match tokio::time::timeout(limit, post(&hook.url, Bytes::from(body))).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("{} ({}): {e}", hook.name, hook.url)),
        Err(_) => Err(format!(
            "{} ({}): no answer within {:?}",
            hook.name, hook.url, hook.timeout
        )),
    }
}

/// POSTs `body` to `url` on a fresh connection (hooks are called once per interval at most).
async fn post(url: &str, body: Bytes) -> Result<(), String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("invalid URL: {e}"))?;
    let tls = match uri.scheme_str() {
        Some(s) if s.eq_ignore_ascii_case("https") => true,
        Some(s) if s.eq_ignore_ascii_case("http") => false,
        _ => return Err("the URL must start with http:// or https://".into()),
    };
    let authority = uri.authority().ok_or("the URL has no host")?.clone();
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let port = authority.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let req = http::Request::post(path)
        .header(http::header::HOST, authority.as_str())
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(body))
        .map_err(|e| e.to_string())?;
    let tcp = TcpStream::connect((host, port))
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    if !tls {
        return exchange(tcp, req).await;
    }
    let name = ServerName::try_from(host.to_string()).map_err(|e| format!("invalid host: {e}"))?;
    let stream = tokio_rustls::TlsConnector::from(tls_config()?)
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS handshake failed: {e}"))?;
    exchange(stream, req).await
}

/// One HTTP/1.1 exchange; a non-2xx answer is an error with the start of its body.
async fn exchange<S>(stream: S, req: http::Request<Full<Bytes>>) -> Result<(), String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    let driver = tokio::spawn(connection);
    let result = async {
        let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        if status.is_success() {
            Ok(())
        } else {
            let text = String::from_utf8_lossy(&body);
            Err(format!(
                "{status} {}",
                text.trim().chars().take(200).collect::<String>()
            ))
        }
    }
    .await;
    driver.abort();
    result
}

/// The system's root certificates, loaded once.
fn system_roots() -> &'static Vec<CertificateDer<'static>> {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| rustls_native_certs::load_native_certs().certs)
}

/// The client config: the system's roots and those of `$SLUICE_WEBHOOK_CA`.
fn tls_config() -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(system_roots().iter().cloned());
    if let Some(path) = std::env::var_os(WEBHOOK_CA_ENV).filter(|p| !p.is_empty()) {
        let shown = std::path::Path::new(&path).display().to_string();
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&path)
            .map_err(|e| format!("cannot read {WEBHOOK_CA_ENV}={shown}: {e}"))?
            .collect::<Result<_, _>>()
            .map_err(|e| format!("{WEBHOOK_CA_ENV}={shown}: {e}"))?;
        let (added, _) = roots.add_parsable_certificates(certs);
        if added == 0 {
            return Err(format!(
                "{WEBHOOK_CA_ENV}={shown} holds no usable CA certificate"
            ));
        }
    }
    if roots.is_empty() {
        return Err(format!(
            "no trusted root certificates (set {WEBHOOK_CA_ENV} to a PEM file)"
        ));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}
