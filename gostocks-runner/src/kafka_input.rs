//! `gostocks run --kafka`: ticks from a Kafka topic into the dataflow, one source per partition.
//!
//! A driver of [`KafkaSource`]: its events become the dataflow's batches, the ownership of
//! outputs and the source's status; what the sinks made durable is committed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use gostocks_connectors::kafka::{
    DLQ_TOPIC, Event, InstanceId, KafkaConfig, KafkaOptions, KafkaSource, Record, Share,
    TickEncoding, TickProducer,
};
use gostocks_core::{Symbol, Tick};

use crate::intake::{Intake, SourceTicks};
use crate::state::MarketState;

/// Where and what to consume.
pub struct KafkaInput {
    /// Bootstrap servers.
    pub brokers: String,
    /// The tick topic.
    pub topic: String,
    /// Consumer group.
    pub group: String,
    /// Record encoding.
    pub encoding: TickEncoding,
    /// The result grid (ns): a record's outputs belong to the grid time of its tick.
    pub resolution: u64,
    /// The consumer's `fetch.wait.max.ms`.
    pub fetch_wait_ms: u32,
    /// This runner's static membership id in the group (`None`: a dynamic member). Held for as
    /// long as the input runs, so that no other runner of this host claims it meanwhile.
    pub instance_id: Option<InstanceId>,
    /// The operator's librdkafka settings (security).
    pub options: KafkaOptions,
    /// In a timely cluster: this process's fixed share of the partitions (see [`Share`]).
    pub share: Option<Share>,
}

/// How often the records whose outputs are durable are committed.
const COMMIT_EVERY: Duration = Duration::from_secs(1);

/// Consumes until `stop`, on its own thread and runtime. Records that do not decode go to
/// [`DLQ_TOPIC`] with the reason; decoded ticks go to the worker that reads their partition.
///
/// Offsets are committed only once every output of their records is durably written (the
/// sinks confirm progress marks; see [`MarketState::durable`]). A partition this process has
/// not read before is replayed from its beginning, so that every window, bar EMA and alert
/// arming is rebuilt exactly; the outputs its committed records produced before are not
/// written again. The outputs of symbols whose partition another group member owns are not
/// written either.
///
/// With an instance id the consumer is a static group member (KIP-345): restarted after a crash
/// under the same id, it takes its assignment back at once. A consumer that holds no partition
/// while records wait that nobody consumes, for longer than the session timeout and
/// [`REJOIN_MARGIN`](gostocks_connectors::kafka::REJOIN_MARGIN), warns, leaves the group and
/// joins it again as a dynamic member (see [`Event::Watched`]). On `stop` it leaves the group,
/// so that its partitions move on at once.
pub fn run(
    input: KafkaInput,
    tx: Intake,
    state: Arc<MarketState>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let base = KafkaConfig::new(&input.brokers, &input.group)
            .with_fetch_wait_ms(input.fetch_wait_ms)
            .with_options(input.options);
        let dlq = TickProducer::new(&base, input.encoding)
            .context("creating the dead-letter producer")?;
        state.kafka.activate();
        let (topic, encoding, resolution) = (&input.topic, input.encoding, input.resolution);
        let mut source = match input.share {
            // In a cluster, a symbol's outputs are computed, and written, by the process its
            // worker is in, whoever read its partition: nothing is suppressed. Outputs written
            // before a restart are written again, and refused as duplicates (see the README).
            Some(share) => KafkaSource::sharing(base, topic, encoding, resolution, share),
            None => {
                state.ownership.activate();
                let id = input.instance_id.as_ref().map(|id| id.to_string());
                KafkaSource::new(base.with_instance_id(id), topic, encoding, resolution)
            }
        }
        .context("starting the kafka source")?;
        let ended = drive(&mut source, &dlq, &tx, &state, &stop).await;
        source.commit(state.durable());
        for p in source.leave().await {
            state.ownership.disown(p);
        }
        state.kafka.left();
        ended
    })
}

