//! Aggregated results of a traffic run and their `uniq -c`-style rendering.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

/// Key used when a response has no body line or lacks the chosen header.
pub(crate) const NONE_KEY: &str = "(none)";

/// Reduces a response body (or header value) to its distribution key.
///
/// Takes the first line, trimmed, and strips a trailing ` - request <digits>`
/// so the backend's `NAME VERSION - request N` counts as `NAME VERSION`.
pub fn normalize_key(raw: &str) -> String {
    let line = raw.lines().next().unwrap_or_default().trim();
    let line = match line.rsplit_once(" - request ") {
        Some((head, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
            head.trim_end()
        }
        _ => line,
    };
    if line.is_empty() {
        NONE_KEY.to_string()
    } else {
        line.to_string()
    }
}

/// Raw per-worker tallies, merged into a [`Report`] at the end.
#[derive(Debug, Default)]
pub(super) struct Stats {
    keys: HashMap<String, u64>,
    statuses: BTreeMap<u16, u64>,
    errors: BTreeMap<String, u64>,
    latencies: Vec<Duration>,
}

impl Stats {
    pub(super) fn record_response(&mut self, status: u16, key: String, latency: Duration) {
        *self.keys.entry(key).or_default() += 1;
        *self.statuses.entry(status).or_default() += 1;
        self.latencies.push(latency);
    }

    pub(super) fn record_error(&mut self, kind: &str) {
        *self.errors.entry(kind.to_string()).or_default() += 1;
    }

    pub(super) fn merge(&mut self, other: Stats) {
        for (key, n) in other.keys {
            *self.keys.entry(key).or_default() += n;
        }
        for (status, n) in other.statuses {
            *self.statuses.entry(status).or_default() += n;
        }
        for (kind, n) in other.errors {
            *self.errors.entry(kind).or_default() += n;
        }
        self.latencies.extend(other.latencies);
    }
}

/// One line of the distribution.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct KeyCount {
    /// The normalised body line or header value.
    pub key: String,
    /// Responses with this key.
    pub count: u64,
    /// Share of all requests sent (responses and errors), in percent.
    pub percent: f64,
}

/// Latency percentiles over responses (errors excluded), in milliseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Slowest response.
    pub max: f64,
    /// Arithmetic mean.
    pub mean: f64,
}

/// Summary of a traffic run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    /// Requests that finished, with a response or an error.
    pub total: u64,
    /// Requests that got a response of any status.
    pub responses: u64,
    /// Responses grouped by key, most frequent first.
    pub distribution: Vec<KeyCount>,
    /// Responses per HTTP status code.
    pub statuses: BTreeMap<u16, u64>,
    /// Requests without a response, by cause (connect, timeout, request, body).
    pub errors: BTreeMap<String, u64>,
    /// Response latency percentiles.
    pub latency_ms: Latency,
    /// Wall-clock duration of the run in seconds.
    pub elapsed_secs: f64,
    /// Finished requests per second.
    pub requests_per_sec: f64,
}

impl Report {
    pub(super) fn from_stats(stats: Stats, elapsed: Duration) -> Self {
        let responses: u64 = stats.statuses.values().sum();
        let total = responses + stats.errors.values().sum::<u64>();
        let mut distribution: Vec<KeyCount> = stats
            .keys
            .into_iter()
            .map(|(key, count)| KeyCount {
                key,
                count,
                percent: percent(count, total),
            })
            .collect();
        distribution.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key.cmp(&b.key)));
        let elapsed_secs = round_to(elapsed.as_secs_f64(), 1e6);
        Self {
            total,
            responses,
            distribution,
            statuses: stats.statuses,
            errors: stats.errors,
            latency_ms: latency(stats.latencies),
            elapsed_secs,
            requests_per_sec: if elapsed_secs > 0.0 {
                total as f64 / elapsed_secs
            } else {
                0.0
            },
        }
    }

    /// Responses whose key is `key` (0 if none).
    pub fn count(&self, key: &str) -> u64 {
        self.distribution
            .iter()
            .find(|k| k.key == key)
            .map_or(0, |k| k.count)
    }

    /// Responses with HTTP status `code` (0 if none).
    pub fn status_count(&self, code: u16) -> u64 {
        self.statuses.get(&code).copied().unwrap_or(0)
    }

    /// Requests that got no response at all.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Human-readable report in the spirit of `sort | uniq -c`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let width = self
            .distribution
            .iter()
            .map(|k| k.count.to_string().len())
            .max()
            .unwrap_or(0)
            .max(5);
        for k in &self.distribution {
            let _ = writeln!(out, "{:>width$} {:>5.1}%  {}", k.count, k.percent, k.key);
        }
        let _ = writeln!(out, "status: {}", join_counts(&self.statuses));
        if !self.errors.is_empty() {
            let _ = writeln!(out, "errors: {}", join_counts(&self.errors));
        }
        let l = &self.latency_ms;
        let _ = writeln!(
            out,
            "latency ms: p50={:.1} p90={:.1} p99={:.1} max={:.1}   {} requests in {:.2}s ({:.0} req/s)",
            l.p50, l.p90, l.p99, l.max, self.total, self.elapsed_secs, self.requests_per_sec
        );
        out
    }
}

