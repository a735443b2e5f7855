//! End-to-end tests of the traffic generator against real test backends.

// Helpers outside #[test] fns are not covered by clippy.toml's test allowances.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::time::{Duration, Instant};

use sluice_tools::{run_traffic, Backend, BackendArgs, BackendHandle, KeyBy, TrafficArgs};

async fn backend(args: BackendArgs) -> BackendHandle {
    Backend::start(args).await.expect("backend starts")
}

fn traffic(backend: &BackendHandle, requests: u64) -> TrafficArgs {
    TrafficArgs {
        requests,
        ..TrafficArgs::new(format!("{}/", backend.url()))
    }
}

#[tokio::test]
async fn sends_exactly_n_and_groups_by_body() {
    let b = backend(BackendArgs::ephemeral("app-backend", "v1")).await;
    let report = run_traffic(&traffic(&b, 25)).await.unwrap();
    assert_eq!(report.total, 25);
    assert_eq!(report.responses, 25);
    assert_eq!(report.count("app-backend v1"), 25);
    assert_eq!(report.distribution.len(), 1);
    assert_eq!(report.distribution[0].percent, 100.0);
    assert_eq!(report.status_count(200), 25);
    assert_eq!(report.error_count(), 0);
    assert_eq!(b.requests(), 25);
    // One worker means one keep-alive connection.
    let peers: HashSet<_> = b.received().iter().map(|r| r.peer).collect();
    assert_eq!(peers.len(), 1);
    let text = report.render();
    assert!(
        text.starts_with("   25 100.0%  app-backend v1\nstatus: 200=25\nlatency ms: p50="),
        "{text}"
    );
    assert!(text.contains("25 requests in "), "{text}");
}

#[tokio::test]
async fn concurrency_uses_parallel_connections() {
    let args = BackendArgs {
        delay: Some(Duration::from_millis(50)),
        ..BackendArgs::ephemeral("app-backend", "v1")
    };
    let b = backend(args).await;
    let started = Instant::now();
    let report = run_traffic(&TrafficArgs {
        concurrency: 4,
        ..traffic(&b, 12)
    })
    .await
    .unwrap();
    let elapsed = started.elapsed();
    assert_eq!(report.total, 12);
    assert_eq!(report.count("app-backend v1"), 12);
    // Serially this would take 600ms; four connections take about 150ms.
    assert!(elapsed < Duration::from_millis(450), "took {elapsed:?}");
    let peers: HashSet<_> = b.received().iter().map(|r| r.peer).collect();
    assert_eq!(peers.len(), 4);
}

#[tokio::test]
async fn duration_bounds_the_run() {
    let args = BackendArgs {
        delay: Some(Duration::from_millis(20)),
        ..BackendArgs::ephemeral("app-backend", "v1")
    };
    let b = backend(args).await;
    let started = Instant::now();
    let args = TrafficArgs {
        concurrency: 2,
        duration: Some(Duration::from_millis(300)),
        ..traffic(&b, 100_000)
    };
    let report = run_traffic(&args).await.unwrap();
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_millis(600), "took {elapsed:?}");
    assert!(
        report.total > 5 && report.total < 100,
        "total {}",
        report.total
    );
    // Requests cut off by the deadline are dropped, not reported as errors.
    assert_eq!(report.error_count(), 0);
    assert_eq!(report.responses, report.total);
}

#[tokio::test]
async fn groups_by_header() {
    let b = backend(BackendArgs::ephemeral("reviews", "v3")).await;
    let args = TrafficArgs {
        by: KeyBy::Header("x-version".into()),
        ..traffic(&b, 10)
    };
    let report = run_traffic(&args).await.unwrap();
    assert_eq!(report.count("v3"), 10);

    let args = TrafficArgs {
        by: KeyBy::Header("x-missing".into()),
        ..traffic(&b, 3)
    };
    let report = run_traffic(&args).await.unwrap();
    assert_eq!(report.count("(none)"), 3);
}

