//! What the parts of a running `gostocks run` share, each part its own type: the read model the
//! servers answer from ([`ReadModel`]), the intake's counters ([`Counters`]), the sinks' progress
//! ([`Progress`]), which outputs a Kafka group member writes ([`Ownership`]) and how its consumer
//! stands ([`KafkaStatus`]). Readiness and `/metrics` gather them here.

use std::sync::Arc;

use gostocks_connectors::kafka::Ownership;
use gostocks_core::stats::AnalyticsConfig;
use gostocks_core::watermark::grid_ceil;

use crate::counters::Counters;
use crate::kafka_status::KafkaStatus;
use crate::read_model::ReadModel;
use crate::sinks::{Output, Progress};

/// Shared between the intake, the dataflow, the sinks and the servers.
pub struct MarketState {
    /// What REST and gRPC answer from.
    pub read: Arc<ReadModel>,
    /// Ticks and rows counted.
    pub counters: Counters,
    /// How far the sinks have written.
    pub progress: Arc<Progress>,
    /// Which outputs a Kafka consumer of a shared group must not write (see [`Ownership`]).
    pub ownership: Ownership,
    /// How the Kafka source stands in its consumer group.
    pub kafka: KafkaStatus,
    /// The notification worker's counters.
    pub notify: crate::notify::worker::Metrics,
    /// In a timely cluster: how far each other process's sinks have written.
    pub peers: PeerProgress,
    /// With a quote feed (`--quotes-topic`): the symbols it has written quote statistics for;
    /// `None` without one.
    pub quote_symbols: std::sync::Mutex<Option<std::collections::BTreeSet<gostocks_core::Symbol>>>,
    bar_ns: Vec<u64>,
    resolution: u64,
}

impl MarketState {
    /// Empty state for `config`'s windows and bars, with a live tick feed that buffers
    /// `feed_capacity` ticks per slow subscriber.
    pub fn new(feed_capacity: usize, config: &AnalyticsConfig) -> MarketState {
        MarketState {
            read: Arc::new(ReadModel::new(feed_capacity, config)),
            counters: Counters::default(),
            progress: Arc::default(),
            ownership: Ownership::default(),
            kafka: KafkaStatus::default(),
            notify: Default::default(),
            peers: PeerProgress::default(),
            quote_symbols: std::sync::Mutex::new(None),
            bar_ns: config.bars.iter().map(|b| b.ns()).collect(),
            resolution: config.resolution.ns(),
        }
    }

    /// Every output of a grid time below this is written by every sink (in a cluster: by
    /// every sink of every process, since a record read here may have its outputs written by
    /// another process).
    pub fn durable(&self) -> u64 {
        self.progress.durable().min(self.peers.durable())
    }

    /// Whether the shared sinks must not be handed `output`: it was written before a restart,
    /// or belongs to a partition another consumer owns now (see [`Ownership`]).
    pub fn suppressed(&self, output: &Output) -> bool {
        match output {
            Output::Price(sym, p) => self.ownership.suppress(sym, p.time_ns),
            Output::Stats(row) => self.ownership.suppress(&row.symbol, row.time_ns),
            Output::Bar(row) => self.ownership.suppress(
                &row.symbol,
                row.start_ns + self.bar_ns.get(row.bar as usize).copied().unwrap_or(0),
            ),
            Output::Event(e) => self
                .ownership
                .suppress(&e.symbol, grid_ceil(e.time_ns, self.resolution)),
            Output::Mark(_) => false,
        }
    }

    /// Whether this runner does its part of the pipeline: `Ok` if so, else why not (for
    /// `/readyz`). With `--kafka`, not ready while the consumer has not yet joined its group, nor
    /// while it has held no partition for longer than the bound (see [`KafkaStatus`]) although
    /// records of the topic wait and nobody consumes them. Without `--kafka`, always ready.
    ///
    /// Not ready either while a sink has stopped on a definite failure, or has been failing
    /// transiently for longer than its bound (`--sink-unready-after`); the reason names the sink.
    ///
    /// gRPC health reports the same for the server as a whole (service `""`).
    pub fn readiness(&self) -> Result<(), String> {
        self.kafka.readiness()?;
        self.progress.readiness()
    }

    /// The Prometheus text exposition of the counters, the consumer's state, the sinks' and
    /// the notifications' (see [`crate::metrics`]).
    pub fn metrics(&self) -> String {
        let mut r = prometheus_client::registry::Registry::default();
        self.counters.register(&mut r, self.read.symbols().len());
        self.kafka.register(&mut r);
        self.progress.register_metrics(&mut r);
        self.notify.register(&mut r);
        crate::metrics::text(&r)
    }
}

/// In a timely cluster, the durable mark of each process's sinks, as they last said (see
/// [`MarketState::durable`]). Empty outside a cluster.
#[derive(Debug, Default)]
pub struct PeerProgress {
    marks: std::sync::OnceLock<Vec<std::sync::atomic::AtomicU64>>,
}

impl PeerProgress {
    /// A cluster of `processes` processes, none of whose sinks has written anything yet.
    pub fn join(&self, processes: usize) {
        let _ = self.marks.set(
            (0..processes)
                .map(|_| std::sync::atomic::AtomicU64::new(0))
                .collect(),
        );
    }

    /// Process `process` says its sinks have written every output below `durable`.
    pub fn said(&self, process: usize, durable: u64) {
        if let Some(cell) = self.marks.get().and_then(|m| m.get(process)) {
            cell.fetch_max(durable, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// The least of what the processes said (`u64::MAX` outside a cluster).
    pub fn durable(&self) -> u64 {
        self.marks.get().map_or(u64::MAX, |m| {
            m.iter()
                .map(|c| c.load(std::sync::atomic::Ordering::Relaxed))
                .min()
                .unwrap_or(u64::MAX)
        })
    }
}
