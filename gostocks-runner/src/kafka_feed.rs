//! `gostocks run --kafka`: ticks from a Kafka topic into the dataflow, one source per partition.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::SyncSender;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use gostocks_connectors::kafka::{
    DLQ_TOPIC, KafkaConfig, TickConsumer, TickEncoding, TickProducer, decode_tick,
};
use rdkafka::Message;
use rdkafka::consumer::{CommitMode, Consumer};

use crate::dataflow::Batch;
use crate::state::MarketState;

/// Where and what to consume.
pub struct KafkaFeed {
    /// Bootstrap servers.
    pub brokers: String,
    /// The tick topic.
    pub topic: String,
    /// Consumer group.
    pub group: String,
    /// Record encoding.
    pub encoding: TickEncoding,
}

/// Consumes until `stop`, on its own thread and runtime. Records that do not decode go to
/// [`DLQ_TOPIC`] with the reason; decoded ticks go to the dataflow, tagged with their partition.
/// Consumed positions are committed every second.
pub fn run(
    feed: KafkaFeed,
    tx: SyncSender<Batch>,
    state: Arc<MarketState>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let config = KafkaConfig::new(&feed.brokers, &feed.group);
        let consumer = TickConsumer::subscribe(&config, &[&feed.topic]).context("joining the consumer group")?;
        let dlq = TickProducer::new(&config, feed.encoding).context("creating the dead-letter producer")?;
        // Announce every partition before the first record, so that none of them is late merely
        // for being read after another.
        let metadata = consumer
            .consumer
            .fetch_metadata(Some(&feed.topic), Duration::from_secs(30))
            .with_context(|| format!("reading the metadata of topic {}", feed.topic))?;
        let partitions = metadata.topics().iter().map(|t| t.partitions().len()).sum::<usize>();
        for p in 0..partitions {
            if tx.send(Batch { source: p as u32, ticks: Vec::new() }).is_err() {
                return Ok(());
            }
        }
        tracing::info!(topic = %feed.topic, group = %feed.group, partitions, "consuming ticks from kafka");
        let mut stream = consumer.consumer.stream();
        let mut last_commit = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            let Ok(next) = tokio::time::timeout(Duration::from_millis(200), stream.next()).await else { continue };
            let msg = match next {
                Some(Ok(msg)) => msg,
                Some(Err(error)) => {
                    // Transient broker trouble: librdkafka reconnects by itself; say so and go on.
                    tracing::warn!(%error, "kafka consumer error");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
                None => break,
            };
            let payload = msg.payload().unwrap_or_default();
            match decode_tick(payload, feed.encoding) {
                Ok(tick) => {
                    let batch = Batch { source: msg.partition() as u32, ticks: vec![tick] };
                    if tx.send(batch).is_err() {
                        break;
                    }
                }
                Err(reason) => {
                    state.dead_letters.fetch_add(1, Ordering::Relaxed);
                    let reason = reason.to_string();
                    tracing::warn!(partition = msg.partition(), offset = msg.offset(), %reason, "record to the dead-letter topic");
                    dlq.dead_letter(DLQ_TOPIC, msg.key(), payload, &reason).await?;
                }
            }
            if last_commit.elapsed() > Duration::from_secs(1) {
                let _ = consumer.consumer.commit_consumer_state(CommitMode::Async);
                last_commit = Instant::now();
            }
        }
        let _ = consumer.consumer.commit_consumer_state(CommitMode::Sync);
        Ok(())
    })
}
