//! Event time of the live sources, and how the workers agree on it. Pure: the clock is an
//! argument, so every rule here is unit-tested.
//!
//! Each source (a Kafka partition, or the replayed recording) has a [`Watermark`]: its ticks
//! may arrive out of order by up to the lateness. A worker's input may advance to the least
//! watermark of its *active* sources ([`Sources::active_time`]); a source that has sent nothing
//! for the idle bound stops holding time back (a quiet partition must not stall every result).
//! When every source is idle, everything seen is final ([`Sources::closed_time`]). The workers
//! publish both in [`Proposals`], and a worker without active sources of its own follows
//! [`Proposals::global`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use gostocks_core::watermark::{Late, Watermark};

/// The watermarks of one worker's live sources, each with when it was last heard from.
#[derive(Debug)]
pub struct Sources {
    lateness: u64,
    resolution: u64,
    idle: Duration,
    marks: HashMap<u32, (Watermark, Instant)>,
}

impl Sources {
    /// No sources yet; each will allow `lateness` (ns) on a grid of `resolution` (ns), and stop
    /// holding time back after `idle` without a tick.
    pub fn new(lateness: u64, resolution: u64, idle: Duration) -> Sources {
        Sources {
            lateness,
            resolution,
            idle,
            marks: HashMap::new(),
        }
    }

    fn entry(&mut self, source: u32, now: Instant) -> &mut (Watermark, Instant) {
        let (lateness, resolution) = (self.lateness, self.resolution);
        self.marks
            .entry(source)
            .or_insert_with(|| (Watermark::new(lateness, resolution), now))
    }

    /// `source` exists (perhaps without ticks yet): it holds event time back from `now` until it
    /// goes idle, so that its first ticks are not late merely for arriving after another
    /// source's. An announcement is activity: a partition assigned again after a long rebalance
    /// holds time back from the moment it is announced, before its first records arrive.
    pub fn register(&mut self, source: u32, now: Instant) {
        self.entry(source, now).1 = now;
    }

    /// `source` is gone (a revoked partition): it no longer takes part in event time. Coming
    /// back, it starts afresh.
    pub fn retire(&mut self, source: u32) {
        self.marks.remove(&source);
    }

    /// Admits a tick of `source` at `t` (ns), heard at `now`: its grid time, or why it is late.
    pub fn admit(&mut self, source: u32, t: u64, now: Instant) -> Result<u64, Late> {
        let entry = self.entry(source, now);
        entry.1 = now;
        entry.0.admit(t)
    }

    /// The least watermark over the sources heard from within the idle bound before `now`.
    pub fn active_time(&self, now: Instant) -> Option<u64> {
        self.marks
            .values()
            .filter(|(_, seen)| now.saturating_duration_since(*seen) < self.idle)
            .map(|(w, _)| w.input_time())
            .min()
    }

    /// Past the greatest grid time any source has seen: once every source is idle, everything
    /// seen is final, as nothing more is coming.
    pub fn closed_time(&self) -> Option<u64> {
        self.marks.values().map(|(w, _)| w.closed_time()).max()
    }

    /// Each source with the grid time it has closed and how long it has been quiet (for logs).
    pub fn describe(&self, now: Instant) -> Vec<(u32, u64, u64)> {
        let mut out: Vec<_> = self
            .marks
            .iter()
            .map(|(s, (w, seen))| {
                let quiet = now.saturating_duration_since(*seen).as_secs();
                (*s, w.closed_time(), quiet)
            })
            .collect();
        out.sort_unstable();
        out
    }
}

/// What each worker's sources say of event time, shared so that the workers agree: the least
/// watermark of its active sources, and the greatest grid time its sources have closed.
#[derive(Debug)]
pub struct Proposals {
    active: Vec<AtomicU64>,
    closed: Vec<AtomicU64>,
}

/// An absent proposal.
const NONE: u64 = u64::MAX;

impl Proposals {
    /// No proposals yet from any of `workers` workers.
    pub fn new(workers: usize) -> Proposals {
        let none = || (0..workers).map(|_| AtomicU64::new(NONE)).collect();
        Proposals {
            active: none(),
            closed: none(),
        }
    }

    /// Publishes worker `index`'s view; true if it changed.
    pub fn publish(&self, index: usize, active: Option<u64>, closed: Option<u64>) -> bool {
        let swap = |cell: &AtomicU64, v: Option<u64>| {
            let v = v.unwrap_or(NONE);
            cell.swap(v, Ordering::Relaxed) != v
        };
        // Both swapped, whatever the first says.
        let active = swap(&self.active[index], active);
        let closed = swap(&self.closed[index], closed);
        active || closed
    }

