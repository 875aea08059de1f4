//! `gostocks run --kafka`: ticks from a Kafka topic into the dataflow, one source per partition.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::{FutureExt, StreamExt};
use gostocks_connectors::kafka::{DLQ_TOPIC, InstanceId, KafkaConfig, TickEncoding, TickProducer};
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
    /// This runner's static membership id in the group (`None`: a dynamic member). Held for as
    /// long as the feed runs, so that no other runner of this host claims it meanwhile.
    pub instance_id: Option<InstanceId>,
}

/// How long past the session timeout a consumer may hold no partition, while records wait that
/// nobody consumes, before it leaves and rejoins its group: time for the broker to evict a dead
/// member (after the session timeout) and for one more join round (tansu holds each JoinGroup
/// and SyncGroup of a static member 3 s).
const REJOIN_MARGIN: Duration = Duration::from_secs(15);

/// How often the feed looks at the topic's offsets (see [`Watchdog`]).
const CHECK_EVERY: Duration = Duration::from_secs(5);

/// How long one look at the offsets may take.
const OFFSETS_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a consumer that leaves its group polls for the revocation to run.
const LEAVE_WAIT: Duration = Duration::from_millis(500);

/// How long past its session timeout a consumer that left, stuck, waits before it joins again:
/// tansu 0.6 holds a JoinGroup or SyncGroup 3 s at a time.
const LEAVE_SETTLE: Duration = Duration::from_secs(5);

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
///
/// With an instance id the consumer is a static group member (KIP-345): restarted after a crash
/// under the same id, it takes its assignment back at once. A consumer that holds no partition
/// while records wait that nobody consumes, for longer than the session timeout and
/// [`REJOIN_MARGIN`], warns, leaves the group and joins it again as a dynamic member (see
/// [`Watchdog`]). On `stop` it leaves the group, so that its partitions move on at once.
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
        let base =
            KafkaConfig::new(&feed.brokers, &feed.group).with_fetch_wait_ms(feed.fetch_wait_ms);
        let dlq =
            TickProducer::new(&base, feed.encoding).context("creating the dead-letter producer")?;
        let shared = Shared::default();
        state.ownership.activate();
        let mut instance = feed.instance_id.as_ref().map(|id| id.as_str().to_owned());
        let bound = base
            .clone()
            .with_instance_id(instance.clone())
            .session_timeout()
            + REJOIN_MARGIN;
        state.kafka.activate();
        let offsets = Arc::default();
        let _sampler = Sampler::spawn(&base, &feed.topic, &offsets)?;
        let mut reader = Reader {
            feed: &feed,
            tx: &tx,
            state: &state,
            stop: &stop,
            dlq: &dlq,
            shared: &shared,
            parts: HashMap::new(),
            processed: HashMap::new(),
            watchdog: Watchdog::new(bound),
            offsets: &offsets,
            stalled: 0,
        };
        loop {
            let left = base.clone().with_instance_id(instance.clone());
            let consumer: StreamConsumer<Rewind> = left
                .consumer()
                .create_with_context(Rewind {
                    state: Arc::clone(&state),
                    shared: shared.clone(),
                    instance: instance.clone(),
                })
                .context("creating the kafka consumer")?;
            consumer
                .subscribe(&[&feed.topic])
                .context("joining the consumer group")?;
            let ended = reader.consume(&consumer).await;
            commit_durable(&consumer, &feed.topic, &mut reader.parts, state.durable());
            // Leave explicitly: a static member does not send LeaveGroup when it closes, and its
            // partitions would wait out its session (on tansu, forever) instead of moving on.
            // librdkafka leaves once the revocation has run, which needs polls; a close before
            // that would not leave at all.
            consumer.unsubscribe();
            let mut stream = consumer.stream();
            let _ =
                tokio::time::timeout(LEAVE_WAIT, async { while stream.next().await.is_some() {} })
                    .await;
            drop(stream);
            drop(consumer);
            // The revocation ran the rebalance callback, which told the dataflow.
            for p in reader.parts.drain().map(|(p, _)| p) {
                state.ownership.disown(p);
            }
            state.kafka.left();
            match ended? {
                Ended::Stopped => return Ok(()),
                Ended::Rejoin => {
                    state.kafka.rejoined();
                    // tansu 0.6 goes on with a JoinGroup it holds (3 s at a time) after the
                    // member left, and enters it again: wait until that member, too, is past
                    // its session, so that the next join evicts it instead of sharing the
                    // partitions with it.
                    let settle = left.session_timeout() + LEAVE_SETTLE;
                    let until = Instant::now() + settle;
                    tracing::info!(
                        settle_secs = settle.as_secs(),
                        "rejoining the consumer group as a dynamic member"
                    );
                    while Instant::now() < until {
                        if stop.load(Ordering::Relaxed) {
                            return Ok(());
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    // As a dynamic member: a dynamic JoinGroup is what makes tansu 0.6 evict
                    // members whose session expired (it checks sessions only on dynamic members'
                    // requests) and start a new generation; Kafka rebalances either way.
                    instance = None;
                }
            }
        }
    })
}

