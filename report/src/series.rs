//! Throughput and ack latency over time: acknowledged writes bucketed by
//! ack time, with acks per second and nearest-rank p50/p99 latency per
//! bucket.

/// One acknowledged write: when it was acknowledged and how long it took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack {
    /// Ack time, nanoseconds since the run started.
    pub t_ns: u64,
    /// Ack time minus invoke time.
    pub latency_ns: u64,
}

/// Most buckets a plot gets: a long run gets wider buckets, not more points.
pub const BUCKETS_MAX: u64 = 120;
/// Bucket widths are whole multiples of this.
pub const BUCKET_STEP_NS: u64 = 100_000_000;
const SECOND_NS: u64 = 1_000_000_000;

/// One time bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    pub start_ns: u64,
    pub acks: u64,
    pub acks_per_s: f64,
    /// None when nothing was acknowledged in the bucket.
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

/// The buckets of a run lasting `end_ns`: the narrowest multiple of
/// [`BUCKET_STEP_NS`] that keeps at most [`BUCKETS_MAX`] buckets.
pub fn buckets(acks: &[Ack], end_ns: u64) -> Vec<Bucket> {
    let width_ns = end_ns.div_ceil(BUCKETS_MAX).div_ceil(BUCKET_STEP_NS).max(1) * BUCKET_STEP_NS;
    let width_s = width_ns as f64 / SECOND_NS as f64;
    let count = end_ns.div_ceil(width_ns).max(1);
    let mut latencies: Vec<Vec<u64>> = vec![Vec::new(); usize::try_from(count).expect("at most BUCKETS_MAX buckets")];
    for a in acks {
        // An ack at the very end falls in the last bucket.
        let i = (a.t_ns / width_ns).min(count - 1);
        latencies[usize::try_from(i).expect("bucket index fits")].push(a.latency_ns);
    }
    latencies
        .into_iter()
        .enumerate()
        .map(|(i, mut l)| {
            l.sort_unstable();
            let rank = |q: f64| -> Option<f64> {
                if l.is_empty() {
                    return None;
                }
                // Nearest rank: the smallest value with at least q of the values at or below it.
                let r = ((q * l.len() as f64).ceil() as usize).clamp(1, l.len());
                Some(l[r - 1] as f64 / 1e6)
            };
            Bucket {
                start_ns: i as u64 * width_ns,
                acks: l.len() as u64,
                acks_per_s: l.len() as f64 / width_s,
                p50_ms: rank(0.50),
                p99_ms: rank(0.99),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_count_acks_and_rank_latencies() {
        let ms = 1_000_000;
        let mut acks: Vec<Ack> = (1..=100).map(|i| Ack { t_ns: 100 * ms, latency_ns: i * ms }).collect();
        acks.push(Ack { t_ns: 2_500 * ms, latency_ns: 7 * ms });
        let b = buckets(&acks, 3_000 * ms);
        // 3 s in 100 ms buckets.
        assert_eq!(b.len(), 30);
        assert_eq!((b[1].acks, b[1].acks_per_s, b[1].p50_ms, b[1].p99_ms), (100, 1000.0, Some(50.0), Some(99.0)));
        assert_eq!((b[0].acks, b[0].p50_ms), (0, None));
        assert_eq!((b[25].start_ns, b[25].acks, b[25].p99_ms), (2_500 * ms, 1, Some(7.0)));
        // A ten-hour run keeps at most BUCKETS_MAX buckets, each a whole multiple of the step.
        let long = buckets(&[Ack { t_ns: 36_000 * SECOND_NS, latency_ns: 1 }], 36_000 * SECOND_NS);
        assert_eq!(long.len() as u64, BUCKETS_MAX);
        assert_eq!(long[1].start_ns, 300 * SECOND_NS);
        assert_eq!(long.last().map(|b| b.acks), Some(1));
    }
}
