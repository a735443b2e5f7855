//! gRPC through the proxy with a real tonic server and client: HTTP/2 both ways, grpc-status and
//! trailers preserved, gRPC fault aborts, retries on gRPC status codes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;

use sluice_test_support::*;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

const HOST: &str = "greeter.default.svc.cluster.local";

async fn grpc_server() -> SocketAddr {
    let (reporter, service) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("greeter", tonic_health::ServingStatus::Serving)
        .await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        // Keep the reporter alive so the status stays registered.
        let _reporter = reporter;
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
            .unwrap();
    });
    addr
}

async fn client(port: u16) -> HealthClient<tonic::transport::Channel> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .origin("http://greeter".parse().unwrap())
        .connect()
        .await
        .unwrap();
    HealthClient::new(channel)
}

async fn setup(vs: &str) -> (ConfigDir, ProxyHandle, u16) {
    proxy_to(grpc_server().await, vs).await
}

/// The proxy in front of a gRPC server (a GRPC service port), with an optional VirtualService.
async fn proxy_to(server: SocketAddr, vs: &str) -> (ConfigDir, ProxyHandle, u16) {
    let port = free_port();
    let dir = ConfigDir::new();
    dir.write(
        "svc.yaml",
        &service_yaml(HOST, port, &[("v1", server)])
            .replace("name: http, protocol: HTTP", "name: grpc, protocol: GRPC")
            .replace("{http:", "{grpc:"),
    );
    if !vs.is_empty() {
        dir.write("vs.yaml", vs);
    }
    let p = proxy(dir.path(), |_| {}).await;
    (dir, p, port)
}

#[tokio::test]
async fn unary_call_and_error_status_pass_through() {
    let (_d, p, port) = setup("").await;
    let mut c = client(port).await;
    let ok = c
        .check(HealthCheckRequest {
            service: "greeter".into(),
        })
        .await
        .unwrap();
    assert_eq!(ok.into_inner().status(), ServingStatus::Serving);
    let err = c
        .check(HealthCheckRequest {
            service: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    p.shutdown().await;
}

#[tokio::test]
async fn grpc_fault_abort_is_a_grpc_status() {
    let vs = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: greeter}\nspec:\n  hosts: [greeter]\n  http:\n  - fault: {abort: {grpcStatus: UNAVAILABLE, percentage: {value: 100}}}\n    route: [{destination: {host: greeter}}]\n";
    let (_d, p, port) = setup(vs).await;
    let mut c = client(port).await;
    let err = c
        .check(HealthCheckRequest {
            service: "greeter".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable);
    p.shutdown().await;
}

/// A health service that answers `code` to its first `fail_first` calls, then SERVING.
struct Flaky {
    calls: std::sync::Arc<std::sync::atomic::AtomicU32>,
    fail_first: u32,
    code: tonic::Code,
}

type WatchStream = std::pin::Pin<
    Box<
        dyn tokio_stream::Stream<
                Item = Result<tonic_health::pb::HealthCheckResponse, tonic::Status>,
            > + Send,
    >,
>;

#[tonic::async_trait]
impl tonic_health::pb::health_server::Health for Flaky {
    async fn check(
        &self,
        _: tonic::Request<HealthCheckRequest>,
    ) -> Result<tonic::Response<tonic_health::pb::HealthCheckResponse>, tonic::Status> {
        let n = self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if n < self.fail_first {
            return Err(tonic::Status::new(self.code, "not yet"));
        }
        Ok(tonic::Response::new(
            tonic_health::pb::HealthCheckResponse {
                status: ServingStatus::Serving as i32,
            },
        ))
    }

    type WatchStream = WatchStream;

    async fn watch(
        &self,
        _: tonic::Request<HealthCheckRequest>,
    ) -> Result<tonic::Response<WatchStream>, tonic::Status> {
        Err(tonic::Status::unimplemented("watch"))
    }
}

async fn flaky_setup(
    fail_first: u32,
    code: tonic::Code,
    retry_on: &str,
) -> (
    ConfigDir,
    ProxyHandle,
    u16,
    std::sync::Arc<std::sync::atomic::AtomicU32>,
) {
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let svc = tonic_health::pb::health_server::HealthServer::new(Flaky {
        calls: calls.clone(),
        fail_first,
        code,
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = listener.local_addr().unwrap();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
            .unwrap();
    });
    let vs = virtual_service_yaml(
        "greeter",
        &format!("  - retries: {{attempts: 3, retryOn: \"{retry_on}\"}}\n    route: [{{destination: {{host: greeter}}}}]\n"),
    );
    let (dir, p, port) = proxy_to(server, &vs).await;
    (dir, p, port, calls)
}

#[tokio::test]
async fn grpc_status_retries_follow_retry_on() {
    let check = || HealthCheckRequest {
        service: "greeter".into(),
    };
    // `unavailable` in retryOn: two UNAVAILABLE answers are retried, the third try succeeds.
    let (_d, p, port, calls) = flaky_setup(2, tonic::Code::Unavailable, "unavailable").await;
    let ok = client(port).await.check(check()).await.unwrap();
    assert_eq!(ok.into_inner().status(), ServingStatus::Serving);
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 3);
    p.shutdown().await;

    // Only `cancelled` in retryOn: UNAVAILABLE goes straight back to the client.
    let (_d, p, port, calls) = flaky_setup(2, tonic::Code::Unavailable, "cancelled").await;
    let err = client(port).await.check(check()).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable);
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
    p.shutdown().await;

    // More failures than attempts: the last gRPC status is the answer.
    let (_d, p, port, calls) =
        flaky_setup(10, tonic::Code::ResourceExhausted, "resource-exhausted").await;
    let err = client(port).await.check(check()).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted);
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 4);
    p.shutdown().await;
}
