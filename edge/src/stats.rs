//! Latency statistics and memory figures for summaries and benchmarks.

use std::time::Duration;

/// A latency histogram with 1 % wide logarithmic buckets: constant memory however long `watch` runs,
/// percentiles accurate to 1 %.
#[derive(Debug, Clone)]
pub struct LatencyHistogram {
    counts: Vec<u64>,
    total: u64,
    sum_us: f64,
    max_us: u64,
}

/// Bucket growth factor: each bucket is 1 % wider than the previous.
const GROWTH: f64 = 1.01;
/// Latencies above this (100 s) land in the last bucket.
const MAX_US: f64 = 1e8;

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self::new()
    }
}

impl LatencyHistogram {
    /// An empty histogram.
    pub fn new() -> Self {
        let buckets = (MAX_US.ln() / GROWTH.ln()).ceil() as usize + 2;
        Self {
            counts: vec![0; buckets],
            total: 0,
            sum_us: 0.0,
            max_us: 0,
        }
    }

    fn bucket(us: u64) -> f64 {
        (us.max(1) as f64).min(MAX_US).ln() / GROWTH.ln()
    }

    /// Records one latency.
    pub fn record(&mut self, latency: Duration) {
        let us = latency.as_micros().min(u64::MAX as u128) as u64;
        let index = (Self::bucket(us) as usize).min(self.counts.len() - 1);
        self.counts[index] += 1;
        self.total += 1;
        self.sum_us += us as f64;
        self.max_us = self.max_us.max(us);
    }

    /// Number of latencies recorded.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// Mean latency in milliseconds (0 when empty).
    pub fn mean_ms(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.sum_us / self.total as f64 / 1000.0
        }
    }

    /// Largest latency in milliseconds.
    pub fn max_ms(&self) -> f64 {
        self.max_us as f64 / 1000.0
    }

    /// The `q` quantile (0..1) in milliseconds, to within 1 % (0 when empty).
    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.total == 0 {
            return 0.0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (index, &count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                // Upper edge of the bucket, never above the largest value seen.
                let upper_us = GROWTH.powf(index as f64 + 1.0);
                return upper_us.min(self.max_us as f64) / 1000.0;
            }
        }
        self.max_ms()
    }
}

/// Exact percentile (0..100) of a set of durations, in milliseconds, by the nearest-rank method.
pub fn percentile_ms(sorted_ms: &[f64], percentile: f64) -> f64 {
    if sorted_ms.is_empty() {
        return 0.0;
    }
    let rank = ((percentile / 100.0) * sorted_ms.len() as f64).ceil() as usize;
    sorted_ms[rank.clamp(1, sorted_ms.len()) - 1]
}

/// Peak resident memory of this process (VmHWM) in bytes, where /proc is available.
pub fn peak_memory_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line
        .trim_start_matches("VmHWM:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// Milliseconds of a duration, as a float.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Rounds to 3 decimals for JSON output (sub-microsecond digits are noise).
pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_quantiles_are_within_one_percent() {
        let mut h = LatencyHistogram::new();
        for ms in 1..=100u64 {
            h.record(Duration::from_millis(ms));
        }
        assert_eq!(h.count(), 100);
        assert!((h.mean_ms() - 50.5).abs() < 1e-9);
        for (q, want) in [(0.5, 50.0), (0.9, 90.0), (0.99, 99.0), (1.0, 100.0)] {
            let got = h.quantile_ms(q);
            assert!((got - want).abs() <= want * 0.011, "q{q}: {got} vs {want}");
        }
    }

    #[test]
    fn nearest_rank_percentile() {
        let v: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(percentile_ms(&v, 50.0), 5.0);
        assert_eq!(percentile_ms(&v, 90.0), 9.0);
        assert_eq!(percentile_ms(&v, 99.0), 10.0);
    }

    #[test]
    fn peak_memory_is_read_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(peak_memory_bytes().unwrap_or(0) > 1 << 20);
        }
    }
}