/// Partition state shared between the feed and its consumer's rebalance callback; it outlives
/// a consumer that leaves and rejoins the group.
#[derive(Clone, Default)]
struct Shared {
    /// The committed offset found at assignment, per partition.
    committed: Arc<Mutex<HashMap<i32, i64>>>,
    /// The last offset handed on, per partition this process ever read.
    processed: Arc<Mutex<HashMap<i32, i64>>>,
    /// Partitions assigned (true) and revoked (false) since the feed last looked, in order, to
    /// announce to the dataflow.
    assigned: Arc<Mutex<Vec<(i32, bool)>>>,
}

/// Why a consumer stopped consuming.
enum Ended {
    /// `stop` was set, or the dataflow stopped listening.
    Stopped,
    /// The consumer is stuck without partitions: leave and rejoin the group.
    Rejoin,
}

/// The feed's state across the consumers it creates.
struct Reader<'a> {
    feed: &'a KafkaFeed,
    tx: &'a Feeds,
    state: &'a Arc<MarketState>,
    stop: &'a AtomicBool,
    dlq: &'a TickProducer,
    shared: &'a Shared,
    parts: HashMap<i32, Part>,
    /// The last offset this process handed on, per partition it ever read.
    processed: HashMap<i32, i64>,
    watchdog: Watchdog,
    /// The latest look at the topic's offsets, not yet judged.
    offsets: &'a Mutex<Option<Vec<PartitionOffsets>>>,
    /// Partitions of others nobody consumed, at the last look.
    stalled: usize,
}

