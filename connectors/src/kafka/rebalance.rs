//! The consumer's rebalance handling: where each assigned partition starts, and the news of
//! assignments and revocations for the [`KafkaSource`](super::KafkaSource) to hand on.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::commits::{Commits, Start};
use super::lock;
use super::source::{Assignment, Event};

/// How long an assignment may wait for the group's committed offsets.
const COMMITTED_TIMEOUT: Duration = Duration::from_secs(10);

/// What the source and its consumer's rebalance callback share. The callback runs inside the
/// source's polls, on the source's thread: the lock is never held across a poll.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    /// The commit arithmetic; it outlives a consumer that leaves and rejoins the group.
    pub(crate) commits: Commits,
    /// Assignments and revocations not yet handed on, in order.
    pub(crate) events: VecDeque<Event>,
}

/// A partition this process has not read is assigned from its beginning (the committed offset
/// found is noted: records below it are replays); a partition it read before resumes after the
/// last record it handed on.
pub(crate) struct Rebalance {
    pub(crate) shared: Arc<Mutex<Shared>>,
}

impl ClientContext for Rebalance {}

impl ConsumerContext for Rebalance {
    fn rebalance(
        &self,
        base: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        if err != RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS {
            let partitions: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
            {
                let mut shared = lock(&self.shared);
                for &p in &partitions {
                    shared.commits.revoke(p);
                }
                shared.events.push_back(Event::Revoked { partitions });
            }
            if let Err(error) = base.unassign() {
                tracing::warn!(%error, "unassigning partitions");
            }
            return;
        }
        let found = committed_offsets(base, tpl);
        start(&self.shared, tpl, &found);
        if let Err(error) = base.assign(tpl) {
            tracing::warn!(%error, "assigning partitions");
        }
    }
}

/// The group's committed offsets of `tpl`'s partitions (none if they cannot be read in time).
pub(crate) fn committed_offsets<C: Consumer<X>, X: ConsumerContext>(
    consumer: &C,
    tpl: &TopicPartitionList,
) -> HashMap<i32, i64> {
    let mut found = HashMap::new();
    if let Ok(c) = consumer.committed_offsets(tpl.clone(), COMMITTED_TIMEOUT) {
        for e in c.elements() {
            if let Offset::Offset(o) = e.offset() {
                found.insert(e.partition(), o);
            }
        }
    }
    found
}

/// Notes the partitions of `tpl` as assigned, with `found` their committed offsets, sets where
/// each starts (see [`Rebalance`]) and queues the [`Event::Assigned`] that says them.
pub(crate) fn start(
    shared: &Mutex<Shared>,
    tpl: &mut TopicPartitionList,
    found: &HashMap<i32, i64>,
) {
    tracing::info!(partitions = tpl.count(), committed = ?found, "partitions assigned");
    let mut elems: Vec<(String, i32)> = tpl
        .elements()
        .iter()
        .map(|e| (e.topic().to_owned(), e.partition()))
        .collect();
    elems.sort();
    let mut partitions = Vec::with_capacity(elems.len());
    let mut shared = lock(shared);
    for (topic, p) in elems {
        let committed = found.get(&p).copied();
        let start = shared.commits.assign(p, committed);
        let replay_until = shared.commits.replay_until(p).unwrap_or(0);
        if start == Start::Beginning && replay_until > 0 {
            tracing::info!(
                partition = p,
                committed = replay_until,
                "replaying the partition from its beginning to rebuild state"
            );
        }
        let offset = match start {
            Start::Beginning => Offset::Beginning,
            Start::At(o) => Offset::Offset(o),
        };
        if let Err(error) = tpl.set_partition_offset(&topic, p, offset) {
            tracing::warn!(%error, partition = p, "setting the start offset");
        }
        partitions.push(Assignment {
            partition: p,
            committed,
            replay_until,
        });
    }
    shared.events.push_back(Event::Assigned { partitions });
}