#[tokio::test]
async fn failures_are_grouped_and_counted_by_status() {
    let args = BackendArgs {
        fail_rate: 0.5,
        ..BackendArgs::ephemeral("app-backend", "v1")
    };
    let b = backend(args).await;
    let report = run_traffic(&traffic(&b, 10)).await.unwrap();
    assert_eq!(report.status_count(200), 5);
    assert_eq!(report.status_count(503), 5);
    assert_eq!(report.count("app-backend v1"), 5);
    assert_eq!(report.count("app-backend v1 - unavailable"), 5);
    assert!(report.render().contains("status: 200=5 503=5\n"));
}

#[tokio::test]
async fn timeouts_and_connect_errors_are_counted() {
    let args = BackendArgs {
        hang_after: Some(2),
        ..BackendArgs::ephemeral("app-backend", "v1")
    };
    let b = backend(args).await;
    let args = TrafficArgs {
        timeout: Duration::from_millis(150),
        ..traffic(&b, 4)
    };
    let report = run_traffic(&args).await.unwrap();
    assert_eq!(report.total, 4);
    assert_eq!(report.responses, 2);
    assert_eq!(report.errors.get("timeout"), Some(&2));

    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", closed.local_addr().unwrap());
    drop(closed);
    let report = run_traffic(&TrafficArgs {
        requests: 3,
        ..TrafficArgs::new(url)
    })
    .await
    .unwrap();
    assert_eq!(report.errors.get("connect"), Some(&3));
    assert_eq!(report.responses, 0);
    assert!(report.render().contains("errors: connect=3"));
}

#[tokio::test]
async fn http2_prior_knowledge_and_host_override() {
    let b = backend(BackendArgs::ephemeral("app-backend", "v1")).await;
    let args = TrafficArgs {
        http2: true,
        concurrency: 2,
        headers: vec!["Host: reviews.default".into(), "x-user: jason".into()],
        ..traffic(&b, 10)
    };
    let report = run_traffic(&args).await.unwrap();
    assert_eq!(report.count("app-backend v1"), 10);
    let received = b.received();
    assert!(received.iter().all(|r| r.version == "HTTP/2.0"));
    assert!(received.iter().all(|r| r.host() == Some("reviews.default")));
    assert!(received.iter().all(|r| r.header("host").is_none()));
    assert!(received.iter().all(|r| r.header("x-user") == Some("jason")));

    let args = TrafficArgs {
        headers: vec!["Host: ratings".into()],
        method: "HEAD".into(),
        ..traffic(&b, 2)
    };
    let report = run_traffic(&args).await.unwrap();
    assert_eq!(report.status_count(200), 2);
    let last = b.last_received().unwrap();
    assert_eq!(
        (last.version.as_str(), last.method.as_str()),
        ("HTTP/1.1", "HEAD")
    );
    assert_eq!(last.header_all("host"), vec!["ratings"]);
}

#[tokio::test]
async fn reconnects_when_server_closes() {
    let b = backend(BackendArgs::ephemeral("app-backend", "v1")).await;
    let args = TrafficArgs {
        headers: vec!["Connection: close".into()],
        ..traffic(&b, 5)
    };
    let report = run_traffic(&args).await.unwrap();
    assert_eq!(report.count("app-backend v1"), 5);
    assert_eq!(report.error_count(), 0);
    let peers: HashSet<_> = b.received().iter().map(|r| r.peer).collect();
    assert_eq!(peers.len(), 5);
}

#[tokio::test]
async fn rejects_bad_arguments_and_handles_zero() {
    let b = backend(BackendArgs::ephemeral("a", "v1")).await;
    assert!(run_traffic(&TrafficArgs::new("https://127.0.0.1:1/"))
        .await
        .is_err());
    assert!(run_traffic(&TrafficArgs::new("not a url")).await.is_err());
    assert!(run_traffic(&TrafficArgs {
        concurrency: 0,
        ..traffic(&b, 1)
    })
    .await
    .is_err());
    assert!(run_traffic(&TrafficArgs {
        headers: vec!["nocolon".into()],
        ..traffic(&b, 1)
    })
    .await
    .is_err());
    assert!(run_traffic(&TrafficArgs {
        method: "B A D".into(),
        ..traffic(&b, 1)
    })
    .await
    .is_err());
    let report = run_traffic(&traffic(&b, 0)).await.unwrap();
    assert_eq!(report.total, 0);
    assert!(report.render().contains("status: -"));
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["total"], 0);
}
