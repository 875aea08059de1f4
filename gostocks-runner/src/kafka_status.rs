//! How the Kafka source stands in its consumer group, for `/readyz` and `/metrics`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// How the Kafka source stands in its consumer group: written by the Kafka input, read by `/readyz`
/// (`MarketState::readiness`) and `/metrics`.
///
/// A consumer that holds no partition while records of its topic wait that nobody consumes
/// (their committed offsets stand still), for longer than a bound, is stuck: a broker that never
/// evicted a dead member, or gave this one an empty assignment. The input then warns, leaves the
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
    /// Per partition held: records not read yet.
    lag: std::sync::Mutex<Vec<(i32, u64)>>,
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

    /// `Ok` unless the source consumes Kafka and has not joined its group or is stuck: why not
    /// ready (for `/readyz`).
    pub(crate) fn readiness(&self) -> Result<(), String> {
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

    /// Each held partition's consumer lag, in records (see [`KafkaSource::lag`]).
    ///
    /// [`KafkaSource::lag`]: gostocks_connectors::kafka::KafkaSource::lag
    pub fn set_lag(&self, lag: Vec<(i32, u64)>) {
        *self.lag.lock().unwrap_or_else(|e| e.into_inner()) = lag;
    }

    /// Registers the source's gauges and counters (nothing unless it consumes Kafka).
    pub(crate) fn register(&self, r: &mut prometheus_client::registry::Registry) {
        use crate::metrics::{counter, gauge, gauge_f64, gauges, label};
        if !self.active.load(Ordering::Relaxed) {
            return;
        }
        let lag = self.lag.lock().unwrap_or_else(|e| e.into_inner()).clone();
        gauges(
            r,
            "gostocks_kafka_consumer_lag",
            "Records of each partition this runner holds that it has not read yet (the partition's end minus the next offset to read), as of the last look at the offsets (every 5 s).",
            lag.into_iter()
                .map(|(p, n)| (label("partition", p.to_string()), n as i64))
                .collect(),
        );
        gauge(
            r,
            "gostocks_kafka_assigned_partitions",
            "Partitions of the tick topic this runner consumes.",
            self.assigned() as i64,
        );
        gauge_f64(
            r,
            "gostocks_kafka_unassigned_seconds",
            "How long this runner has held no partition while records of the topic wait unconsumed (0 otherwise).",
            self.unassigned_ms.load(Ordering::Relaxed) as f64 / 1000.0,
        );
        gauge(
            r,
            "gostocks_kafka_unconsumed_records",
            "Records beyond the group's committed offsets on the partitions this runner does not hold.",
            self.waiting.load(Ordering::Relaxed) as i64,
        );
        gauge(
            r,
            "gostocks_kafka_stalled_partitions",
            "Partitions of the tick topic this runner does not hold whose records wait while nobody has consumed any for longer than the bound.",
            self.stalled.load(Ordering::Relaxed) as i64,
        );
        counter(
            r,
            "gostocks_kafka_rejoins",
            "Times this runner left and rejoined its consumer group because it held no partition while records waited that nobody consumed.",
            self.rejoins(),
        );
    }
}
