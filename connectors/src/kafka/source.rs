//! Reading ticks from Kafka: [`KafkaSource`], a consumer-group member that says what it was
//! assigned, what was revoked and what it read, and commits only what its driver says is
//! durable; and [`TickConsumer`], a bare consumer for tools and tests.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use gostocks_core::watermark::grid_ceil;
use gostocks_core::{Rejection, Tick};
use gostocks_proto::v1;
use prost::Message as _;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::{Message, Offset, TopicPartitionList};

use super::commits::Handed;
use super::config::{KafkaConfig, TickEncoding};
use super::lock;
use super::rebalance::{Rebalance, Shared, committed_offsets, start};
use super::sampler::Sampler;
use super::watchdog::{PartitionOffsets, Verdict, Watchdog};
use crate::error::Error;
use crate::limits::{MAX_RECORD_BYTES, decode_record};

/// Decodes a record's payload into a tick; the error says what is wrong with the bytes.
pub fn decode_tick(payload: &[u8], encoding: TickEncoding) -> Result<Tick, Rejection> {
    match encoding {
        TickEncoding::Protobuf => {
            let msg = v1::Tick::decode(payload)
                .map_err(|e| Rejection::Decode(format!("protobuf: {e}")))?;
            Tick::try_from(msg).map_err(|e| Rejection::Decode(e.to_string()))
        }
        TickEncoding::Json => {
            serde_json::from_slice(payload).map_err(|e| Rejection::Decode(format!("json: {e}")))
        }
    }
}

/// A consumer-group member reading tick topics; offsets are committed explicitly.
pub struct TickConsumer {
    /// The underlying rdkafka consumer.
    pub consumer: StreamConsumer,
}

impl TickConsumer {
    /// Joins the configured group and subscribes to `topics`.
    pub fn subscribe(config: &KafkaConfig, topics: &[&str]) -> Result<TickConsumer, Error> {
        let consumer: StreamConsumer =
            config.consumer().create().map_err(|source| Error::Kafka {
                context: "creating consumer".into(),
                source,
            })?;
        consumer.subscribe(topics).map_err(|source| Error::Kafka {
            context: format!("subscribing to {topics:?}"),
            source,
        })?;
        Ok(TickConsumer { consumer })
    }
}

/// How long past the session timeout a consumer may hold no partition, while records wait that
/// nobody consumes, before it leaves and rejoins its group: time for the broker to evict a dead
/// member (after the session timeout) and for one more join round (tansu holds each JoinGroup
/// and SyncGroup of a static member 3 s).
pub const REJOIN_MARGIN: Duration = Duration::from_secs(15);

/// How often the source compares its partitions with the consumer's assignment and judges the
/// latest look at the topic's offsets.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// How long [`KafkaSource::next`] waits for a record before it says [`Event::Idle`].
const POLL_WAIT: Duration = Duration::from_millis(200);

/// How long the source pauses after a consumer error before it polls again.
const ERROR_PAUSE: Duration = Duration::from_millis(500);

/// The most records one [`Event::Records`] hand-over gathers, over all partitions.
const MAX_GATHERED: usize = 4096;

/// How long a consumer that leaves its group polls for the revocation to run.
const LEAVE_WAIT: Duration = Duration::from_millis(500);

/// How long past its session timeout a consumer that left, stuck, waits before it joins again:
/// tansu 0.6 holds a JoinGroup or SyncGroup 3 s at a time.
const LEAVE_SETTLE: Duration = Duration::from_secs(5);

/// A fixed share of a topic's partitions, for the processes of a timely cluster: process
/// `index` of `of` reads the partitions `p` with `p % of == index`, assigned by itself rather
/// than by the group. The cluster runs one dataflow, so a partition must never move from one
/// process to another while it runs: a rebalance would hand the new owner records the dataflow
/// has already taken in (counted twice), or older than its event time (late). The group still
/// keeps the committed offsets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Share {
    /// The processes of the cluster.
    pub of: usize,
    /// This process, `0..of`.
    pub index: usize,
}

impl Share {
    /// Whether `partition` is this process's.
    pub fn holds(&self, partition: i32) -> bool {
        usize::try_from(partition).is_ok_and(|p| p % self.of.max(1) == self.index)
    }
}

