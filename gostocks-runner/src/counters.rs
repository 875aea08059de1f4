//! The intake's and the dataflow's counters, and their Prometheus families.

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

    /// The Prometheus text of the counters, with the number of `symbols` with a last price.
    pub fn metrics(&self, symbols: usize) -> String {
        let (accepted, rejected) = self.counts();
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let (late, dead) = (get(&self.late), get(&self.dead_letters));
        let (stats_rows, bars) = (get(&self.stats_rows), get(&self.bar_rows));
        format!(
            "# HELP gostocks_ticks_total Ticks accepted into the dataflow.\n# TYPE gostocks_ticks_total counter\ngostocks_ticks_total {accepted}\n\
             # HELP gostocks_ticks_rejected_total Ticks rejected (bad price, size, symbol or time).\n# TYPE gostocks_ticks_rejected_total counter\ngostocks_ticks_rejected_total {rejected}\n\
             # HELP gostocks_ticks_late_total Ticks too late to count.\n# TYPE gostocks_ticks_late_total counter\ngostocks_ticks_late_total {late}\n\
             # HELP gostocks_dead_letters_total Kafka records sent to the dead-letter topic.\n# TYPE gostocks_dead_letters_total counter\ngostocks_dead_letters_total {dead}\n\
             # HELP gostocks_stats_rows_total Window stats changelog rows computed.\n# TYPE gostocks_stats_rows_total counter\ngostocks_stats_rows_total {stats_rows}\n\
             # HELP gostocks_bars_total Final bars computed.\n# TYPE gostocks_bars_total counter\ngostocks_bars_total {bars}\n\
             # HELP gostocks_symbols Symbols with a last price.\n# TYPE gostocks_symbols gauge\ngostocks_symbols {symbols}\n"
        )
    }
}
