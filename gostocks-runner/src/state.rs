//! What the parts of a running `gostocks run` share, each part its own type: the read model the
//! servers answer from ([`ReadModel`]), the intake's counters ([`Counters`]), the sinks' progress
//! ([`Progress`]), which outputs a Kafka group member writes ([`Ownership`]) and how its consumer
//! stands ([`KafkaStatus`]). Readiness and `/metrics` gather them here.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use gostocks_core::Symbol;
use gostocks_core::feed::grid_ceil;
use gostocks_core::stats::AnalyticsConfig;

use crate::counters::Counters;
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
            bar_ns: config.bars.iter().map(|b| b.ns()).collect(),
            resolution: config.resolution.ns(),
        }
    }

    /// Every output of a grid time below this is written by every sink.
    pub fn durable(&self) -> u64 {
        self.progress.durable()
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

    /// The Prometheus text exposition of the counters, the consumer's state and the sinks'.
    pub fn metrics(&self) -> String {
        let symbols = self.read.symbols().len();
        format!(
            "{}{}{}",
            self.counters.metrics(symbols),
            self.kafka.metrics(),
            self.progress.metrics()
        )
    }
}

/// Which symbols' outputs this process writes, when it consumes Kafka in a group: a symbol's
/// outputs are written by the consumer that owns its partition, and after a restart the
/// outputs already written before it (up to the grid time the replayed, committed records
/// reached) are not written again.
#[derive(Default)]
pub struct Ownership {
    inner: std::sync::Mutex<Owned>,
}

#[derive(Default)]
struct Owned {
    active: bool,
    partition_of: HashMap<Symbol, i32>,
    owned: std::collections::HashSet<i32>,
    written: HashMap<i32, u64>,
}

impl Ownership {
    fn lock(&self) -> std::sync::MutexGuard<'_, Owned> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Turns ownership checks on (Kafka source).
    pub fn activate(&self) {
        self.lock().active = true;
    }

    /// `partition` is assigned to this consumer.
    pub fn own(&self, partition: i32) {
        self.lock().owned.insert(partition);
    }

    /// `partition` was taken away from this consumer.
    pub fn disown(&self, partition: i32) {
        let mut o = self.lock();
        o.owned.remove(&partition);
        o.written.remove(&partition);
    }

    /// A record of `symbol` came from `partition`; if it is a replayed record whose outputs
    /// were written before (its offset is below the committed one), outputs up to its grid
    /// time are not written again.
    pub fn saw(&self, symbol: Symbol, partition: i32, replayed_grid: Option<u64>) {
        let mut o = self.lock();
        o.partition_of.insert(symbol, partition);
        if let Some(g) = replayed_grid {
            let w = o.written.entry(partition).or_insert(0);
            *w = (*w).max(g);
        }
    }

    /// Whether an output of `symbol` at grid time `time` must not be written.
    pub fn suppress(&self, symbol: &Symbol, time: u64) -> bool {
        let o = self.lock();
        if !o.active {
            return false;
        }
        let Some(p) = o.partition_of.get(symbol) else {
            return false;
        };
        !o.owned.contains(p) || o.written.get(p).is_some_and(|w| time <= *w)
    }
}

/// How the Kafka source stands in its consumer group: written by the feed, read by `/readyz`
/// ([`MarketState::readiness`]) and `/metrics`.
///
/// A consumer that holds no partition while records of its topic wait that nobody consumes
/// (their committed offsets stand still), for longer than a bound, is stuck: a broker that never
/// evicted a dead member, or gave this one an empty assignment. The feed then warns, leaves the
/// group and joins it again; until it holds partitions again, the runner is not ready. The
/// bound is the consumer's session timeout plus 15 s. Partitions of others that nobody consumes,
/// while this consumer holds some, are only reported (`gostocks_kafka_stalled_partitions`): it
/// does its part, and leaving would hand its own partitions over.
#[derive(Debug, Default)]
pub struct KafkaStatus {
    active: AtomicBool,
    joined: AtomicBool,
    stuck: AtomicBool,
    assigned: AtomicU64,
    unassigned_ms: AtomicU64,
    waiting: AtomicU64,
    stalled: AtomicU64,
    rejoins: AtomicU64,
}