/// A partition given to the source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Assignment {
    /// The partition.
    pub partition: i32,
    /// The group's committed offset found for it (`None`: none found).
    pub committed: Option<i64>,
    /// Its records below this offset are replays (0: none are).
    pub replay_until: i64,
}

/// A record the source read.
#[derive(Debug)]
pub struct Record {
    /// Its offset in its partition.
    pub offset: i64,
    /// The grid time its outputs belong to: its tick's time rounded up to the resolution (0
    /// for a record that did not decode).
    pub grid: u64,
    /// A replay: its offset is below the committed offset found at assignment, so its outputs
    /// were written (and, if it did not decode, it was dead-lettered) before.
    pub replayed: bool,
    /// The tick, or why the record is not one.
    pub tick: Result<Tick, Rejected>,
}

/// A record that did not decode or validate, with what a dead-letter topic needs.
#[derive(Debug)]
pub struct Rejected {
    /// Why (its text bounded, see [`crate::limits::bound_reason`]).
    pub reason: Rejection,
    /// The record's key.
    pub key: Option<Vec<u8>>,
    /// The record's payload.
    pub payload: Vec<u8>,
}

/// What [`KafkaSource::next`] says.
#[derive(Debug)]
pub enum Event {
    /// The group gave the consumer these partitions (perhaps none), in partition order; it
    /// holds exactly these now. Said before any record of theirs.
    Assigned {
        /// The partitions, with where their replay ends.
        partitions: Vec<Assignment>,
    },
    /// The group took these partitions away (perhaps all the consumer held); it holds none
    /// until the next [`Event::Assigned`]. Their records not yet committed are another
    /// member's to commit now.
    Revoked {
        /// The partitions.
        partitions: Vec<i32>,
    },
    /// Records of one partition, in offset order; none was said before.
    Records {
        /// The partition.
        partition: i32,
        /// The records.
        records: Vec<Record>,
    },
    /// The watchdog's judgement of the latest look at the topic's offsets (about every 5 s).
    /// With [`Verdict::rejoin`], the consumer is stuck: the driver commits, then calls
    /// [`KafkaSource::leave`] and [`KafkaSource::rejoin`].
    Watched(Verdict),
    /// Nothing arrived for a while.
    Idle,
}

/// A Kafka consumer-group member reading ticks from one topic, for a driver that hands them to
/// the dataflow and says what is durable.
///
/// Delivery is at least once: [`KafkaSource::commit`] commits, per partition, only the records
/// whose outputs are all durable. A partition this process has not read before is read from its
/// beginning, so that every window, bar EMA and alert arming is rebuilt exactly; its records
/// below the committed offset found at assignment come marked [`Record::replayed`] (their
/// outputs were written before). A partition it read before resumes after the last record it
/// handed on, and a record is said once, however often the partition comes back.
///
/// With an instance id in its config the consumer is a static group member (KIP-345):
/// restarted after a crash under the same id, it takes its assignment back at once. A consumer
/// that holds no partition while records wait that nobody consumes, for longer than the
/// session timeout and [`REJOIN_MARGIN`], is told to leave and rejoin the group, as a dynamic
/// member (see [`Event::Watched`]).
pub struct KafkaSource {
    /// The consumer's settings (the instance id is dropped at a rejoin).
    config: KafkaConfig,
    topic: String,
    encoding: TickEncoding,
    /// The result grid (ns).
    resolution: u64,
    /// `None` once it left the group, until it rejoins.
    consumer: Option<StreamConsumer<Rebalance>>,
    shared: Arc<Mutex<Shared>>,
    /// Events to say before reading more.
    ready: VecDeque<Event>,
    watchdog: Watchdog,
    sampler: Sampler,
    last_check: Instant,
    /// Partitions of others nobody consumed, at the last look.
    stalled: usize,
    /// The last look at the topic's offsets.
    offsets: Vec<PartitionOffsets>,
    /// A fixed share of the partitions instead of the group's assignment.
    share: Option<Share>,
}

