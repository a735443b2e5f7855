//! A lock-free histogram with Istio's (Envoy's default) buckets.
//!
//! prometheus-client's `Histogram` takes a mutex per observation; this one does two relaxed
//! atomic adds (bucket, sum), so concurrent requests on one series never wait on each other.
//! The count is the sum of the buckets, computed at scrape time.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::exemplar::Exemplar;
use prometheus_client::metrics::{MetricType, TypedMetric};

/// Istio's bucket upper bounds, for `istio_request_duration_milliseconds`,
/// `istio_request_bytes` and `istio_response_bytes` (`+Inf` is implicit).
pub const ISTIO_BUCKETS: [f64; 19] = [
    0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
    60000.0, 300000.0, 600000.0, 1800000.0, 3600000.0,
];

/// The sum is kept in thousandths so it stays an integer atomic (µs for durations in ms).
const SUM_SCALE: f64 = 1000.0;

#[derive(Debug)]
struct Inner {
    /// Non-cumulative counts; the last one is `+Inf`.
    buckets: [AtomicU64; ISTIO_BUCKETS.len() + 1],
    sum_milli: AtomicU64,
}

/// A histogram with [`ISTIO_BUCKETS`]; clones share the same counts.
#[derive(Debug, Clone)]
pub struct IstioHistogram {
    inner: Arc<Inner>,
}

impl Default for IstioHistogram {
    fn default() -> Self {
        IstioHistogram {
            inner: Arc::new(Inner {
                buckets: std::array::from_fn(|_| AtomicU64::new(0)),
                sum_milli: AtomicU64::new(0),
            }),
        }
    }
}

impl IstioHistogram {
    /// Records one value (negative and NaN values count as 0).
    #[inline]
    pub fn observe(&self, value: f64) {
        let value = if value.is_nan() { 0.0 } else { value.max(0.0) };
        let idx = ISTIO_BUCKETS.partition_point(|b| *b < value);
        if let Some(b) = self.inner.buckets.get(idx) {
            b.fetch_add(1, Ordering::Relaxed);
        }
        // `as` saturates for huge values, which is the behaviour wanted for a sum.
        self.inner
            .sum_milli
            .fetch_add((value * SUM_SCALE).round() as u64, Ordering::Relaxed);
    }

    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.inner
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .sum()
    }

    /// Sum of observations.
    pub fn sum(&self) -> f64 {
        self.inner.sum_milli.load(Ordering::Relaxed) as f64 / SUM_SCALE
    }

    /// Non-cumulative counts per bucket (the last one is `+Inf`).
    pub fn bucket_counts(&self) -> Vec<u64> {
        self.inner
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect()
    }

    fn buckets(&self) -> Vec<(f64, u64)> {
        ISTIO_BUCKETS
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(self.inner.buckets.iter().map(|b| b.load(Ordering::Relaxed)))
            .collect()
    }
}

impl TypedMetric for IstioHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for IstioHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let buckets = self.buckets();
        let count = buckets.iter().map(|(_, c)| c).sum();
        encoder.encode_histogram::<NoLabelSet>(
            self.sum(),
            count,
            &buckets,
            None::<&HashMap<usize, Exemplar<NoLabelSet, f64>>>,
        )
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_land_in_istio_buckets() {
        let h = IstioHistogram::default();
        for v in [0.2, 0.5, 0.7, 3.0, 4000.0, 5_000_000.0] {
            h.observe(v);
        }
        let b = h.buckets();
        assert_eq!(b.len(), 20);
        // `le` is inclusive: 0.5 belongs to the 0.5 bucket.
        assert_eq!(b[0], (0.5, 2));
        assert_eq!(b[1], (1.0, 1));
        assert_eq!(b[2], (5.0, 1));
        assert_eq!(b[11], (5000.0, 1));
        assert_eq!(b[19].1, 1);
        assert_eq!(h.count(), 6);
        assert!((h.sum() - 5_004_004.4).abs() < 1e-6);
    }
}