impl KafkaStatus {
    /// The source consumes Kafka.
    pub fn activate(&self) {
        self.active.store(true, Ordering::Relaxed);
    }

    /// The group gave the consumer `partitions` partitions (perhaps none); holding some, it is
    /// not stuck.
    pub fn set_assigned(&self, partitions: usize) {
        self.assigned.store(partitions as u64, Ordering::Relaxed);
        self.joined.store(true, Ordering::Relaxed);
        if partitions > 0 {
            self.set_unassigned(Duration::ZERO, 0, false);
        }
    }

    /// The consumer left the group (to join it again, or to stop).
    pub fn left(&self) {
        self.assigned.store(0, Ordering::Relaxed);
        self.joined.store(false, Ordering::Relaxed);
    }

    /// Partitions the consumer holds now.
    pub fn assigned(&self) -> u64 {
        self.assigned.load(Ordering::Relaxed)
    }

    /// The consumer has held no partition for `unassigned` while `waiting` records wait
    /// unconsumed (zero and zero: it holds some, or nothing waits); `stuck` past the bound.
    pub fn set_unassigned(&self, unassigned: Duration, waiting: u64, stuck: bool) {
        self.unassigned_ms
            .store(unassigned.as_millis() as u64, Ordering::Relaxed);
        self.waiting.store(waiting, Ordering::Relaxed);
        self.stuck.store(stuck, Ordering::Relaxed);
    }

    /// `partitions` partitions this consumer does not hold have records waiting that nobody
    /// has consumed for longer than the bound.
    pub fn set_stalled(&self, partitions: usize) {
        self.stalled.store(partitions as u64, Ordering::Relaxed);
    }

    /// The consumer left the group and joins it again, because it was stuck.
    pub fn rejoined(&self) {
        self.rejoins.fetch_add(1, Ordering::Relaxed);
    }

    /// Times the consumer left and rejoined its group because it was stuck.
    pub fn rejoins(&self) -> u64 {
        self.rejoins.load(Ordering::Relaxed)
    }

    fn readiness(&self) -> Result<(), String> {
        if !self.active.load(Ordering::Relaxed) {
            return Ok(());
        }
        if self.stuck.load(Ordering::Relaxed) {
            return Err(format!(
                "kafka: no partition assigned for {} s while {} records wait unconsumed",
                self.unassigned_ms.load(Ordering::Relaxed) / 1000,
                self.waiting.load(Ordering::Relaxed)
            ));
        }
        if !self.joined.load(Ordering::Relaxed) {
            return Err("kafka: joining the consumer group".into());
        }
        Ok(())
    }

    fn metrics(&self) -> String {
        if !self.active.load(Ordering::Relaxed) {
            return String::new();
        }
        let assigned = self.assigned();
        let unassigned = self.unassigned_ms.load(Ordering::Relaxed) as f64 / 1000.0;
        let waiting = self.waiting.load(Ordering::Relaxed);
        let rejoins = self.rejoins();
        let stalled = self.stalled.load(Ordering::Relaxed);
        format!(
            "# HELP gostocks_kafka_assigned_partitions Partitions of the tick topic this runner consumes.\n# TYPE gostocks_kafka_assigned_partitions gauge\ngostocks_kafka_assigned_partitions {assigned}\n\
             # HELP gostocks_kafka_unassigned_seconds How long this runner has held no partition while records of the topic wait unconsumed (0 otherwise).\n# TYPE gostocks_kafka_unassigned_seconds gauge\ngostocks_kafka_unassigned_seconds {unassigned}\n\
             # HELP gostocks_kafka_unconsumed_records Records beyond the group's committed offsets on the partitions this runner does not hold.\n# TYPE gostocks_kafka_unconsumed_records gauge\ngostocks_kafka_unconsumed_records {waiting}\n\
             # HELP gostocks_kafka_stalled_partitions Partitions of the tick topic this runner does not hold whose records wait while nobody has consumed any for longer than the bound.\n# TYPE gostocks_kafka_stalled_partitions gauge\ngostocks_kafka_stalled_partitions {stalled}\n\
             # HELP gostocks_kafka_rejoins_total Times this runner left and rejoined its consumer group because it held no partition while records waited that nobody consumed.\n# TYPE gostocks_kafka_rejoins_total counter\ngostocks_kafka_rejoins_total {rejoins}\n"
        )
    }
}
