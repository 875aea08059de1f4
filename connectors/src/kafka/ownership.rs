//! Which symbols' outputs a consumer of a shared group writes (pure: no rdkafka, no I/O).

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};

use gostocks_core::Symbol;

/// Which symbols' outputs this process writes, when it consumes Kafka in a group: a symbol's
/// outputs are written by the consumer that owns its partition, and after a restart the
/// outputs already written before it (up to the grid time the replayed, committed records
/// reached) are not written again. Until [`Ownership::activate`], nothing is suppressed.
///
/// Shared between the Kafka source's driver (writer) and the threads that emit outputs
/// (readers).
#[derive(Debug, Default)]
pub struct Ownership {
    inner: Mutex<Owned>,
}

#[derive(Debug, Default)]
struct Owned {
    active: bool,
    /// The partition each symbol's latest record came from.
    partition_of: HashMap<Symbol, i32>,
    owned: HashSet<i32>,
    /// Per owned partition: outputs up to this grid time were written before a restart.
    written: HashMap<i32, u64>,
}

impl Ownership {
    fn lock(&self) -> MutexGuard<'_, Owned> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Turns ownership checks on (Kafka source).
    pub fn activate(&self) {
        self.lock().active = true;
    }

    /// `partition` is assigned to this consumer.
    pub fn own(&self, partition: i32) {
        self.lock().owned.insert(partition);
    }

    /// `partition` was taken away from this consumer.
    pub fn disown(&self, partition: i32) {
        let mut o = self.lock();
        o.owned.remove(&partition);
        o.written.remove(&partition);
    }

    /// A record of `symbol` came from `partition`; if it is a replayed record whose outputs
    /// were written before (its offset is below the committed one), outputs up to its grid
    /// time are not written again.
    pub fn saw(&self, symbol: Symbol, partition: i32, replayed_grid: Option<u64>) {
        let mut o = self.lock();
        o.partition_of.insert(symbol, partition);
        if let Some(g) = replayed_grid {
            let w = o.written.entry(partition).or_insert(0);
            *w = (*w).max(g);
        }
    }

    /// Whether an output of `symbol` at grid time `time` must not be written.
    pub fn suppress(&self, symbol: &Symbol, time: u64) -> bool {
        let o = self.lock();
        if !o.active {
            return false;
        }
        let Some(p) = o.partition_of.get(symbol) else {
            return false;
        };
        !o.owned.contains(p) || o.written.get(p).is_some_and(|w| time <= *w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sym(s: &str) -> Symbol {
        Symbol::new(s).expect("symbol")
    }

    /// Active, owning partitions 0 and 1, AAPL seen on 0 and MSFT on 1 (fresh records).
    fn two_partitions() -> Ownership {
        let o = Ownership::default();
        o.activate();
        o.own(0);
        o.own(1);
        o.saw(sym("AAPL"), 0, None);
        o.saw(sym("MSFT"), 1, None);
        o
    }

    #[test]
    fn inactive_suppresses_nothing() {
        let o = Ownership::default();
        o.saw(sym("AAPL"), 0, Some(100));
        assert!(
            !o.suppress(&sym("AAPL"), 50),
            "not owned, replayed, yet inactive"
        );
        o.disown(0);
        assert!(!o.suppress(&sym("AAPL"), 500));
    }

    #[test]
    fn outputs_of_owned_partitions_are_written() {
        let o = two_partitions();
        assert!(!o.suppress(&sym("AAPL"), 0));
        assert!(!o.suppress(&sym("MSFT"), u64::MAX));
    }

    #[test]
    fn a_symbol_not_seen_is_written() {
        let o = two_partitions();
        assert!(!o.suppress(&sym("TSLA"), 10));
    }

    #[test]
    fn outputs_of_a_disowned_partition_are_not_written() {
        let o = two_partitions();
        o.disown(0);
        assert!(o.suppress(&sym("AAPL"), 10));
        assert!(
            !o.suppress(&sym("MSFT"), 10),
            "the other partition is still owned"
        );
        o.own(0);
        assert!(!o.suppress(&sym("AAPL"), 10), "owned again");
    }

    #[test]
    fn a_partition_never_assigned_is_not_owned() {
        let o = Ownership::default();
        o.activate();
        o.saw(sym("AAPL"), 4, None);
        assert!(o.suppress(&sym("AAPL"), 10));
    }

    #[test]
    fn replayed_outputs_are_suppressed_up_to_the_grid_time_the_replayed_records_reached() {
        let o = two_partitions();
        o.saw(sym("AAPL"), 0, Some(20));
        o.saw(sym("AAPL"), 0, Some(30));
        // A late replayed record does not lower the mark.
        o.saw(sym("AAPL"), 0, Some(10));
        assert!(o.suppress(&sym("AAPL"), 10));
        assert!(o.suppress(&sym("AAPL"), 30), "up to and including the mark");
        assert!(!o.suppress(&sym("AAPL"), 31));
        // Per partition: the other partition's symbols are written.
        assert!(!o.suppress(&sym("MSFT"), 10));
        // Fresh records after the replay leave the mark where it is.
        o.saw(sym("AAPL"), 0, None);
        assert!(o.suppress(&sym("AAPL"), 30));
    }

    #[test]
    fn the_replay_mark_covers_every_symbol_of_its_partition() {
        let o = two_partitions();
        o.saw(sym("AAPL"), 0, Some(30));
        o.saw(sym("NVDA"), 0, None);
        assert!(o.suppress(&sym("NVDA"), 25));
        assert!(!o.suppress(&sym("NVDA"), 35));
    }

    #[test]
    fn disowning_forgets_the_replay_mark() {
        let o = two_partitions();
        o.saw(sym("AAPL"), 0, Some(30));
        o.disown(0);
        o.own(0);
        assert!(!o.suppress(&sym("AAPL"), 20));
    }

    #[test]
    fn a_symbol_follows_the_partition_of_its_latest_record() {
        let o = two_partitions();
        o.disown(1);
        assert!(!o.suppress(&sym("AAPL"), 10));
        o.saw(sym("AAPL"), 1, None);
        assert!(o.suppress(&sym("AAPL"), 10));
    }
}