    /// The dataflow's input time: the least watermark over the active sources of every worker;
    /// when no worker has an active source, past the greatest grid time any has closed.
    pub fn global(&self) -> Option<u64> {
        let each = |v: &[AtomicU64]| {
            v.iter()
                .map(|a| a.load(Ordering::Relaxed))
                .filter(|&t| t != NONE)
                .collect::<Vec<_>>()
        };
        each(&self.active)
            .into_iter()
            .min()
            .or_else(|| each(&self.closed).into_iter().max())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    fn sources() -> Sources {
        // No lateness, a 1 s grid, idle after 10 s.
        Sources::new(0, SEC, Duration::from_secs(10))
    }

    #[test]
    fn the_least_active_watermark_holds_time_back() {
        let now = Instant::now();
        let mut s = sources();
        assert_eq!(s.active_time(now), None);
        s.admit(0, 5 * SEC, now).unwrap();
        s.admit(1, 2 * SEC + 1, now).unwrap();
        // Source 1 has seen 2 s + 1 ns: its ticks fall in the grid time 3 s or later.
        assert_eq!(s.active_time(now), Some(3 * SEC));
        // Past the greatest grid time seen (5 s).
        assert_eq!(s.closed_time(), Some(6 * SEC));
    }

    #[test]
    fn an_announced_source_holds_time_back_before_its_first_tick() {
        let now = Instant::now();
        let mut s = sources();
        s.admit(0, 5 * SEC, now).unwrap();
        let before = s.active_time(now);
        s.register(1, now);
        assert!(
            s.active_time(now) < before,
            "the new source holds time back"
        );
        // Its first tick, older than source 0's, is not late.
        assert!(s.admit(1, SEC, now).is_ok());
    }

    #[test]
    fn an_idle_source_stops_holding_time_back_and_comes_back_when_heard() {
        let start = Instant::now();
        let mut s = sources();
        s.admit(0, 100 * SEC, start).unwrap();
        s.admit(1, SEC, start).unwrap();
        let later = start + Duration::from_secs(11);
        s.admit(0, 101 * SEC, later).unwrap();
        assert_eq!(s.active_time(later), Some(101 * SEC));
        // Heard again: it holds time back again.
        s.admit(1, 2 * SEC, later).unwrap();
        assert_eq!(s.active_time(later), Some(2 * SEC));
    }

    #[test]
    fn every_source_idle_closes_what_was_seen() {
        let start = Instant::now();
        let mut s = sources();
        s.admit(0, 7 * SEC + 3, start).unwrap();
        s.admit(1, 4 * SEC, start).unwrap();
        let later = start + Duration::from_secs(60);
        assert_eq!(s.active_time(later), None);
        // Past the greatest grid time seen (8 s): results up to it are final.
        assert_eq!(s.closed_time(), Some(9 * SEC));
    }

    #[test]
    fn a_retired_source_leaves_event_time_and_starts_afresh() {
        let now = Instant::now();
        let mut s = sources();
        s.admit(0, 50 * SEC, now).unwrap();
        s.admit(1, 10 * SEC, now).unwrap();
        s.retire(1);
        assert_eq!(s.active_time(now), Some(50 * SEC));
        assert_eq!(s.describe(now).len(), 1);
        // Back after a rebalance: its old watermark is gone, an earlier tick is admitted.
        assert!(s.admit(1, 5 * SEC, now).is_ok());
    }

    #[test]
    fn a_tick_behind_its_own_watermark_is_late() {
        let now = Instant::now();
        let mut s = sources();
        s.admit(0, 10 * SEC, now).unwrap();
        assert!(s.admit(0, 2 * SEC, now).is_err());
        // Another source's watermark does not make it late.
        assert!(s.admit(1, 2 * SEC, now).is_ok());
    }

    #[test]
    fn proposals_agree_on_the_least_active_time_then_the_greatest_closed() {
        let p = Proposals::new(3);
        assert_eq!(p.global(), None);
        assert!(p.publish(0, Some(30), Some(31)));
        assert!(p.publish(1, Some(20), Some(21)));
        assert!(!p.publish(1, Some(20), Some(21)), "unchanged");
        assert_eq!(p.global(), Some(20));
        // Worker 1's sources go idle: worker 0's active time rules.
        assert!(p.publish(1, None, Some(21)));
        assert_eq!(p.global(), Some(30));
        // Nobody active: past the greatest closed time.
        assert!(p.publish(0, None, Some(31)));
        assert_eq!(p.global(), Some(31));
        // A worker that ends withdraws both.
        p.publish(0, None, None);
        assert_eq!(p.global(), Some(21));
    }
}
