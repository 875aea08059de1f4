//! How far the sinks have written: the progress marks handed on to them, each sink's
//! confirmation and health. Read by the Kafka source (what it may commit), `/readyz`, gRPC
//! health, `/metrics` and the shutdown.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::driver::SinkHealth;
use crate::metrics::{self, Histograms, label};

/// The sinks' progress.
#[derive(Debug)]
pub struct Progress {
    /// The latest mark handed on: every output of a grid time below it is in every sink's queue.
    handed_on: AtomicU64,
    /// Per sink: its health, and the grid time below which it has written every output.
    sinks: Mutex<Vec<(Arc<SinkHealth>, Arc<AtomicU64>)>>,
    /// Per sink: the tick-to-sink latency.
    latency: Histograms,
    /// The wall clock minus the watermark, at each mark handed on.
    event_time_lag: Histogram,
}

impl Default for Progress {
    fn default() -> Progress {
        Progress {
            handed_on: AtomicU64::new(0),
            sinks: Mutex::default(),
            latency: metrics::histograms(),
            event_time_lag: metrics::latency_histogram(),
        }
    }
}

impl Progress {
    fn sinks(&self) -> std::sync::MutexGuard<'_, Vec<(Arc<SinkHealth>, Arc<AtomicU64>)>> {
        self.sinks.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new sink, shown in readiness and metrics: its confirmation cell, which its driver raises.
    pub fn register(&self, health: Arc<SinkHealth>) -> Arc<AtomicU64> {
        let confirmed = Arc::new(AtomicU64::new(0));
        self.sinks().push((health, Arc::clone(&confirmed)));
        confirmed
    }

    /// The tick-to-sink latency histogram of sink `name`.
    pub fn latency_of(&self, name: &str) -> Histogram {
        self.latency.get_or_create_owned(&label("sink", name))
    }

    /// Every output below `t` is in every sink's queue: `t` is the watermark, whose distance
    /// from the wall clock is observed (the event-time lag).
    pub fn hand_on(&self, t: u64) {
        self.handed_on.fetch_max(t, Ordering::Relaxed);
        if t > 0 {
            self.event_time_lag.observe(metrics::seconds_since(t));
        }
    }

    /// Every output of a grid time below this is written by every sink.
    pub fn durable(&self) -> u64 {
        let handed = self.handed_on.load(Ordering::Relaxed);
        self.sinks()
            .iter()
            .map(|(_, c)| c.load(Ordering::Relaxed))
            .min()
            .map_or(handed, |m| m.min(handed))
    }

    /// Whether every sink has confirmed every mark handed on so far (at shutdown: the sinks
    /// have drained).
    pub fn caught_up(&self) -> bool {
        self.durable() >= self.handed_on.load(Ordering::Relaxed)
    }

    /// `Ok` unless a sink has stopped on a definite failure, or has been failing transiently
    /// for longer than its bound: then why, naming the sink.
    pub fn readiness(&self) -> Result<(), String> {
        self.sinks().iter().try_for_each(|(s, _)| s.readiness())
    }

    /// Every registered sink's health, in registration order (`GET /status`).
    pub fn each(&self) -> Vec<Arc<SinkHealth>> {
        self.sinks().iter().map(|(s, _)| Arc::clone(s)).collect()
    }

    /// Registers every sink's state, queue and counters, the tick-to-sink latencies and the
    /// event-time lag.
    pub fn register_metrics(&self, r: &mut Registry) {
        r.register(
            "gostocks_tick_to_sink_seconds",
            "Tick-to-sink latency per sink: the wall clock when a price, stats row or alert event is written minus its event time.",
            self.latency.clone(),
        );
        r.register(
            "gostocks_event_time_lag_seconds",
            "The wall clock minus the watermark (the grid time below which every output is final), observed at each progress mark.",
            self.event_time_lag.clone(),
        );
        let snaps: Vec<_> = self.sinks().iter().map(|(s, _)| s.snapshot()).collect();
        let per = |f: &dyn Fn(&super::driver::SinkSnapshot) -> u64| {
            snaps
                .iter()
                .map(|s| (label("sink", s.name.clone()), f(s)))
                .collect::<Vec<_>>()
        };
        let gauge = |f: &dyn Fn(&super::driver::SinkSnapshot) -> u64| {
            per(f).into_iter().map(|(l, v)| (l, v as i64)).collect()
        };
        metrics::gauges(
            r,
            "gostocks_sink_state",
            "How each sink stands: 0 ok, 1 degraded (retrying), 2 failed (stopped).",
            gauge(&|s| s.state),
        );
        metrics::gauges(
            r,
            "gostocks_sink_queue_depth",
            "Outputs waiting in each sink's queue.",
            gauge(&|s| s.depth as u64),
        );
        metrics::gauges(
            r,
            "gostocks_sink_queue_capacity",
            "The bound of each sink's queue.",
            gauge(&|s| s.capacity as u64),
        );
        metrics::counters(
            r,
            "gostocks_sink_retries",
            "Writes each sink retried after a transient failure.",
            per(&|s| s.retries),
        );
        metrics::counters(
            r,
            "gostocks_sink_outputs",
            "Outputs each sink has written (marks included).",
            per(&|s| s.written),
        );
    }
}