impl Reader<'_> {
    /// Reads `consumer` until stopped or stuck.
    async fn consume(&mut self, consumer: &StreamConsumer<Rewind>) -> anyhow::Result<Ended> {
        let (feed, tx, state) = (self.feed, self.tx, self.state);
        // Partitions are announced to the dataflow as they are assigned, before their first
        // record, so that none is late merely for being read after another.
        let metadata = consumer
            .fetch_metadata(Some(&feed.topic), Duration::from_secs(30))
            .with_context(|| format!("reading the metadata of topic {}", feed.topic))?;
        let partitions = metadata
            .topics()
            .iter()
            .map(|t| t.partitions().len())
            .sum::<usize>();
        let instance = consumer
            .context()
            .instance
            .as_deref()
            .unwrap_or("none (dynamic member)");
        tracing::info!(topic = %feed.topic, group = %feed.group, instance, partitions, "consuming ticks from kafka");
        let mut stream = consumer.stream();
        let mut last_commit = Instant::now();
        // Assignment changes reach the dataflow before any record of theirs: a partition
        // announced holds event time back from then on, so a partition whose first records come
        // a fetch later than another's finds its ticks still on time.
        let announce = |tx: &Feeds| {
            let changes: Vec<(i32, bool)> = std::mem::take(&mut *lock(&self.shared.assigned));
            changes.into_iter().all(|(p, now_mine)| {
                tx.send(Batch {
                    source: p as u32,
                    ticks: Vec::new(),
                    retired: !now_mine,
                })
            })
        };
        while !self.stop.load(Ordering::Relaxed) {
            if !announce(tx) {
                return Ok(Ended::Stopped);
            }
            if last_commit.elapsed() > Duration::from_secs(1) {
                last_commit = Instant::now();
                commit_durable(consumer, &feed.topic, &mut self.parts, state.durable());
                // Partitions taken away by a rebalance: their outputs are another member's now.
                if let Ok(assigned) = consumer.assignment() {
                    let mine: HashSet<i32> =
                        assigned.elements().iter().map(|e| e.partition()).collect();
                    self.parts.retain(|p, _| {
                        let keep = mine.contains(p);
                        if !keep {
                            tracing::info!(partition = p, "partition revoked");
                            state.ownership.disown(*p);
                        }
                        keep
                    });
                    // The latest look at the topic's offsets, once.
                    let sample = lock(self.offsets).take();
                    if let Some(offsets) = sample
                        && self.watch(&offsets, &mine)
                    {
                        return Ok(Ended::Rejoin);
                    }
                }
            }
            let Ok(next) = tokio::time::timeout(Duration::from_millis(200), stream.next()).await
            else {
                continue;
            };
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
                let part = self.parts.entry(p).or_insert_with(|| {
                    // Read before in this process: its state is here, nothing to replay.
                    let replay_until = if self.processed.contains_key(&p) {
                        0
                    } else {
                        lock(&self.shared.committed).get(&p).copied().unwrap_or(0)
                    };
                    if replay_until > 0 {
                        tracing::info!(
                            partition = p,
                            committed = replay_until,
                            "replaying the partition from its beginning to rebuild state"
                        );
                    }
                    state.ownership.own(p);
                    Part {
                        replay_until,
                        pending: VecDeque::new(),
                    }
                });
                // Already handed on before a rebalance gave the partition back.
                if self.processed.get(&p).is_some_and(|&done| offset <= done) {
                    continue;
                }
                self.processed.insert(p, offset);
                let payload = msg.payload().unwrap_or_default();
                match decode_record(payload, feed.encoding, MAX_RECORD_BYTES) {
                    Ok(tick) => {
                        let grid = grid_ceil(tick.time_ns.max(0) as u64, feed.resolution);
                        if let Ok(symbol) = gostocks_core::Symbol::new(&tick.symbol) {
                            state.ownership.saw(
                                symbol,
                                p,
                                (offset < part.replay_until).then_some(grid),
                            );
                        }
                        part.pending.push_back((offset, grid));
                        batches.entry(p).or_default().push(tick);
                    }
                    Err(reason) => {
                        part.pending.push_back((offset, 0));
                        // A replayed bad record was dead-lettered before.
                        if offset >= part.replay_until {
                            state.counters.dead_letters.fetch_add(1, Ordering::Relaxed);
                            let reason = reason.to_string();
                            tracing::warn!(partition = p, offset, %reason, "record to the dead-letter topic");
                            self.dlq
                                .dead_letter(DLQ_TOPIC, msg.key(), payload, &reason)
                                .await?;
                        }
                    }
                }
            }
            lock(&self.shared.processed).extend(self.processed.iter().map(|(p, o)| (*p, *o)));
            // The poll that delivered these records may have run the rebalance callback.
            let mut gone = !announce(tx);
            for (p, ticks) in batches {
                gone |= !tx.send(Batch::of(p as u32, ticks));
            }
            if gone {
                break;
            }
        }
        Ok(Ended::Stopped)
    }

    /// Judges the latest look at the offsets, given the partitions this consumer holds; reports,
    /// and says whether to leave and rejoin the group.
    fn watch(&mut self, offsets: &[PartitionOffsets], mine: &HashSet<i32>) -> bool {
        let (feed, state) = (self.feed, self.state);
        let v = self.watchdog.observe(Instant::now(), offsets, mine);
        state.kafka.set_unassigned(v.unassigned, v.waiting, v.stuck);
        state.kafka.set_stalled(v.stalled);
        if v.rejoin {
            tracing::warn!(
                topic = %feed.topic,
                group = %feed.group,
                unassigned_secs = v.unassigned.as_secs(),
                waiting = v.waiting,
                "no partition assigned while records wait that nobody consumes: leaving and rejoining the consumer group"
            );
        }
        // Said once, when it starts: the partitions of a member the broker dropped without
        // rebalancing (tansu 0.6) wait for a runner that holds none, or for a restart.
        if !mine.is_empty() && v.stalled > 0 && self.stalled == 0 {
            tracing::warn!(
                topic = %feed.topic,
                group = %feed.group,
                stalled_partitions = v.stalled,
                waiting = v.waiting,
                "partitions of other group members have records waiting that nobody has consumed for too long"
            );
        }
        self.stalled = v.stalled;
        v.rejoin
    }
}

