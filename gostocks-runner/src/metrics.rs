//! `/metrics`: the Prometheus families of `gostocks run`, through a prometheus-client registry.
//!
//! Fast-moving values are plain atomics where they are counted ([`Counters`], the sinks'
//! [`SinkHealth`](crate::sinks::SinkHealth), the Kafka source's status); each scrape copies them
//! into a fresh registry beside the live histograms and gauges, which are prometheus-client's
//! own types. Label sets are bounded: `outcome` (a fixed list), `sink` (the registered sinks),
//! `partition` (the partitions this runner holds).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::counters::Counters;

/// A label set: `(name, value)` pairs.
pub type Labels = Vec<(&'static str, String)>;

/// A family of histograms with the latency buckets.
pub type Histograms = Family<Labels, Histogram, fn() -> Histogram>;

/// The buckets of every latency histogram, in seconds: 1 ms doubling up to about 65 s.
pub fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

/// A family of latency histograms.
pub fn histograms() -> Histograms {
    Family::new_with_constructor(latency_histogram)
}

/// Seconds from `event_ns` (ns since the epoch) to now, 0 if it is in the future.
pub fn seconds_since(event_ns: u64) -> f64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    now.saturating_sub(event_ns) as f64 / 1e9
}

/// Registers a counter `name` (without `_total`, which the encoding adds) holding `value`.
pub fn counter(r: &mut Registry, name: &str, help: &str, value: u64) {
    let c: Counter = Counter::default();
    c.inc_by(value);
    r.register(name, help, c);
}

/// Registers a gauge `name` holding `value`.
pub fn gauge(r: &mut Registry, name: &str, help: &str, value: i64) {
    let g: Gauge = Gauge::default();
    g.set(value);
    r.register(name, help, g);
}

/// Registers a float gauge `name` holding `value`.
pub fn gauge_f64(r: &mut Registry, name: &str, help: &str, value: f64) {
    let g: Gauge<f64, AtomicU64> = Gauge::default();
    g.set(value);
    r.register(name, help, g);
}

/// Registers a counter family `name` with one counter per `(labels, value)`.
pub fn counters(r: &mut Registry, name: &str, help: &str, values: Vec<(Labels, u64)>) {
    let f: Family<Labels, Counter> = Family::default();
    for (labels, v) in values {
        f.get_or_create(&labels).inc_by(v);
    }
    r.register(name, help, f);
}

/// Registers a gauge family `name` with one gauge per `(labels, value)`.
pub fn gauges(r: &mut Registry, name: &str, help: &str, values: Vec<(Labels, i64)>) {
    let f: Family<Labels, Gauge> = Family::default();
    for (labels, v) in values {
        f.get_or_create(&labels).set(v);
    }
    r.register(name, help, f);
}

/// The text exposition of `r`.
pub fn text(r: &Registry) -> String {
    let mut out = String::new();
    // Writing to a String does not fail.
    let _ = encode(&mut out, r);
    out
}

/// One label.
pub fn label(name: &'static str, value: impl Into<String>) -> Labels {
    vec![(name, value.into())]
}

impl Counters {
    /// Registers the tick and row counters, with the number of `symbols` with a last price.
    pub fn register(&self, r: &mut Registry, symbols: usize) {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        counters(
            r,
            "gostocks_ticks",
            "Ticks by outcome: accepted into the dataflow, rejected (bad price, size, symbol or time), late (too late to count), dead_letter (a Kafka record that did not decode).",
            vec![
                (label("outcome", "accepted"), get(&self.accepted)),
                (label("outcome", "rejected"), get(&self.rejected)),
                (label("outcome", "late"), get(&self.late)),
                (label("outcome", "dead_letter"), get(&self.dead_letters)),
            ],
        );
        counter(
            r,
            "gostocks_stats_rows",
            "Window stats changelog rows computed.",
            get(&self.stats_rows),
        );
        counter(
            r,
            "gostocks_bars",
            "Final bars computed.",
            get(&self.bar_rows),
        );
        counter(
            r,
            "gostocks_alert_events",
            "Alert events fired.",
            get(&self.alert_events),
        );
        gauge(
            r,
            "gostocks_symbols",
            "Symbols with a last price.",
            symbols as i64,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_by_outcome_are_one_family() {
        let c = Counters::default();
        c.accepted.fetch_add(5, Ordering::Relaxed);
        c.late.fetch_add(2, Ordering::Relaxed);
        let mut r = Registry::default();
        c.register(&mut r, 3);
        let t = text(&r);
        assert!(t.contains("# TYPE gostocks_ticks counter\n"), "{t}");
        assert!(
            t.contains("gostocks_ticks_total{outcome=\"accepted\"} 5\n"),
            "{t}"
        );
        assert!(
            t.contains("gostocks_ticks_total{outcome=\"late\"} 2\n"),
            "{t}"
        );
        assert!(t.contains("\ngostocks_symbols 3\n"), "{t}");
    }
}
