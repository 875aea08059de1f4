//! `gostocks run --kafka`: ticks from a Kafka topic into the dataflow, one source per partition.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::{FutureExt, StreamExt};
use gostocks_connectors::kafka::{DLQ_TOPIC, KafkaConfig, TickEncoding, TickProducer};
use gostocks_connectors::limits::{MAX_RECORD_BYTES, decode_record};
use gostocks_core::feed::grid_ceil;
use rdkafka::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::dataflow::{Batch, Feeds};
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
    /// The result grid (ns): a record's outputs belong to the grid time of its tick.
    pub resolution: u64,
    /// The consumer's `fetch.wait.max.ms`.
    pub fetch_wait_ms: u32,
}

/// What the feed knows of one assigned partition.
struct Part {
    /// The committed offset found at assignment: records below it are replays, whose outputs
    /// were written before.
    replay_until: i64,
    /// Records handed to the dataflow and not yet committed: (offset, grid time).
    pending: VecDeque<(i64, u64)>,
}

/// Consumes until `stop`, on its own thread and runtime. Records that do not decode go to
/// [`DLQ_TOPIC`] with the reason; decoded ticks go to the worker that reads their partition.
///
/// Offsets are committed only once every output of their records is durably written (the
/// sinks confirm progress marks; see [`MarketState::durable`]). A partition this process has
/// not read before is replayed from its beginning, so that every window, bar EMA and alert
/// arming is rebuilt exactly; the outputs its committed records produced before are not
/// written again. The outputs of symbols whose partition another group member owns are not
/// written either.
pub fn run(
    feed: KafkaFeed,
    tx: Feeds,
    state: Arc<MarketState>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let config = KafkaConfig::new(&feed.brokers, &feed.group).with_fetch_wait_ms(feed.fetch_wait_ms);
        let rewind = Rewind {
            state: Arc::clone(&state),
            committed: Arc::default(),
            processed: Arc::default(),
            assigned: Arc::default(),
        };
        let (committed, processed_shared) = (Arc::clone(&rewind.committed), Arc::clone(&rewind.processed));
        let assigned = Arc::clone(&rewind.assigned);
        let consumer: StreamConsumer<Rewind> = config
            .consumer()
            .create_with_context(rewind)
            .context("creating the kafka consumer")?;
        consumer.subscribe(&[&feed.topic]).context("joining the consumer group")?;
        let consumer = &consumer;
        let dlq = TickProducer::new(&config, feed.encoding).context("creating the dead-letter producer")?;
        state.ownership.activate();
        // Partitions are announced to the dataflow as they are assigned, before their first
        // record, so that none is late merely for being read after another.
        let metadata = consumer
            .fetch_metadata(Some(&feed.topic), Duration::from_secs(30))
            .with_context(|| format!("reading the metadata of topic {}", feed.topic))?;
        let partitions = metadata.topics().iter().map(|t| t.partitions().len()).sum::<usize>();
        tracing::info!(topic = %feed.topic, group = %feed.group, partitions, "consuming ticks from kafka");
        let mut parts: HashMap<i32, Part> = HashMap::new();
        // The last offset this process handed on, per partition it ever read.
        let mut processed: HashMap<i32, i64> = HashMap::new();
        let mut stream = consumer.stream();
        let mut last_commit = Instant::now();
        // Assignment changes reach the dataflow before any record of theirs: a partition
        // announced holds event time back from then on, so a partition whose first records come
        // a fetch later than another's finds its ticks still on time.
        let announce = |tx: &Feeds| {
            let changes: Vec<(i32, bool)> = std::mem::take(&mut *lock(&assigned));
            changes.into_iter().all(|(p, now_mine)| {
                tx.send(Batch { source: p as u32, ticks: Vec::new(), retired: !now_mine })
            })
        };
        while !stop.load(Ordering::Relaxed) {
            if !announce(&tx) {
                return Ok(());
            }
            if last_commit.elapsed() > Duration::from_secs(1) {
                last_commit = Instant::now();
                commit_durable(consumer, &feed.topic, &mut parts, state.durable());
                // Partitions taken away by a rebalance: their outputs are another member's now.
                if let Ok(assigned) = consumer.assignment() {
                    let mine: HashSet<i32> = assigned.elements().iter().map(|e| e.partition()).collect();
                    parts.retain(|p, _| {
                        let keep = mine.contains(p);
                        if !keep {
                            tracing::info!(partition = p, "partition revoked");
                            state.ownership.disown(*p);
                        }
                        keep
                    });
                }
            }
            let Ok(next) = tokio::time::timeout(Duration::from_millis(200), stream.next()).await else { continue };
            let first = match next {
                Some(Ok(msg)) => msg,
                Some(Err(error)) => {
                    // Transient broker trouble: librdkafka reconnects by itself; say so and go on.
                    tracing::warn!(%error, "kafka consumer error");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
                None => break,
            };
            // Whatever else is already fetched goes in the same hand-over: one batch per
            // partition instead of one per tick.
            let mut msgs = vec![first];
            while msgs.len() < 4096 {
                match stream.next().now_or_never() {
                    Some(Some(Ok(msg))) => msgs.push(msg),
                    _ => break,
                }
            }
            let mut batches: HashMap<i32, Vec<gostocks_core::Tick>> = HashMap::new();
            for msg in &msgs {
                let (p, offset) = (msg.partition(), msg.offset());
                let part = parts.entry(p).or_insert_with(|| {
                    // Read before in this process: its state is here, nothing to replay.
                    let replay_until = if processed.contains_key(&p) {
                        0
                    } else {
                        lock(&committed).get(&p).copied().unwrap_or(0)
                    };
                    if replay_until > 0 {
                        tracing::info!(partition = p, committed = replay_until, "replaying the partition from its beginning to rebuild state");
                    }
                    state.ownership.own(p);
                    Part { replay_until, pending: VecDeque::new() }
                });
                // Already handed on before a rebalance gave the partition back.
                if processed.get(&p).is_some_and(|&done| offset <= done) {
                    continue;
                }
                processed.insert(p, offset);
                let payload = msg.payload().unwrap_or_default();
                match decode_record(payload, feed.encoding, MAX_RECORD_BYTES) {
                    Ok(tick) => {
                        let grid = grid_ceil(tick.time_ns.max(0) as u64, feed.resolution);
                        if let Ok(symbol) = gostocks_core::Symbol::new(&tick.symbol) {
                            state.ownership.saw(symbol, p, (offset < part.replay_until).then_some(grid));
                        }
                        part.pending.push_back((offset, grid));
                        batches.entry(p).or_default().push(tick);
                    }
                    Err(reason) => {
                        part.pending.push_back((offset, 0));
                        // A replayed bad record was dead-lettered before.
                        if offset >= part.replay_until {
                            state.dead_letters.fetch_add(1, Ordering::Relaxed);
                            let reason = reason.to_string();
                            tracing::warn!(partition = p, offset, %reason, "record to the dead-letter topic");
                            dlq.dead_letter(DLQ_TOPIC, msg.key(), payload, &reason).await?;
                        }
                    }
                }
            }
            lock(&processed_shared).extend(processed.iter().map(|(p, o)| (*p, *o)));
            // The poll that delivered these records may have run the rebalance callback.
            let mut gone = !announce(&tx);
            for (p, ticks) in batches {
                gone |= !tx.send(Batch::of(p as u32, ticks));
            }
            if gone {
                break;
            }
        }
        commit_durable(consumer, &feed.topic, &mut parts, state.durable());
        Ok(())
    })
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The consumer's rebalance handling: a partition this process has not read is assigned from
/// its beginning (its committed offset is noted: records below it are replays); a partition
/// it read before resumes after the last record it handed on.
struct Rewind {
    /// Ownership changes take effect at once, before any record of the new assignment.
    state: Arc<MarketState>,
    committed: Arc<Mutex<HashMap<i32, i64>>>,
    processed: Arc<Mutex<HashMap<i32, i64>>>,
    /// Partitions assigned (true) and revoked (false) since the feed last looked, in order, to
    /// announce to the dataflow.
    assigned: Arc<Mutex<Vec<(i32, bool)>>>,
}

