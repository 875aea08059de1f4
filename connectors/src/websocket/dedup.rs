//! Duplicates after a reconnect, and gaps in trade ids.
//!
//! Providers resend recent trades after a reconnect. With contiguous ids per symbol (Binance) a
//! trade at or below the last id delivered is a duplicate and a jump is a gap. Without them, the
//! trades delivered within a horizon before the cut are remembered as a multiset of their content
//! (symbol, time, price, size, id, conditions); after the reconnect each resent copy cancels one
//! remembered trade, until a trade newer than any delivered ends the overlap. A multiset, because
//! two identical trades in one millisecond are two trades, and checking only after a reconnect,
//! because outside an overlap identical trades are never duplicates.

use std::collections::{HashMap, VecDeque};

use gostocks_core::Tick;

/// What to do with a trade.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// New: deliver it.
    New,
    /// New, after this many missing ids: deliver it, report the gap.
    Gap(u64),
    /// Already delivered: drop it.
    Duplicate,
}

type Key = (String, i64, i64, i64, Option<u64>, Vec<String>);

fn key(t: &Tick) -> Key {
    (
        t.symbol.clone(),
        t.time_ns,
        t.price.units(),
        t.size.units(),
        t.trade_id,
        t.conditions.clone(),
    )
}

/// The duplicate and gap detector of one ingest session (it outlives reconnects).
#[derive(Debug)]
pub struct Dedup {
    contiguous: bool,
    horizon_ns: i64,
    capacity: usize,
    last_id: HashMap<String, u64>,
    recent: VecDeque<(i64, Key)>,
    newest_ns: i64,
    overlap: HashMap<Key, u32>,
    overlap_until: i64,
}

impl Dedup {
    /// A detector; `contiguous` says ids are contiguous per symbol. Content is remembered for
    /// trades within `horizon_ns` of the newest, and for at most `capacity` of them.
    pub fn new(contiguous: bool, horizon_ns: i64, capacity: usize) -> Dedup {
        Dedup {
            contiguous,
            horizon_ns,
            capacity,
            last_id: HashMap::new(),
            recent: VecDeque::new(),
            newest_ns: i64::MIN,
            overlap: HashMap::new(),
            overlap_until: i64::MIN,
        }
    }

    /// The connection was lost and a new one made: what comes next may repeat what was delivered.
    pub fn reconnected(&mut self) {
        if self.contiguous {
            return;
        }
        self.overlap.clear();
        for (_, k) in &self.recent {
            *self.overlap.entry(k.clone()).or_default() += 1;
        }
        self.overlap_until = self.newest_ns;
    }

    /// Judges one trade (and remembers it when new).
    pub fn check(&mut self, tick: &Tick) -> Verdict {
        if self.contiguous
            && let Some(id) = tick.trade_id
        {
            return match self.last_id.get_mut(&tick.symbol) {
                Some(last) if id <= *last => Verdict::Duplicate,
                Some(last) => {
                    let missing = id - *last - 1;
                    *last = id;
                    if missing == 0 {
                        Verdict::New
                    } else {
                        Verdict::Gap(missing)
                    }
                }
                None => {
                    self.last_id.insert(tick.symbol.clone(), id);
                    Verdict::New
                }
            };
        }
        let k = key(tick);
        if !self.overlap.is_empty() {
            if tick.time_ns > self.overlap_until {
                self.overlap.clear();
            } else if let Some(n) = self.overlap.get_mut(&k)
                && *n > 0
            {
                *n -= 1;
                return Verdict::Duplicate;
            }
        }
        self.newest_ns = self.newest_ns.max(tick.time_ns);
        self.recent.push_back((tick.time_ns, k));
        while let Some((t, _)) = self.recent.front() {
            if self.recent.len() > self.capacity
                || *t < self.newest_ns.saturating_sub(self.horizon_ns)
            {
                self.recent.pop_front();
            } else {
                break;
            }
        }
        Verdict::New
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tick(symbol: &str, t: i64, price: &str, id: Option<u64>) -> Tick {
        Tick::new(symbol, price.parse().unwrap(), "1".parse().unwrap(), t, 0).with_trade_id(id)
    }

    #[test]
    fn contiguous_ids_drop_repeats_and_count_gaps_per_symbol() {
        let mut d = Dedup::new(true, 0, 0);
        assert_eq!(d.check(&tick("A", 1, "1", Some(10))), Verdict::New);
        assert_eq!(d.check(&tick("A", 2, "1", Some(11))), Verdict::New);
        assert_eq!(d.check(&tick("B", 2, "1", Some(5))), Verdict::New);
        d.reconnected();
        assert_eq!(d.check(&tick("A", 1, "1", Some(10))), Verdict::Duplicate);
        assert_eq!(d.check(&tick("A", 2, "1", Some(11))), Verdict::Duplicate);
        assert_eq!(d.check(&tick("A", 5, "1", Some(14))), Verdict::Gap(2));
        assert_eq!(d.check(&tick("B", 5, "1", Some(6))), Verdict::New);
    }

    #[test]
    fn content_overlap_is_a_multiset_and_ends_at_the_first_newer_trade() {
        let mut d = Dedup::new(false, 1_000, 100);
        // Two identical trades in one millisecond are both real.
        assert_eq!(d.check(&tick("A", 100, "1", None)), Verdict::New);
        assert_eq!(d.check(&tick("A", 100, "1", None)), Verdict::New);
        assert_eq!(d.check(&tick("A", 200, "2", None)), Verdict::New);
        d.reconnected();
        // The server resends all three, then one more identical at 200 (a real new trade).
        assert_eq!(d.check(&tick("A", 100, "1", None)), Verdict::Duplicate);
        assert_eq!(d.check(&tick("A", 100, "1", None)), Verdict::Duplicate);
        assert_eq!(d.check(&tick("A", 200, "2", None)), Verdict::Duplicate);
        assert_eq!(d.check(&tick("A", 200, "2", None)), Verdict::New);
        assert_eq!(d.check(&tick("A", 300, "3", None)), Verdict::New);
        // Past the overlap, identical trades are never dropped.
        assert_eq!(d.check(&tick("A", 100, "1", None)), Verdict::New);
    }

    #[test]
    fn only_the_horizon_is_remembered() {
        let mut d = Dedup::new(false, 50, 100);
        d.check(&tick("A", 0, "1", None));
        d.check(&tick("A", 100, "1", None));
        d.reconnected();
        assert_eq!(
            d.check(&tick("A", 0, "1", None)),
            Verdict::New,
            "older than the horizon"
        );
        assert_eq!(d.check(&tick("A", 100, "1", None)), Verdict::Duplicate);
    }
}
