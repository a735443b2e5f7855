//! A small load generator replacing the tutorials'
//! `for i in $(seq 1 100); do curl ...; done | sort | uniq -c`.
//!
//! Requests are spread over a fixed number of keep-alive connections, one per
//! worker, so the proxy's per-connection and per-request balancing both show.

mod client;
mod progress;
mod report;

use std::str::FromStr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::HeaderName;
use tokio::task::JoinSet;

pub use report::{normalize_key, KeyCount, Latency, Report};

use crate::duration::parse_duration;
use client::{Target, Worker};
use progress::Progress;
use report::Stats;

/// Command-line options of `sluice traffic`.
#[derive(clap::Args, Clone, Debug)]
pub struct TrafficArgs {
    /// URL to request, e.g. http://127.0.0.1:8080/ (plain http only).
    pub url: String,
    /// Total number of requests to send.
    #[arg(short = 'n', long, default_value_t = 100)]
    pub requests: u64,
    /// Number of concurrent connections, each sending requests back to back.
    #[arg(short = 'c', long, default_value_t = 1)]
    pub concurrency: usize,
    /// Extra request header as 'Name: value'; repeatable.
    #[arg(short = 'H', long = "header", value_name = "K: V")]
    pub headers: Vec<String>,
    /// Stop after this long even if fewer requests were sent (Go-style, e.g. 5s).
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// What to group responses by: `body` (first line) or `header:NAME`.
    #[arg(long, default_value = "body", value_parser = KeyBy::parse)]
    pub by: KeyBy,
    /// Speak HTTP/2 without TLS using prior knowledge (h2c).
    #[arg(long)]
    pub http2: bool,
    /// Request method.
    #[arg(long, default_value = "GET")]
    pub method: String,
    /// Per-request timeout (Go-style, e.g. 500ms).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Print the report as JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Exit non-zero unless every response has this status (failed requests always do).
    #[arg(long, value_name = "CODE")]
    pub expect: Option<u16>,
}

impl TrafficArgs {
    /// The command-line defaults for `url`, as `sluice traffic URL` would use.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            requests: 100,
            concurrency: 1,
            headers: Vec::new(),
            duration: None,
            by: KeyBy::Body,
            http2: false,
            method: "GET".to_string(),
            timeout: Duration::from_secs(10),
            json: false,
            expect: None,
        }
    }
}

/// How responses are grouped in the distribution.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyBy {
    /// The first line of the body, with a trailing ` - request N` removed.
    Body,
    /// The value of this response header (lower-case name).
    Header(String),
}

impl KeyBy {
    /// Parses `body` or `header:NAME`.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s == "body" {
            return Ok(Self::Body);
        }
        let Some(name) = s.strip_prefix("header:") else {
            return Err(format!("expected `body` or `header:NAME`, got {s:?}"));
        };
        let name = HeaderName::from_str(name.trim())
            .map_err(|_| format!("{name:?} is not a valid header name"))?;
        Ok(Self::Header(name.as_str().to_string()))
    }
}

impl FromStr for KeyBy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl std::fmt::Display for KeyBy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Body => f.write_str("body"),
            Self::Header(name) => write!(f, "header:{name}"),
        }
    }
}

/// Sends the requests described by `args` and summarises the responses.
///
/// Stops after `args.requests` requests or when `args.duration` elapses,
/// whichever comes first; a request cut short by the duration is not counted.
pub async fn run_traffic(args: &TrafficArgs) -> anyhow::Result<Report> {
    if args.concurrency == 0 {
        anyhow::bail!("--concurrency must be at least 1");
    }
    if args.timeout.is_zero() {
        anyhow::bail!("--timeout must be greater than zero");
    }
    let target = Target::parse(args)?;
    let started = Instant::now();
    let deadline = args.duration.map(|d| started + d);
    let done = Arc::new(AtomicU64::new(0));
    let shared = Arc::new(client::Shared {
        target,
        total: args.requests,
        next: AtomicU64::new(0),
        done: Arc::clone(&done),
        deadline,
        timeout: args.timeout,
        key_by: args.by.clone(),
    });

    let progress = Progress::start(done, args.requests, started, deadline);
    let workers =
        usize::try_from(args.requests).map_or(args.concurrency, |n| n.min(args.concurrency));
    let mut tasks = JoinSet::new();
    for _ in 0..workers {
        tasks.spawn(Worker::new(Arc::clone(&shared)).run());
    }
    let mut stats = Stats::default();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(worker_stats) => stats.merge(worker_stats),
            Err(err) => anyhow::bail!("traffic worker failed: {err}"),
        }
    }
    progress.finish();
    Ok(Report::from_stats(stats, started.elapsed()))
}

