//! Counters of an ingest session: plain atomics, shared with whoever reports them.

use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

/// Live counters of an ingest session.
#[derive(Debug, Default)]
pub struct IngestMetrics {
    /// Text frames received.
    pub frames: AtomicU64,
    /// Ticks handed on for delivery.
    pub ticks: AtomicU64,
    /// Quotes decoded (with quotes asked for).
    pub quotes: AtomicU64,
    /// Messages passed over (other streams, quotes, pings, acknowledgements).
    pub ignored: AtomicU64,
    /// Frames or trades that did not decode.
    pub parse_errors: AtomicU64,
    /// Trades that decoded but broke the tick contract (e.g. size 0).
    pub invalid: AtomicU64,
    /// Trades dropped as already delivered.
    pub duplicates: AtomicU64,
    /// Trade ids missing from the stream.
    pub gap_ids: AtomicU64,
    /// Reconnections (after a lost connection or a failed attempt).
    pub reconnects: AtomicU64,
    /// Error messages from the provider.
    pub provider_errors: AtomicU64,
    /// Sum over ticks of receive time minus exchange time, in ns.
    pub delay_ns_sum: AtomicU64,
    /// Largest receive-minus-exchange delay, in ns.
    pub delay_ns_max: AtomicU64,
    /// Ticks acknowledged by Kafka.
    pub delivered: AtomicU64,
    /// Ticks dropped because the buffer in front of Kafka was full.
    pub overflow: AtomicU64,
    /// Local receive time of the first frame, ns since the epoch (0: none yet).
    pub first_frame_ns: AtomicU64,
    /// Local receive time of the latest frame, ns since the epoch.
    pub last_frame_ns: AtomicU64,
    /// Receive-minus-exchange delays, in seconds.
    pub delay_seconds: DelayHistogram,
}

/// The histogram of exchange-to-ingest delays, in seconds: 1 ms doubling up to about 65 s.
#[derive(Clone, Debug)]
pub struct DelayHistogram(pub Histogram);

impl Default for DelayHistogram {
    fn default() -> DelayHistogram {
        DelayHistogram(Histogram::new(exponential_buckets(0.001, 2.0, 17)))
    }
}

/// A copy of the counters at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MetricsSnapshot {
    /// Text frames received.
    pub frames: u64,
    /// Ticks handed on for delivery.
    pub ticks: u64,
    /// Messages passed over (other streams, quotes, pings, acknowledgements).
    pub ignored: u64,
    /// Frames or trades that did not decode.
    pub parse_errors: u64,
    /// Trades that decoded but broke the tick contract (e.g. size 0).
    pub invalid: u64,
    /// Trades dropped as already delivered.
    pub duplicates: u64,
    /// Trade ids missing from the stream.
    pub gap_ids: u64,
    /// Reconnections (after a lost connection or a failed attempt).
    pub reconnects: u64,
    /// Error messages from the provider.
    pub provider_errors: u64,
    /// Sum over ticks of receive time minus exchange time, in ns.
    pub delay_ns_sum: u64,
    /// Largest receive-minus-exchange delay, in ns.
    pub delay_ns_max: u64,
    /// Ticks acknowledged by Kafka.
    pub delivered: u64,
    /// Ticks dropped because the buffer in front of Kafka was full.
    pub overflow: u64,
    /// Local receive time of the first frame, ns since the epoch (0: none yet).
    pub first_frame_ns: u64,
    /// Local receive time of the latest frame, ns since the epoch.
    pub last_frame_ns: u64,
}

impl IngestMetrics {
    /// Adds one to a counter.
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Records one tick's exchange-to-ingest delay (negative delays, from clock skew, count as 0).
    pub fn delay(&self, ns: i64) {
        let ns = u64::try_from(ns).unwrap_or(0);
        self.delay_seconds.0.observe(ns as f64 / 1e9);
        // Saturating: a replay of an old recording has delays of years, and a wrapped sum would
        // report nonsense rather than "huge".
        let _ = self
            .delay_ns_sum
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |sum| {
                Some(sum.saturating_add(ns))
            });
        self.delay_ns_max.fetch_max(ns, Ordering::Relaxed);
    }

    /// Notes a frame received at `recv_ns`.
    pub fn frame(&self, recv_ns: i64) {
        let ns = u64::try_from(recv_ns).unwrap_or(0);
        self.frames.fetch_add(1, Ordering::Relaxed);
        let _ = self
            .first_frame_ns
            .compare_exchange(0, ns, Ordering::Relaxed, Ordering::Relaxed);
        self.last_frame_ns.store(ns, Ordering::Relaxed);
    }

    /// The counters now.
    pub fn snapshot(&self) -> MetricsSnapshot {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        MetricsSnapshot {
            frames: g(&self.frames),
            ticks: g(&self.ticks),
            ignored: g(&self.ignored),
            parse_errors: g(&self.parse_errors),
            invalid: g(&self.invalid),
            duplicates: g(&self.duplicates),
            gap_ids: g(&self.gap_ids),
            reconnects: g(&self.reconnects),
            provider_errors: g(&self.provider_errors),
            delay_ns_sum: g(&self.delay_ns_sum),
            delay_ns_max: g(&self.delay_ns_max),
            delivered: g(&self.delivered),
            overflow: g(&self.overflow),
            first_frame_ns: g(&self.first_frame_ns),
            last_frame_ns: g(&self.last_frame_ns),
        }
    }
}

impl MetricsSnapshot {
    /// Seconds from the first frame to the latest: the time spent streaming, over which rates
    /// are meaningful (the process may have waited before and after).
    pub fn streaming_secs(&self) -> f64 {
        self.last_frame_ns.saturating_sub(self.first_frame_ns) as f64 / 1e9
    }

    /// Mean exchange-to-ingest delay in ms, over every tick so far.
    pub fn mean_delay_ms(&self) -> f64 {
        if self.ticks == 0 {
            0.0
        } else {
            self.delay_ns_sum as f64 / self.ticks as f64 / 1e6
        }
    }
}
