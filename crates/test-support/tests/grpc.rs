//! gRPC through the proxy with a real tonic server and client: HTTP/2 both ways, grpc-status and
//! trailers preserved, gRPC fault aborts.
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
    let server = grpc_server().await;
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
