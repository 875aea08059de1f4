//! Which offsets a Kafka source may commit, partition by partition (pure: no rdkafka, no I/O).
//!
//! A record's outputs belong to its grid time. Records are handed to the dataflow in offset
//! order; each waits, pending, until every output of a grid time at or above its own is durably
//! written, that is until the durable mark passes it. Then it, and every record before it, is
//! committed: the committed offset is the offset of the last such record plus one (Kafka's "next
//! record to read"). The mark is "every output of a grid time below `durable` is durable", so a
//! record whose grid time equals the mark is not committed yet.
//!
//! A partition this process has not read before is read from its beginning, to rebuild every
//! window exactly; the records below the committed offset found at assignment are replays,
//! whose outputs were written before. A partition it read before resumes after the last record
//! it handed on: its state is still here.

use std::collections::{HashMap, VecDeque};

/// Where a newly assigned partition starts reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// From its beginning: this process has not read the partition, and replays it.
    Beginning,
    /// At this offset: right after the last record this process handed on.
    At(i64),
}

/// What a record given to [`Commits::hand_on`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handed {
    /// Handed on before (read again after a rebalance gave the partition back): skip it.
    Again,
    /// A record whose outputs have not been written: write them.
    Fresh,
    /// A record below the committed offset found at assignment: its outputs were written
    /// before; it only rebuilds state.
    Replayed,
}

/// One assigned partition.
#[derive(Debug)]
struct Part {
    /// Records below this offset are replays.
    replay_until: i64,
    /// Records handed on and not yet committed: (offset, grid time), in offset order.
    pending: VecDeque<(i64, u64)>,
}

/// The commit arithmetic of one consumer group member, across the consumers it creates (it
/// outlives a consumer that leaves and rejoins the group).
#[derive(Debug, Default)]
pub struct Commits {
    parts: HashMap<i32, Part>,
    /// The committed offset last found at an assignment, per partition. A later assignment
    /// that finds none (the look failed, or nothing was committed) keeps the last one found.
    committed: HashMap<i32, i64>,
    /// The last offset handed on, per partition this process ever read.
    processed: HashMap<i32, i64>,
}

impl Commits {
    /// `partition` is assigned, with `committed` the group's committed offset found for it
    /// (`None`: none found). Says where to start reading it.
    pub fn assign(&mut self, partition: i32, committed: Option<i64>) -> Start {
        if let Some(c) = committed {
            self.committed.insert(partition, c);
        }
        self.part(partition);
        match self.processed.get(&partition) {
            Some(done) => Start::At(done + 1),
            None => Start::Beginning,
        }
    }

    /// The offset below which `partition`'s records are replays (0: none are), if it is
    /// assigned.
    pub fn replay_until(&self, partition: i32) -> Option<i64> {
        self.parts.get(&partition).map(|p| p.replay_until)
    }

    /// `partition` was taken away: its pending records are dropped (another member reads them
    /// again from the group's committed offset). Whether it was held.
    pub fn revoke(&mut self, partition: i32) -> bool {
        self.parts.remove(&partition).is_some()
    }

    /// Every partition held, sorted; all are revoked (the consumer leaves its group).
    pub fn revoke_all(&mut self) -> Vec<i32> {
        let mut held: Vec<i32> = self.parts.drain().map(|(p, _)| p).collect();
        held.sort_unstable();
        held
    }

    /// The offset of the next record of `partition` to hand on (the last handed on plus one),
    /// if this process read any of it.
    pub fn position(&self, partition: i32) -> Option<i64> {
        self.processed.get(&partition).map(|done| done + 1)
    }

    /// The partitions held, sorted.
    pub fn held(&self) -> Vec<i32> {
        let mut held: Vec<i32> = self.parts.keys().copied().collect();
        held.sort_unstable();
        held
    }

    /// The record at `offset` of `partition`, whose outputs belong to grid time `grid`, is
    /// read. Unless it was handed on before, it is now pending. A record of a partition not
    /// assigned (fetched before a revocation) is taken as if the partition were.
    pub fn hand_on(&mut self, partition: i32, offset: i64, grid: u64) -> Handed {
        self.part(partition);
        if self
            .processed
            .get(&partition)
            .is_some_and(|&done| offset <= done)
        {
            return Handed::Again;
        }
        self.processed.insert(partition, offset);
        let part = self.parts.get_mut(&partition).expect("created above");
        part.pending.push_back((offset, grid));
        if offset < part.replay_until {
            Handed::Replayed
        } else {
            Handed::Fresh
        }
    }

