//! The intake's and the dataflow's counters (their Prometheus families: [`crate::metrics`]).

use std::sync::atomic::{AtomicU64, Ordering};

/// Counted as ticks come in and rows go out; read by `/metrics` and the closing summary.
#[derive(Debug, Default)]
pub struct Counters {
    /// Ticks accepted into the dataflow.
    pub accepted: AtomicU64,
    /// Ticks rejected (bad price, size, symbol or time).
    pub rejected: AtomicU64,
    /// Ticks that arrived too late to count.
    pub late: AtomicU64,
    /// Kafka records that did not decode, sent to the dead-letter topic.
    pub dead_letters: AtomicU64,
    /// Stats changelog rows computed.
    pub stats_rows: AtomicU64,
    /// Final bars computed.
    pub bar_rows: AtomicU64,
    /// Alert events fired.
    pub alert_events: AtomicU64,
    /// The greatest event time accepted.
    latest: AtomicU64,
}

impl Counters {
    /// Notes an accepted tick's event time.
    pub fn observe(&self, time_ns: u64) {
        self.latest.fetch_max(time_ns, Ordering::Relaxed);
    }

    /// The greatest event time accepted so far (0 before any tick): "now" in event time.
    pub fn latest_ns(&self) -> u64 {
        self.latest.load(Ordering::Relaxed)
    }

    /// `(accepted, rejected)` tick counts.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.accepted.load(Ordering::Relaxed),
            self.rejected.load(Ordering::Relaxed),
        )
    }
}