/// Hands the source's events on until `stop`, the source is gone or the dataflow stops
/// listening.
async fn drive(
    source: &mut KafkaSource,
    dlq: &TickProducer,
    tx: &Intake,
    state: &MarketState,
    stop: &AtomicBool,
) -> anyhow::Result<()> {
    let mut last_commit = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        if last_commit.elapsed() > COMMIT_EVERY {
            last_commit = Instant::now();
            source.commit(state.durable());
        }
        let Some(event) = source.next().await else {
            return Ok(());
        };
        let listening = match event {
            // Ownership changes take effect before any record of the new assignment. The
            // partitions reach the dataflow before any record of theirs too: a partition
            // announced holds event time back from then on, so a partition whose first records
            // come a fetch later than another's finds its ticks still on time.
            Event::Assigned { partitions } => {
                for a in &partitions {
                    state.ownership.own(a.partition);
                }
                state.kafka.set_assigned(partitions.len());
                let sent = partitions.iter().all(|a| {
                    tx.send(SourceTicks {
                        source: a.partition as u32,
                        ticks: Vec::new(),
                        retired: false,
                    })
                });
                tx.announced();
                sent
            }
            // Their outputs are another member's now.
            Event::Revoked { partitions } => {
                for &p in &partitions {
                    state.ownership.disown(p);
                }
                state.kafka.set_assigned(0);
                retire(tx, &partitions)
            }
            Event::Records { partition, records } => {
                let ticks = take(partition, records, dlq, state).await?;
                ticks.is_empty() || tx.send(SourceTicks::of(partition as u32, ticks))
            }
            Event::Watched(v) => {
                state.kafka.set_lag(source.lag());
                state.kafka.set_unassigned(v.unassigned, v.waiting, v.stuck);
                state.kafka.set_stalled(v.stalled);
                if v.rejoin {
                    source.commit(state.durable());
                    let gone = source.leave().await;
                    for &p in &gone {
                        state.ownership.disown(p);
                    }
                    state.kafka.left();
                    state.kafka.rejoined();
                    if !retire(tx, &gone) || !source.rejoin(stop).await? {
                        return Ok(());
                    }
                }
                true
            }
            Event::Idle => true,
        };
        if !listening {
            return Ok(());
        }
    }
    Ok(())
}

/// Tells the dataflow that `partitions` no longer take part in event time; false if it stopped
/// listening.
fn retire(tx: &Intake, partitions: &[i32]) -> bool {
    partitions.iter().all(|&p| {
        tx.send(SourceTicks {
            source: p as u32,
            ticks: Vec::new(),
            retired: true,
        })
    })
}

/// The ticks of `partition`'s `records`, each noted in the ownership of outputs first; records
/// that did not decode go to the dead-letter topic, unless replayed (they went before).
async fn take(
    partition: i32,
    records: Vec<Record>,
    dlq: &TickProducer,
    state: &MarketState,
) -> anyhow::Result<Vec<Tick>> {
    let mut ticks = Vec::with_capacity(records.len());
    for record in records {
        match record.tick {
            Ok(tick) => {
                if let Ok(symbol) = Symbol::new(&tick.symbol) {
                    let replayed = record.replayed.then_some(record.grid);
                    state.ownership.saw(symbol, partition, replayed);
                }
                ticks.push(tick);
            }
            Err(rejected) if !record.replayed => {
                state.counters.dead_letters.fetch_add(1, Ordering::Relaxed);
                let reason = rejected.reason.to_string();
                tracing::warn!(partition, offset = record.offset, %reason, "record to the dead-letter topic");
                dlq.dead_letter(
                    DLQ_TOPIC,
                    rejected.key.as_deref(),
                    &rejected.payload,
                    &reason,
                )
                .await?;
            }
            Err(_) => {}
        }
    }
    Ok(ticks)
}