    /// Every output of a grid time below `durable` is durably written: the offsets to commit
    /// now, per partition (sorted), each the last newly durable record's plus one. A record is
    /// committed only with every record before it; each is committed once.
    pub fn commit(&mut self, durable: u64) -> Vec<(i32, i64)> {
        let mut out: Vec<(i32, i64)> = self
            .parts
            .iter_mut()
            .filter_map(|(&p, part)| {
                let mut last = None;
                while let Some(&(offset, grid)) = part.pending.front() {
                    if grid >= durable {
                        break;
                    }
                    last = Some(offset);
                    part.pending.pop_front();
                }
                last.map(|o| (p, o + 1))
            })
            .collect();
        out.sort_unstable();
        out
    }

    /// The partition's state, created on first sight: a partition read before in this process
    /// replays nothing; one not read before replays up to its last committed offset found.
    fn part(&mut self, partition: i32) -> &mut Part {
        let replay_until = if self.processed.contains_key(&partition) {
            0
        } else {
            self.committed.get(&partition).copied().unwrap_or(0)
        };
        self.parts.entry(partition).or_insert_with(|| Part {
            replay_until,
            pending: VecDeque::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hands on `records` (offset, grid) of partition `p`, asserting each is `expect`.
    fn hand(c: &mut Commits, p: i32, records: &[(i64, u64)], expect: Handed) {
        for &(offset, grid) in records {
            assert_eq!(c.hand_on(p, offset, grid), expect, "offset {offset}");
        }
    }

    #[test]
    fn nothing_is_committed_while_nothing_is_durable() {
        let mut c = Commits::default();
        assert_eq!(c.assign(0, None), Start::Beginning);
        hand(&mut c, 0, &[(0, 10), (1, 10), (2, 20)], Handed::Fresh);
        assert_eq!(c.commit(0), vec![]);
        assert_eq!(
            c.commit(10),
            vec![],
            "grid time 10 is not below the mark 10"
        );
    }

    #[test]
    fn the_commit_offset_is_the_last_durable_record_plus_one() {
        let mut c = Commits::default();
        c.assign(0, None);
        hand(
            &mut c,
            0,
            &[(0, 10), (1, 10), (2, 20), (3, 30)],
            Handed::Fresh,
        );
        assert_eq!(c.commit(11), vec![(0, 2)]);
        assert_eq!(c.commit(11), vec![], "each record is committed once");
        // A record whose grid time equals the mark waits for the next mark.
        assert_eq!(c.commit(20), vec![]);
        assert_eq!(c.commit(21), vec![(0, 3)]);
        assert_eq!(c.commit(u64::MAX), vec![(0, 4)]);
    }

    #[test]
    fn a_record_is_committed_only_with_every_record_before_it() {
        // A late tick (grid 10) behind a record not yet durable (grid 30) waits for it.
        let mut c = Commits::default();
        c.assign(0, None);
        hand(&mut c, 0, &[(5, 20), (6, 30), (7, 10)], Handed::Fresh);
        assert_eq!(c.commit(25), vec![(0, 6)]);
        assert_eq!(c.commit(31), vec![(0, 8)]);
    }

    #[test]
    fn partitions_commit_independently() {
        let mut c = Commits::default();
        c.assign(1, None);
        c.assign(0, None);
        hand(&mut c, 0, &[(0, 10), (1, 40)], Handed::Fresh);
        hand(&mut c, 1, &[(0, 30), (1, 30)], Handed::Fresh);
        assert_eq!(c.commit(31), vec![(0, 1), (1, 2)]);
        assert_eq!(c.held(), vec![0, 1]);
    }

    #[test]
    fn a_record_that_did_not_decode_is_committed_with_its_neighbours() {
        // Its grid time is 0: it holds nothing back once anything is durable.
        let mut c = Commits::default();
        c.assign(0, None);
        hand(&mut c, 0, &[(0, 0)], Handed::Fresh);
        assert_eq!(c.commit(0), vec![]);
        assert_eq!(c.commit(1), vec![(0, 1)]);
    }

    #[test]
    fn records_below_the_committed_offset_found_are_replays() {
        // Restarted after a crash: offsets 0..3 were committed by the process that died.
        let mut c = Commits::default();
        assert_eq!(c.assign(0, Some(3)), Start::Beginning);
        assert_eq!(c.replay_until(0), Some(3));
        hand(&mut c, 0, &[(0, 10), (1, 10), (2, 20)], Handed::Replayed);
        hand(&mut c, 0, &[(3, 20), (4, 30)], Handed::Fresh);
        // Replays are committed like any record (the offset goes nowhere backwards).
        assert_eq!(c.commit(21), vec![(0, 4)]);
    }

    #[test]
    fn a_revoked_partitions_pending_records_are_dropped() {
        let mut c = Commits::default();
        c.assign(0, None);
        c.assign(1, None);
        hand(&mut c, 0, &[(0, 10), (1, 20)], Handed::Fresh);
        hand(&mut c, 1, &[(0, 10)], Handed::Fresh);
        assert!(c.revoke(0));
        assert!(!c.revoke(0), "revoked once");
        assert_eq!(c.commit(u64::MAX), vec![(1, 1)], "nothing of partition 0");
        assert_eq!(c.replay_until(0), None);
    }

    #[test]
    fn a_partition_given_back_resumes_after_the_last_record_handed_on_and_replays_nothing() {
        let mut c = Commits::default();
        c.assign(0, Some(2));
        hand(&mut c, 0, &[(0, 10), (1, 10)], Handed::Replayed);
        hand(&mut c, 0, &[(2, 20), (3, 20)], Handed::Fresh);
        c.revoke(0);
        // Another member committed up to 6 meanwhile; this process's state is still here.
        assert_eq!(c.assign(0, Some(6)), Start::At(4));
        assert_eq!(c.replay_until(0), Some(0));
        // Records fetched again are skipped; what follows is fresh.
        hand(&mut c, 0, &[(2, 20), (3, 20)], Handed::Again);
        hand(&mut c, 0, &[(4, 30), (6, 40)], Handed::Fresh);
        // The dropped records (2, 3) are covered by the next commit.
        assert_eq!(c.commit(31), vec![(0, 5)]);
    }

    #[test]
    fn an_assignment_that_finds_no_committed_offset_keeps_the_last_one_found() {
        let mut c = Commits::default();
        c.assign(0, Some(5));
        c.revoke(0);
        assert_eq!(c.assign(0, None), Start::Beginning);
        assert_eq!(c.replay_until(0), Some(5));
        // A partition never committed replays nothing.
        c.assign(1, None);
        assert_eq!(c.replay_until(1), Some(0));
    }

    #[test]
    fn an_assignment_of_a_partition_held_keeps_its_pending_records() {
        let mut c = Commits::default();
        c.assign(0, None);
        hand(&mut c, 0, &[(0, 10)], Handed::Fresh);
        assert_eq!(c.assign(0, Some(9)), Start::At(1));
        assert_eq!(c.replay_until(0), Some(0));
        assert_eq!(c.commit(11), vec![(0, 1)]);
    }

    #[test]
    fn a_record_of_a_partition_not_assigned_is_taken_as_assigned() {
        let mut c = Commits::default();
        assert_eq!(c.hand_on(3, 0, 10), Handed::Fresh);
        assert_eq!(c.held(), vec![3]);
        assert_eq!(c.commit(11), vec![(3, 1)]);
    }

    #[test]
    fn leaving_revokes_every_partition() {
        let mut c = Commits::default();
        c.assign(2, None);
        c.assign(0, None);
        hand(&mut c, 2, &[(0, 10)], Handed::Fresh);
        assert_eq!(c.revoke_all(), vec![0, 2]);
        assert_eq!(c.held(), Vec::<i32>::new());
        assert_eq!(c.commit(u64::MAX), vec![]);
        // Rejoined: both resume where they were, or from the beginning if never read.
        assert_eq!(c.assign(2, None), Start::At(1));
        assert_eq!(c.assign(0, None), Start::Beginning);
    }
}
