//! A look at a topic's offsets every few seconds, for the [`Watchdog`](super::watchdog::Watchdog).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use super::config::KafkaConfig;
use super::lock;
use super::watchdog::PartitionOffsets;

/// How often the offsets are looked at.
const CHECK_EVERY: Duration = Duration::from_secs(5);

/// How long one look at the offsets may take.
const OFFSETS_TIMEOUT: Duration = Duration::from_secs(5);

/// The thread that runs [`sample_offsets`], until dropped.
pub(crate) struct Sampler {
    done: Arc<AtomicBool>,
    /// The latest look at the topic's offsets, not yet taken.
    latest: Arc<Mutex<Option<Vec<PartitionOffsets>>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sampler {
    /// Starts looking at the offsets of `topic` for `config`'s group.
    pub(crate) fn spawn(config: &KafkaConfig, topic: &str) -> std::io::Result<Sampler> {
        let done = Arc::new(AtomicBool::new(false));
        let latest = Arc::default();
        let (config, topic, to, stop) = (
            config.clone(),
            topic.to_owned(),
            Arc::clone(&latest),
            Arc::clone(&done),
        );
        let thread = std::thread::Builder::new()
            .name("kafka-offsets".into())
            .spawn(move || sample_offsets(&config, &topic, &to, &stop))?;
        Ok(Sampler {
            done,
            latest,
            thread: Some(thread),
        })
    }

    /// The latest look at the offsets, once.
    pub(crate) fn take(&self) -> Option<Vec<PartitionOffsets>> {
        lock(&self.latest).take()
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Looks at the offsets of `topic` every [`CHECK_EVERY`], with a client of its own (outside the
/// group, so that a slow broker holds up no consumption), until `done`; each look goes to `to`.
fn sample_offsets(
    config: &KafkaConfig,
    topic: &str,
    to: &Mutex<Option<Vec<PartitionOffsets>>>,
    done: &AtomicBool,
) {
    let client: BaseConsumer = match config.consumer().create() {
        Ok(client) => client,
        Err(error) => {
            tracing::warn!(%error, "cannot watch the topic's offsets");
            return;
        }
    };
    while !done.load(Ordering::Relaxed) {
        match offsets(&client, topic) {
            Ok(offsets) => *lock(to) = Some(offsets),
            Err(error) => tracing::debug!(%error, "reading the topic's offsets"),
        }
        let next = Instant::now() + CHECK_EVERY;
        while Instant::now() < next && !done.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Per partition of `topic`: the group's committed offset and the low and high watermarks.
fn offsets(
    consumer: &BaseConsumer,
    topic: &str,
) -> rdkafka::error::KafkaResult<Vec<PartitionOffsets>> {
    let metadata = consumer.fetch_metadata(Some(topic), OFFSETS_TIMEOUT)?;
    let mut tpl = TopicPartitionList::new();
    for t in metadata.topics() {
        for p in t.partitions() {
            tpl.add_partition(topic, p.id());
        }
    }
    let committed = consumer.committed_offsets(tpl, OFFSETS_TIMEOUT)?;
    committed
        .elements()
        .iter()
        .map(|e| {
            let (low, high) = consumer.fetch_watermarks(topic, e.partition(), OFFSETS_TIMEOUT)?;
            Ok(PartitionOffsets {
                partition: e.partition(),
                committed: match e.offset() {
                    Offset::Offset(o) => Some(o),
                    _ => None,
                },
                low,
                high,
            })
        })
        .collect()
}
