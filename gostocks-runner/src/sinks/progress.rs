//! How far the sinks have written: the progress marks handed on to them, each sink's
//! confirmation and health. Read by the Kafka source (what it may commit), `/readyz`, gRPC
//! health, `/metrics` and the shutdown.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::driver::{METRICS_HEADERS, SinkHealth};

/// The sinks' progress.
#[derive(Debug, Default)]
pub struct Progress {
    /// The latest mark handed on: every output of a grid time below it is in every sink's queue.
    handed_on: AtomicU64,
    /// Per sink: its health, and the grid time below which it has written every output.
    sinks: Mutex<Vec<(Arc<SinkHealth>, Arc<AtomicU64>)>>,
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

    /// Every output below `t` is in every sink's queue.
    pub fn hand_on(&self, t: u64) {
        self.handed_on.fetch_max(t, Ordering::Relaxed);
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

    /// Every sink's state, queue depth and counters, one Prometheus family after another.
    pub fn metrics(&self) -> String {
        let lines: Vec<_> = self.sinks().iter().map(|(s, _)| s.metrics()).collect();
        let mut out = String::new();
        if lines.is_empty() {
            return out;
        }
        for (i, header) in METRICS_HEADERS.iter().enumerate() {
            out.push_str(header);
            for l in &lines {
                out.push_str(&l[i]);
            }
        }
        out
    }
}