/// The thread that runs [`sample_offsets`], until dropped.
struct Sampler {
    done: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sampler {
    fn spawn(
        config: &KafkaConfig,
        topic: &str,
        to: &Arc<Mutex<Option<Vec<PartitionOffsets>>>>,
    ) -> std::io::Result<Sampler> {
        let done = Arc::new(AtomicBool::new(false));
        let (config, topic, to, stop) = (
            config.clone(),
            topic.to_owned(),
            Arc::clone(to),
            Arc::clone(&done),
        );
        let thread = std::thread::Builder::new()
            .name("kafka-offsets".into())
            .spawn(move || sample_offsets(&config, &topic, &to, &stop))?;
        Ok(Sampler {
            done,
            thread: Some(thread),
        })
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

/// One look at a partition's offsets.
#[derive(Clone, Copy, Debug)]
struct PartitionOffsets {
    partition: i32,
    /// The group's committed offset, if any.
    committed: Option<i64>,
    low: i64,
    high: i64,
}

impl PartitionOffsets {
    /// Records beyond the group's committed offset.
    fn waiting(&self) -> u64 {
        let from = self.committed.unwrap_or(self.low).max(self.low);
        u64::try_from(self.high - from).unwrap_or(0)
    }
}

/// What the [`Watchdog`] makes of a look at the offsets.
#[derive(Debug, Default, PartialEq)]
struct Verdict {
    /// How long the consumer has held no partition while records waited (zero otherwise).
    unassigned: Duration,
    /// Records beyond the group's committed offsets, on partitions the consumer does not hold.
    waiting: u64,
    /// Partitions the consumer does not hold whose records wait while their committed offset
    /// has stood still for the bound: nobody consumes them.
    stalled: usize,
    /// Holding no partition for longer than the bound while some are stalled.
    stuck: bool,
    /// Leave and rejoin the group now.
    rejoin: bool,
}

/// Notices a consumer that holds no partition while records of its topic wait that nobody
/// consumes (their committed offsets stand still) for longer than the bound, whatever the
/// broker, and says when to leave and rejoin the group: a coordinator that never evicts a dead
/// member (tansu 0.6 checks sessions only on dynamic members' requests, so a dead static member
/// keeps its partitions forever), or one that formed the group with an empty assignment for
/// this member and never rebalances again (tansu 0.6: a dynamic member joining while a dead
/// one's session runs). Merely holding nothing, as one runner too many for the partitions, is
/// fine while the others consume. After a rejoin that did not help, the next waits twice as long
/// (up to 8 bounds).
///
/// It also counts the partitions nobody consumes while this consumer holds others (tansu 0.6
/// keeps a member it evicted on another's heartbeat in the assignment); it reports them but does
/// not rejoin for them, since leaving would hand its own partitions over.
struct Watchdog {
    bound: Duration,
    /// Since when the consumer has held no partition while records waited.
    since: Option<Instant>,
    /// Per partition: the committed offset last seen, and since when it has stood there.
    seen: HashMap<i32, (Option<i64>, Instant)>,
    /// The last rejoin while stuck, and the wait before the next.
    rejoined: Option<Instant>,
    backoff: Duration,
}

impl Watchdog {
    fn new(bound: Duration) -> Watchdog {
        Watchdog {
            bound,
            since: None,
            seen: HashMap::new(),
            rejoined: None,
            backoff: bound,
        }
    }

    /// A look at the offsets, the consumer holding the partitions `mine`.
    fn observe(
        &mut self,
        now: Instant,
        offsets: &[PartitionOffsets],
        mine: &HashSet<i32>,
    ) -> Verdict {
        for o in offsets {
            let seen = self.seen.entry(o.partition).or_insert((o.committed, now));
            if seen.0 != o.committed {
                *seen = (o.committed, now);
            }
        }
        let frozen = |o: &PartitionOffsets| {
            o.waiting() > 0
                && self
                    .seen
                    .get(&o.partition)
                    .is_some_and(|(_, t)| now.duration_since(*t) >= self.bound)
        };
        let others = || offsets.iter().filter(|o| !mine.contains(&o.partition));
        let waiting: u64 = others().map(PartitionOffsets::waiting).sum();
        let stalled = others().filter(|o| frozen(o)).count();
        if mine.is_empty() && waiting > 0 {
            self.since.get_or_insert(now);
        } else {
            self.since = None;
        }
        let unassigned = self.since.map_or(Duration::ZERO, |t| now.duration_since(t));
        let stuck = unassigned >= self.bound && stalled > 0;
        if !stuck {
            self.rejoined = None;
            self.backoff = self.bound;
        }
        let rejoin = stuck
            && self
                .rejoined
                .is_none_or(|t| now.duration_since(t) >= self.backoff);
        if rejoin {
            if self.rejoined.is_some() {
                self.backoff = (self.backoff * 2).min(self.bound * 8);
            }
            self.rejoined = Some(now);
        }
        Verdict {
            unassigned,
            waiting,
            stalled,
            stuck,
            rejoin,
        }
    }
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
    shared: Shared,
    /// The consumer's static membership id, if any.
    instance: Option<String>,
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
                lock(&self.shared.assigned).push((e.partition(), false));
            }
            if let Err(error) = base.unassign() {
                tracing::warn!(%error, "unassigning partitions");
            }
            self.state.kafka.set_assigned(0);
            return;
        }
        if let Ok(c) = base.committed_offsets(tpl.clone(), Duration::from_secs(10)) {
            let mut committed = lock(&self.shared.committed);
            for e in c.elements() {
                if let Offset::Offset(o) = e.offset() {
                    committed.insert(e.partition(), o);
                }
            }
        }
        let processed = lock(&self.shared.processed).clone();
        tracing::info!(partitions = tpl.count(), committed = ?lock(&self.shared.committed), "partitions assigned");
        let mut elems: Vec<(String, i32)> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_owned(), e.partition()))
            .collect();
        elems.sort();
        lock(&self.shared.assigned).extend(elems.iter().map(|(_, p)| (*p, true)));
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
        self.state.kafka.set_assigned(tpl.count());
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

