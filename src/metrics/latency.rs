//! The gateway's own latency histograms: lock-free on the request path.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::histogram::exponential_buckets;
use prometheus_client::metrics::{MetricType, TypedMetric};

/// Upper bounds of the latency buckets: 0.5 ms to about 16 s, doubling.
pub(super) fn latency_buckets() -> Vec<f64> {
    exponential_buckets(0.0005, 2.0, 16).collect()
}

/// A histogram of durations that never locks: one atomic add per bucket, count and sum (in
/// nanoseconds). prometheus-client's `Histogram` takes a write lock per observation, which
/// every request thread would contend for.
#[derive(Clone, Debug)]
pub struct LatencyHistogram(Arc<LatencyInner>);

#[derive(Debug)]
struct LatencyInner {
    bounds: Vec<f64>,
    /// Per bucket (not cumulative), one more than `bounds` for +Inf.
    counts: Vec<AtomicU64>,
    sum_nanos: AtomicU64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        let bounds = latency_buckets();
        let counts = (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect();
        LatencyHistogram(Arc::new(LatencyInner {
            bounds,
            counts,
            sum_nanos: AtomicU64::new(0),
        }))
    }
}

impl LatencyHistogram {
    pub fn observe(&self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        let i = self.0.bounds.partition_point(|b| *b < secs);
        if let Some(c) = self.0.counts.get(i) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.0.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.0
            .counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }
}

impl TypedMetric for LatencyHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for LatencyHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        // The count is the buckets' total, so that `+Inf` always equals `_count`.
        let mut buckets: Vec<(f64, u64)> = Vec::with_capacity(self.0.counts.len());
        let mut count = 0u64;
        for (i, c) in self.0.counts.iter().enumerate() {
            let n = c.load(Ordering::Relaxed);
            count += n;
            buckets.push((self.0.bounds.get(i).copied().unwrap_or(f64::MAX), n));
        }
        let sum = self.0.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}
