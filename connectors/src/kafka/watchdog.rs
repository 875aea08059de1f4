//! Whether a consumer is stuck without partitions (pure: no rdkafka, no I/O, the time is
//! passed in).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

/// One look at a partition's offsets.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PartitionOffsets {
    pub(crate) partition: i32,
    /// The group's committed offset, if any.
    pub(crate) committed: Option<i64>,
    /// The low watermark.
    pub(crate) low: i64,
    /// The high watermark.
    pub(crate) high: i64,
}

impl PartitionOffsets {
    /// Records beyond the group's committed offset.
    pub(crate) fn waiting(&self) -> u64 {
        let from = self.committed.unwrap_or(self.low).max(self.low);
        u64::try_from(self.high - from).unwrap_or(0)
    }
}

/// What the source's watchdog makes of a look at the topic's offsets (every 5 s): a consumer
/// that holds no partition while records wait that nobody consumes (their committed offsets
/// stand still), for longer than its session timeout and
/// [`REJOIN_MARGIN`](super::REJOIN_MARGIN), is stuck, and is told to leave and rejoin its
/// group; after a rejoin that did not help, the next waits twice as long (up to 8 bounds).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    /// How long the consumer has held no partition while records waited (zero otherwise).
    pub unassigned: Duration,
    /// Records beyond the group's committed offsets, on partitions the consumer does not hold.
    pub waiting: u64,
    /// Partitions the consumer does not hold whose records wait while their committed offset
    /// has stood still for the bound: nobody consumes them.
    pub stalled: usize,
    /// Holding no partition for longer than the bound while some are stalled.
    pub stuck: bool,
    /// Leave and rejoin the group now.
    pub rejoin: bool,
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
pub(crate) struct Watchdog {
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
    /// A watchdog that calls a consumer stuck after `bound`.
    pub(crate) fn new(bound: Duration) -> Watchdog {
        Watchdog {
            bound,
            since: None,
            seen: HashMap::new(),
            rejoined: None,
            backoff: bound,
        }
    }

    /// A look at the offsets, the consumer holding the partitions `mine`.
    pub(crate) fn observe(
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

    #[test]
    fn records_waiting_count_from_the_committed_offset_or_the_low_watermark() {
        let o = |committed, low, high| PartitionOffsets {
            partition: 0,
            committed,
            low,
            high,
        };
        assert_eq!(o(Some(5), 0, 9).waiting(), 4);
        assert_eq!(
            o(None, 3, 9).waiting(),
            6,
            "nothing committed: from the low watermark"
        );
        assert_eq!(
            o(Some(2), 5, 9).waiting(),
            4,
            "committed records deleted since"
        );
        assert_eq!(o(Some(9), 0, 9).waiting(), 0);
        assert_eq!(o(Some(12), 0, 9).waiting(), 0, "never negative");
    }
}