impl KafkaSource {
    /// Joins `config`'s group and subscribes to `topic`, whose records are ticks in `encoding`
    /// with outputs on a grid of `resolution` ns.
    pub fn new(
        config: KafkaConfig,
        topic: &str,
        encoding: TickEncoding,
        resolution: u64,
    ) -> Result<KafkaSource, Error> {
        KafkaSource::open(config, topic, encoding, resolution, None)
    }

    /// Reads `share` of `topic`'s partitions (those the topic has now), assigned by itself:
    /// they never move, and it never rejoins. Otherwise as [`KafkaSource::new`]: partitions
    /// replayed from their beginning, commits to `config`'s group.
    pub fn sharing(
        config: KafkaConfig,
        topic: &str,
        encoding: TickEncoding,
        resolution: u64,
        share: Share,
    ) -> Result<KafkaSource, Error> {
        KafkaSource::open(config, topic, encoding, resolution, Some(share))
    }

    fn open(
        config: KafkaConfig,
        topic: &str,
        encoding: TickEncoding,
        resolution: u64,
        share: Option<Share>,
    ) -> Result<KafkaSource, Error> {
        let sampler = Sampler::spawn(&config, topic).map_err(|source| Error::Thread {
            name: "kafka-offsets".into(),
            source,
        })?;
        let mut source = KafkaSource {
            watchdog: Watchdog::new(config.session_timeout() + REJOIN_MARGIN),
            config,
            topic: topic.to_owned(),
            encoding,
            resolution: resolution.max(1),
            consumer: None,
            shared: Arc::default(),
            ready: VecDeque::new(),
            sampler,
            last_check: Instant::now(),
            stalled: 0,
            offsets: Vec::new(),
            share,
        };
        source.join()?;
        Ok(source)
    }

    /// The consumer's static membership id, if it is a static member.
    pub fn instance_id(&self) -> Option<&str> {
        self.config.instance_id.as_deref()
    }

    /// A new consumer joins the group.
    fn join(&mut self) -> Result<(), Error> {
        let kafka = |context: String| move |source| Error::Kafka { context, source };
        let consumer: StreamConsumer<Rebalance> = self
            .config
            .consumer()
            .create_with_context(Rebalance {
                shared: Arc::clone(&self.shared),
            })
            .map_err(kafka("creating the consumer".into()))?;
        if self.share.is_none() {
            consumer
                .subscribe(&[&self.topic])
                .map_err(kafka("joining the consumer group".into()))?;
        }
        let consumer = self.consumer.insert(consumer);
        let metadata = consumer
            .fetch_metadata(Some(&self.topic), Duration::from_secs(30))
            .map_err(kafka(format!(
                "reading the metadata of topic {}",
                self.topic
            )))?;
        let partitions = metadata
            .topics()
            .iter()
            .map(|t| t.partitions().len())
            .sum::<usize>();
        if let Some(share) = self.share {
            let mut tpl = TopicPartitionList::new();
            for p in metadata.topics().iter().flat_map(|t| t.partitions()) {
                if share.holds(p.id()) {
                    tpl.add_partition(&self.topic, p.id());
                }
            }
            let found = committed_offsets(consumer, &tpl);
            start(&self.shared, &mut tpl, &found);
            consumer
                .assign(&tpl)
                .map_err(kafka("assigning the cluster's share of partitions".into()))?;
            tracing::info!(topic = %self.topic, group = %self.config.group, partitions, share = ?share, held = tpl.count(), "consuming a fixed share of the partitions from kafka");
            self.last_check = Instant::now();
            return Ok(());
        }
        let instance = self
            .config
            .instance_id
            .as_deref()
            .unwrap_or("none (dynamic member)");
        tracing::info!(topic = %self.topic, group = %self.config.group, instance, partitions, "consuming ticks from kafka");
        self.last_check = Instant::now();
        Ok(())
    }