impl ClientContext for Rewind {}

impl ConsumerContext for Rewind {
    fn rebalance(
        &self,
        base: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        if err != RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS {
            for e in tpl.elements() {
                self.state.ownership.disown(e.partition());
                lock(&self.assigned).push((e.partition(), false));
            }
            if let Err(error) = base.unassign() {
                tracing::warn!(%error, "unassigning partitions");
            }
            return;
        }
        if let Ok(c) = base.committed_offsets(tpl.clone(), Duration::from_secs(10)) {
            let mut committed = lock(&self.committed);
            for e in c.elements() {
                if let Offset::Offset(o) = e.offset() {
                    committed.insert(e.partition(), o);
                }
            }
        }
        let processed = lock(&self.processed).clone();
        tracing::info!(partitions = tpl.count(), committed = ?lock(&self.committed), "partitions assigned");
        let mut elems: Vec<(String, i32)> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_owned(), e.partition()))
            .collect();
        elems.sort();
        lock(&self.assigned).extend(elems.iter().map(|(_, p)| (*p, true)));
        for (_, p) in &elems {
            self.state.ownership.own(*p);
        }
        for (topic, p) in elems {
            let offset = match processed.get(&p) {
                Some(done) => Offset::Offset(done + 1),
                None => Offset::Beginning,
            };
            if let Err(error) = tpl.set_partition_offset(&topic, p, offset) {
                tracing::warn!(%error, partition = p, "setting the start offset");
            }
        }
        if let Err(error) = base.assign(tpl) {
            tracing::warn!(%error, "assigning partitions");
        }
    }
}

/// Commits, per partition, the records whose outputs are all durable (grid time below
/// `durable`).
fn commit_durable(
    consumer: &StreamConsumer<Rewind>,
    topic: &str,
    parts: &mut HashMap<i32, Part>,
    durable: u64,
) {
    let mut tpl = TopicPartitionList::new();
    for (p, part) in parts.iter_mut() {
        let mut last = None;
        while let Some(&(offset, grid)) = part.pending.front() {
            if grid >= durable {
                break;
            }
            last = Some(offset);
            part.pending.pop_front();
        }
        if let Some(o) = last {
            let _ = tpl.add_partition_offset(topic, *p, Offset::Offset(o + 1));
        }
    }
    if tpl.count() > 0
        && let Err(error) = consumer.commit(&tpl, CommitMode::Async)
    {
        tracing::warn!(%error, "committing offsets failed; they will be committed later");
    }
}
