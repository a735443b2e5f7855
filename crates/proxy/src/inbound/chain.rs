//! Which inbound filter chain a connection takes, from its first bytes and the port's
//! PeerAuthentication mode (Istio's inbound chains by mode, transport and ALPN).

pub use sluice_config::authz::MtlsMode;

/// What the inbound port speaks once TLS (if any) is off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortKind {
    /// HTTP/1.1, HTTP/2 or gRPC.
    Http,
    /// Anything else, relayed as bytes.
    Tcp,
}

/// How the connection opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opening {
    /// A TLS ClientHello; `istio_alpn` when it offered one of Istio's ALPN names.
    Tls {
        /// `istio`, `istio-peer-exchange`, `istio-http/1.0`, `istio-http/1.1` or `istio-h2`.
        istio_alpn: bool,
    },
    /// Anything else (plaintext HTTP or TCP).
    Plain,
}

/// The chain chosen for a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chain {
    /// Terminate mesh mTLS with the workload certificate (peer certificate required).
    MeshTls,
    /// Terminate the Sidecar ingress listener's own `tls` (SIMPLE or MUTUAL) for a non-mesh client.
    SidecarTls,
    /// Serve the plaintext connection.
    Plain,
    /// Relay TLS the proxy does not terminate, untouched (a non-mesh TLS client on a TCP port).
    Passthrough,
    /// No chain accepts it: close the connection.
    Refuse,
}

/// Whether an ALPN protocol name is one of Istio's mesh names.
pub fn is_istio_alpn(name: &[u8]) -> bool {
    matches!(
        name,
        b"istio" | b"istio-peer-exchange" | b"istio-http/1.0" | b"istio-http/1.1" | b"istio-h2"
    )
}

/// Picks the chain: mesh mTLS for Istio ALPN (any TLS under STRICT), plaintext unless STRICT,
/// the port's own TLS for other TLS clients when configured, else passthrough on TCP ports
/// (PERMISSIVE and DISABLE) and a refusal on HTTP ports.
pub fn select(mode: MtlsMode, port: PortKind, opening: Opening, sidecar_tls: bool) -> Chain {
    match (opening, mode) {
        (Opening::Plain, MtlsMode::Strict) => Chain::Refuse,
        (Opening::Plain, _) => Chain::Plain,
        (Opening::Tls { .. }, MtlsMode::Strict) => Chain::MeshTls,
        (Opening::Tls { istio_alpn: true }, MtlsMode::Permissive) => Chain::MeshTls,
        (Opening::Tls { .. }, _) if sidecar_tls => Chain::SidecarTls,
        (Opening::Tls { .. }, _) => match port {
            PortKind::Tcp => Chain::Passthrough,
            PortKind::Http => Chain::Refuse,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MESH: Opening = Opening::Tls { istio_alpn: true };
    const OTHER_TLS: Opening = Opening::Tls { istio_alpn: false };

    #[test]
    fn istio_inbound_chain_table() {
        use Chain::*;
        use MtlsMode::*;
        use PortKind::*;
        let table = [
            // (mode, port, opening, sidecar tls) → chain
            (Strict, Http, MESH, false, MeshTls),
            (Strict, Http, OTHER_TLS, false, MeshTls),
            (Strict, Http, Opening::Plain, false, Refuse),
            (Strict, Tcp, Opening::Plain, false, Refuse),
            (Permissive, Http, MESH, false, MeshTls),
            (Permissive, Http, Opening::Plain, false, Plain),
            (Permissive, Http, OTHER_TLS, false, Refuse),
            (Permissive, Tcp, OTHER_TLS, false, Passthrough),
            (Permissive, Tcp, MESH, false, MeshTls),
            (Permissive, Tcp, Opening::Plain, false, Plain),
            (Permissive, Http, OTHER_TLS, true, SidecarTls),
            (Disable, Http, MESH, false, Refuse),
            (Disable, Http, Opening::Plain, false, Plain),
            (Disable, Tcp, MESH, false, Passthrough),
            (Disable, Http, OTHER_TLS, true, SidecarTls),
        ];
        for (mode, port, opening, tls, want) in table {
            assert_eq!(
                select(mode, port, opening, tls),
                want,
                "{mode:?} {port:?} {opening:?} sidecar tls {tls}"
            );
        }
    }

    #[test]
    fn istio_alpn_names() {
        for n in [
            &b"istio"[..],
            b"istio-peer-exchange",
            b"istio-h2",
            b"istio-http/1.1",
        ] {
            assert!(is_istio_alpn(n));
        }
        for n in [&b"h2"[..], b"http/1.1", b"istio-foo"] {
            assert!(!is_istio_alpn(n));
        }
    }
}