    /// The next event: assignment changes first (a partition is assigned before any record of
    /// it is said), then records; [`Event::Idle`] when nothing came for a moment. `None` once
    /// the consumer is gone: it left its group (until [`KafkaSource::rejoin`]), or its stream
    /// ended.
    pub async fn next(&mut self) -> Option<Event> {
        if let Some(event) = self.take_ready() {
            return Some(event);
        }
        if self.last_check.elapsed() > CHECK_EVERY {
            self.last_check = Instant::now();
            if let Some(verdict) = self.check() {
                return Some(Event::Watched(verdict));
            }
        }
        let consumer = self.consumer.as_ref()?;
        let mut stream = consumer.stream();
        let first = match tokio::time::timeout(POLL_WAIT, stream.next()).await {
            Err(_) => None,
            Ok(None) => return None,
            Ok(Some(Err(error))) => {
                // Transient broker trouble: librdkafka reconnects by itself; say so and go on.
                tracing::warn!(%error, "kafka consumer error");
                tokio::time::sleep(ERROR_PAUSE).await;
                None
            }
            Ok(Some(Ok(msg))) => Some(msg),
        };
        let Some(first) = first else {
            // The poll may have run the rebalance callback.
            drop(stream);
            return Some(self.take_ready().unwrap_or(Event::Idle));
        };
        // Whatever else is already fetched goes in the same hand-over: one batch per partition
        // instead of one per tick.
        let mut msgs = vec![first];
        while msgs.len() < MAX_GATHERED {
            match stream.next().now_or_never() {
                Some(Some(Ok(msg))) => msgs.push(msg),
                _ => break,
            }
        }
        let mut batches: BTreeMap<i32, Vec<Record>> = BTreeMap::new();
        let mut shared = lock(&self.shared);
        for msg in &msgs {
            let (partition, offset) = (msg.partition(), msg.offset());
            let payload = msg.payload().unwrap_or_default();
            let (grid, tick) = match decode_record(payload, self.encoding, MAX_RECORD_BYTES) {
                Ok(tick) => (
                    grid_ceil(tick.time_ns.max(0) as u64, self.resolution),
                    Ok(tick),
                ),
                Err(reason) => (
                    0,
                    Err(Rejected {
                        reason,
                        key: msg.key().map(<[u8]>::to_vec),
                        payload: payload.to_vec(),
                    }),
                ),
            };
            let replayed = match shared.commits.hand_on(partition, offset, grid) {
                Handed::Again => continue,
                Handed::Fresh => false,
                Handed::Replayed => true,
            };
            batches.entry(partition).or_default().push(Record {
                offset,
                grid,
                replayed,
                tick,
            });
        }
        // The polls that delivered these records may have run the rebalance callback: its
        // changes are said first.
        self.ready.extend(shared.events.drain(..));
        drop(shared);
        drop(msgs);
        drop(stream);
        self.ready.extend(
            batches
                .into_iter()
                .map(|(partition, records)| Event::Records { partition, records }),
        );
        Some(self.ready.pop_front().unwrap_or(Event::Idle))
    }

    /// The next event said by the rebalance callback or gathered before.
    fn take_ready(&mut self) -> Option<Event> {
        let mut shared = lock(&self.shared);
        self.ready.extend(shared.events.drain(..));
        drop(shared);
        self.ready.pop_front()
    }

    /// Drops partitions the consumer no longer holds, and judges the latest look at the
    /// topic's offsets, if a new one came.
    fn check(&mut self) -> Option<Verdict> {
        let assignment = self.consumer.as_ref()?.assignment().ok()?;
        let mine: HashSet<i32> = assignment
            .elements()
            .iter()
            .map(|e| e.partition())
            .collect();
        {
            let mut shared = lock(&self.shared);
            for p in shared.commits.held() {
                if !mine.contains(&p) {
                    tracing::info!(partition = p, "partition revoked");
                    shared.commits.revoke(p);
                }
            }
        }
        let offsets = self.sampler.take()?;
        let mut v = self.watchdog.observe(Instant::now(), &offsets, &mine);
        // A fixed share is never rejoined for: partitions of the others are theirs.
        if self.share.is_some() {
            v.rejoin = false;
            v.stuck = false;
            v.stalled = 0;
            v.unassigned = Duration::ZERO;
        }
        self.offsets = offsets;
        let (topic, group) = (&self.topic, &self.config.group);
        if v.rejoin {
            tracing::warn!(
                %topic,
                %group,
                unassigned_secs = v.unassigned.as_secs(),
                waiting = v.waiting,
                "no partition assigned while records wait that nobody consumes: leaving and rejoining the consumer group"
            );
        }
        // Said once, when it starts: the partitions of a member the broker dropped without
        // rebalancing (tansu 0.6) wait for a runner that holds none, or for a restart.
        if !mine.is_empty() && v.stalled > 0 && self.stalled == 0 {
            tracing::warn!(
                %topic,
                %group,
                stalled_partitions = v.stalled,
                waiting = v.waiting,
                "partitions of other group members have records waiting that nobody has consumed for too long"
            );
        }
        self.stalled = v.stalled;
        Some(v)
    }