#[cfg(test)]
mod tests {
    use super::*;

    const BOUND: Duration = Duration::from_secs(45);

    /// Partition 0 with `committed` and `high`; on partition 1 nothing waits.
    fn at(committed: Option<i64>, high: i64) -> [PartitionOffsets; 2] {
        [
            PartitionOffsets {
                partition: 0,
                committed,
                low: 0,
                high,
            },
            PartitionOffsets {
                partition: 1,
                committed: Some(10),
                low: 0,
                high: 10,
            },
        ]
    }

    fn none() -> HashSet<i32> {
        HashSet::new()
    }

    /// `(stuck, rejoin)` of a verdict.
    fn flags(v: Verdict) -> (bool, bool) {
        (v.stuck, v.rejoin)
    }

    #[test]
    fn a_consumer_without_partitions_rejoins_once_records_wait_unconsumed_past_the_bound() {
        let t0 = Instant::now();
        let s = |secs| t0 + Duration::from_secs(secs);
        let mut w = Watchdog::new(BOUND);
        assert_eq!(
            w.observe(s(0), &at(Some(5), 9), &none()),
            Verdict {
                unassigned: Duration::ZERO,
                waiting: 4,
                stalled: 0,
                stuck: false,
                rejoin: false
            }
        );
        assert_eq!(
            flags(w.observe(s(44), &at(Some(5), 9), &none())),
            (false, false)
        );
        assert_eq!(
            w.observe(s(45), &at(Some(5), 9), &none()),
            Verdict {
                unassigned: BOUND,
                waiting: 4,
                stalled: 1,
                stuck: true,
                rejoin: true
            }
        );
        // A rejoin that did not help: still stuck; the next after one bound, then after two,
        // four, eight.
        for (secs, rejoin) in [
            (50, false),
            (90, true),
            (170, false),
            (180, true),
            (355, false),
            (360, true),
            (715, false),
            (720, true),
        ] {
            assert_eq!(
                flags(w.observe(s(secs), &at(Some(5), 9), &none())),
                (true, rejoin),
                "at {secs} s"
            );
        }
        // Partitions at last: the episode ends, and the next starts afresh.
        let both = HashSet::from([0, 1]);
        assert_eq!(
            w.observe(s(800), &at(Some(5), 9), &both),
            Verdict::default()
        );
        assert_eq!(
            flags(w.observe(s(900), &at(Some(5), 9), &none())),
            (false, false)
        );
        assert_eq!(
            flags(w.observe(s(945), &at(Some(5), 9), &none())),
            (true, true)
        );
    }