fn percent(count: u64, total: u64) -> f64 {
    if total == 0 {
        0.0
    } else {
        count as f64 * 100.0 / total as f64
    }
}

/// Rounds to `1/scale` so reports do not carry float noise like `0.99674899`.
fn round_to(value: f64, scale: f64) -> f64 {
    (value * scale).round() / scale
}

fn join_counts<K: std::fmt::Display>(counts: &BTreeMap<K, u64>) -> String {
    if counts.is_empty() {
        return "-".to_string();
    }
    counts
        .iter()
        .map(|(k, n)| format!("{k}={n}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Nearest-rank percentiles, which stay exact for the small samples typical here.
fn latency(mut samples: Vec<Duration>) -> Latency {
    if samples.is_empty() {
        return Latency::default();
    }
    samples.sort_unstable();
    // Microsecond resolution is all the timers give, so JSON shows no more.
    let ms = |d: Duration| round_to(d.as_secs_f64() * 1000.0, 1e3);
    let rank = |p: f64| {
        let idx = (p / 100.0 * samples.len() as f64).ceil() as usize;
        ms(samples[idx.clamp(1, samples.len()) - 1])
    };
    let sum: Duration = samples.iter().sum();
    Latency {
        p50: rank(50.0),
        p90: rank(90.0),
        p99: rank(99.0),
        max: ms(samples[samples.len() - 1]),
        mean: round_to(ms(sum) / samples.len() as f64, 1e3),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_normalised() {
        assert_eq!(
            normalize_key("app-backend v1 - request 17\n"),
            "app-backend v1"
        );
        assert_eq!(normalize_key("  hello  \nsecond line"), "hello");
        assert_eq!(normalize_key("x - request abc"), "x - request abc");
        assert_eq!(normalize_key("x - request "), "x - request");
        assert_eq!(normalize_key(""), "(none)");
        assert_eq!(normalize_key("\n\n"), "(none)");
        assert_eq!(normalize_key("v2"), "v2");
    }

    #[test]
    fn percentiles_use_nearest_rank() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let l = latency(samples);
        assert_eq!((l.p50, l.p90, l.p99, l.max), (50.0, 90.0, 99.0, 100.0));
        assert!((l.mean - 50.5).abs() < 1e-9);
        assert_eq!(latency(vec![Duration::from_millis(3)]).p50, 3.0);
        assert_eq!(latency(Vec::new()), Latency::default());
    }

    #[test]
    fn renders_like_uniq_c() {
        let mut a = Stats::default();
        for _ in 0..900 {
            a.record_response(200, "app-backend v1".into(), Duration::from_millis(1));
        }
        let mut b = Stats::default();
        for _ in 0..100 {
            b.record_response(200, "app-backend v2".into(), Duration::from_millis(5));
        }
        a.merge(b);
        let report = Report::from_stats(a, Duration::from_millis(500));
        let text = report.render();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "  900  90.0%  app-backend v1");
        assert_eq!(lines[1], "  100  10.0%  app-backend v2");
        assert_eq!(lines[2], "status: 200=1000");
        assert_eq!(
            lines[3],
            "latency ms: p50=1.0 p90=1.0 p99=5.0 max=5.0   1000 requests in 0.50s (2000 req/s)"
        );
        assert_eq!(report.count("app-backend v2"), 100);
        assert_eq!(report.status_count(200), 1000);
    }

    #[test]
    fn errors_count_towards_total_but_not_latency() {
        let mut s = Stats::default();
        s.record_response(503, "svc v1 - unavailable".into(), Duration::from_millis(2));
        s.record_error("timeout");
        s.record_error("connect");
        let report = Report::from_stats(s, Duration::from_secs(1));
        assert_eq!(
            (report.total, report.responses, report.error_count()),
            (3, 1, 2)
        );
        assert!((report.distribution[0].percent - 100.0 / 3.0).abs() < 1e-9);
        assert!(report.render().contains("errors: connect=1 timeout=1\n"));
        assert_eq!(report.latency_ms.max, 2.0);
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["statuses"]["503"], 1);
    }
}