/// Runs `sluice traffic`: sends the requests and prints the report to stdout.
pub async fn run(args: TrafficArgs) -> anyhow::Result<()> {
    let report = run_traffic(&args).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.render());
        if let Some(hint) = no_route_hint(&report, &args) {
            eprintln!("{hint}");
        }
    }
    verdict(&report, args.expect).map_err(anyhow::Error::msg)
}

/// The most common first mistake: no `Host` header, so the proxy's route table (keyed by
/// Host, as Envoy's) has nothing for the URL's address and answers an empty `404` (NR).
fn no_route_hint(report: &Report, args: &TrafficArgs) -> Option<String> {
    let sent_host = args.headers.iter().any(|h| {
        h.split(':')
            .next()
            .is_some_and(|k| k.trim().eq_ignore_ascii_case("host"))
    });
    let empty_404 = report.status_count(404) > 0 && report.count(report::NONE_KEY) > 0;
    if sent_host || !empty_404 {
        return None;
    }
    let authority = args
        .url
        .split("://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or(&args.url);
    Some(format!(
        "hint: an empty 404 is the proxy's \"no route\" (NR): no virtual host serves Host `{authority}`. \
         Services are chosen by the Host header: add -H 'Host: <service>' (e.g. -H 'Host: app-backend'); \
         the admin API's /routes lists the hosts each listener serves."
    ))
}

/// Whether the run succeeded: no request without a response, and with `expect` every status
/// as expected; otherwise what went wrong, for the exit message.
pub fn verdict(report: &Report, expect: Option<u16>) -> Result<(), String> {
    let failed = report.error_count();
    if failed > 0 {
        return Err(format!(
            "{failed} of {} requests got no response",
            report.total
        ));
    }
    if let Some(code) = expect {
        let other = report.total - report.status_count(code);
        if other > 0 {
            return Err(format!(
                "{other} of {} responses were not {code}",
                report.total
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        traffic: TrafficArgs,
    }

    #[test]
    fn key_by_parses() {
        assert_eq!(KeyBy::parse("body"), Ok(KeyBy::Body));
        assert_eq!(
            KeyBy::parse("header:X-Version"),
            Ok(KeyBy::Header("x-version".into()))
        );
        assert!(KeyBy::parse("header:").is_err());
        assert!(KeyBy::parse("status").is_err());
        assert_eq!(KeyBy::Header("x-a".into()).to_string(), "header:x-a");
    }

    #[test]
    fn cli_defaults_match_new() {
        let cli = Cli::try_parse_from(["t", "http://127.0.0.1:1/"]).unwrap();
        let expected = TrafficArgs::new("http://127.0.0.1:1/");
        assert_eq!(format!("{:?}", cli.traffic), format!("{expected:?}"));
    }

    #[test]
    fn cli_parses_all_flags() {
        let cli = Cli::try_parse_from([
            "t",
            "-n",
            "5",
            "-c",
            "2",
            "-H",
            "a: b",
            "--header",
            "c: d",
            "--duration",
            "1.5s",
            "--by",
            "header:x-version",
            "--http2",
            "--method",
            "POST",
            "--timeout",
            "250ms",
            "--json",
            "http://h/",
        ])
        .unwrap();
        let t = cli.traffic;
        assert_eq!((t.requests, t.concurrency), (5, 2));
        assert_eq!(t.headers, vec!["a: b", "c: d"]);
        assert_eq!(t.duration, Some(Duration::from_millis(1500)));
        assert_eq!(t.by, KeyBy::Header("x-version".into()));
        assert!(t.http2 && t.json);
        assert_eq!(t.method, "POST");
        assert_eq!(t.timeout, Duration::from_millis(250));
        assert!(Cli::try_parse_from(["t", "--duration", "soon", "http://h/"]).is_err());
    }
}