    #[test]
    fn holding_nothing_is_fine_while_others_consume_or_nothing_waits() {
        let t0 = Instant::now();
        let s = |secs| t0 + Duration::from_secs(secs);
        // One runner too many: the owner of the records commits as it goes.
        let mut w = Watchdog::new(BOUND);
        for i in 0..60 {
            let v = w.observe(
                s(i * 5),
                &at(Some(i as i64 * 100), i as i64 * 100 + 40),
                &none(),
            );
            assert_eq!(
                (v.waiting, v.stalled, v.rejoin),
                (40, 0, false),
                "at {}s",
                i * 5
            );
        }
        // Everything consumed: fine, and the wait starts over.
        assert_eq!(
            w.observe(s(300), &at(Some(7), 7), &none()),
            Verdict::default()
        );
        // A new group: nothing committed yet, records from the low watermark on wait.
        let mut w = Watchdog::new(BOUND);
        assert_eq!(w.observe(s(0), &at(None, 3), &none()).waiting, 3);
        assert_eq!(flags(w.observe(s(45), &at(None, 3), &none())), (true, true));
    }

    #[test]
    fn partitions_nobody_consumes_are_counted_but_a_consumer_that_holds_some_stays() {
        let t0 = Instant::now();
        let s = |secs| t0 + Duration::from_secs(secs);
        // It holds partition 1 and commits on it; partition 0 is held by nobody alive.
        let p1 = HashSet::from([1]);
        let look = |committed_1: i64| {
            let mut o = at(Some(5), 9);
            o[1].committed = Some(committed_1);
            o[1].high = committed_1 + 3;
            o
        };
        let mut w = Watchdog::new(BOUND);
        assert_eq!(w.observe(s(0), &look(10), &p1).stalled, 0);
        let v = w.observe(s(45), &look(20), &p1);
        assert_eq!(
            (v.unassigned, v.waiting, v.stalled, v.stuck, v.rejoin),
            (Duration::ZERO, 4, 1, false, false)
        );
    }
}