    /// The consumer lag of each partition held, sorted by partition: records between the next
    /// one to hand on and the partition's end, as of the last look at the topic's offsets
    /// (every few seconds; [`Event::Watched`] follows each look). 0 once the partition is
    /// drained.
    pub fn lag(&self) -> Vec<(i32, u64)> {
        let shared = lock(&self.shared);
        shared
            .commits
            .held()
            .into_iter()
            .filter_map(|p| {
                let o = self.offsets.iter().find(|o| o.partition == p)?;
                let next = shared.commits.position(p).unwrap_or(o.low).max(o.low);
                Some((p, u64::try_from(o.high - next).unwrap_or(0)))
            })
            .collect()
    }

    /// Every output of a grid time below `upto` is durably written: commits, per partition,
    /// the records said so far whose outputs are all durable (asynchronously; a failed commit
    /// is logged, and covered by a later one).
    pub fn commit(&mut self, upto: u64) {
        let Some(consumer) = &self.consumer else {
            return;
        };
        let offsets = lock(&self.shared).commits.commit(upto);
        if offsets.is_empty() {
            return;
        }
        let mut tpl = TopicPartitionList::new();
        for (p, o) in offsets {
            let _ = tpl.add_partition_offset(&self.topic, p, Offset::Offset(o));
        }
        if let Err(error) = consumer.commit(&tpl, CommitMode::Async) {
            tracing::warn!(%error, "committing offsets failed; they will be committed later");
        }
    }

    /// Leaves the group, so that the partitions move on at once: the partitions the consumer
    /// held (sorted), every one of them revoked. Events not yet said are dropped; commit first.
    pub async fn leave(&mut self) -> Vec<i32> {
        if let Some(consumer) = self.consumer.take() {
            // Leave explicitly: a static member does not send LeaveGroup when it closes, and
            // its partitions would wait out its session (on tansu, forever) instead of moving
            // on. librdkafka leaves once the revocation has run, which needs polls; a close
            // before that would not leave at all.
            if self.share.is_some() {
                let _ = consumer.unassign();
            } else {
                consumer.unsubscribe();
            }
            let mut stream = consumer.stream();
            let _ =
                tokio::time::timeout(LEAVE_WAIT, async { while stream.next().await.is_some() {} })
                    .await;
        }
        let mut shared = lock(&self.shared);
        let mut gone = shared.commits.revoke_all();
        for event in shared.events.drain(..).chain(self.ready.drain(..)) {
            if let Event::Revoked { partitions } = event {
                gone.extend(partitions);
            }
        }
        gone.sort_unstable();
        gone.dedup();
        gone
    }

    /// After [`KafkaSource::leave`] because it was stuck: waits until the member it was is past
    /// its session, then joins the group again as a dynamic member. `Ok(false)` if `stop` was
    /// set meanwhile (it stays out of the group).
    ///
    /// tansu 0.6 goes on with a JoinGroup it holds (3 s at a time) after the member left, and
    /// enters it again: the wait lets that member, too, pass its session, so that the next join
    /// evicts it instead of sharing the partitions with it. The new member is dynamic because
    /// a dynamic JoinGroup is what makes tansu 0.6 evict members whose session expired (it
    /// checks sessions only on dynamic members' requests) and start a new generation; Kafka
    /// rebalances either way.
    pub async fn rejoin(&mut self, stop: &AtomicBool) -> Result<bool, Error> {
        let settle = self.config.session_timeout() + LEAVE_SETTLE;
        let until = Instant::now() + settle;
        tracing::info!(
            settle_secs = settle.as_secs(),
            "rejoining the consumer group as a dynamic member"
        );
        while Instant::now() < until {
            if stop.load(Ordering::Relaxed) {
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.config.instance_id = None;
        self.join()?;
        Ok(true)
    }
}
