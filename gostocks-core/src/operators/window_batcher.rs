//! `WindowBatcher`: the differential batcher of sliding windows, whose updates are mostly dated
//! in the future.
//!
//! What a symbol's trades of grid time `g0` add to its windows enters every window at `g0` and
//! leaves window `W` at `g0 + W`: one entry makes an update per window at `g0` and a retraction
//! per window later on. Differential's merge batcher would keep the retractions not yet due in
//! its merge ladder, and every extraction merges and splits all of them again: the cost of an
//! advance would grow with the window. This batcher keeps each entry once, filed by `g0` (one
//! map lookup per run of equal time), and an extraction reads the updates it owes off the
//! front of the map: the entries of the times it passes and, for each window, the entries that
//! many nanoseconds older. It groups them by key (a counting sort over dense ids), sums them
//! per time and seals them. An entry and an exit of the same window at the same time meet
//! here and cancel into one net difference before they reach the arrangement.

use std::collections::BTreeMap;

use differential_dataflow::batcher::{Batcher, Extract};
use differential_dataflow::difference::IsZero;
use differential_dataflow::trace::implementations::BatchContainer;
use differential_dataflow::trace::implementations::Vector;
use differential_dataflow::trace::implementations::ord_neu::key_batch::OrdKeyStorage;
use differential_dataflow::trace::implementations::ord_neu::{OrdKeyBatch, Upds};
use timely::progress::frontier::{Antichain, AntichainRef};

use super::symbol_ids::SymbolIds;
use crate::indicators::Agg;
use crate::symbol::Symbol;

/// A window of a symbol: `(symbol, window index)`.
pub type WindowKey = (Symbol, u8);

/// What a symbol's trades of grid time `g0` add to each of its windows: `(g0, symbol, sums)`.
pub type WindowEntry = (u64, Symbol, Agg);

/// An update of the window sums' arrangement.
type SumsUpdate = ((WindowKey, ()), u64, Agg);

/// The batches [`WindowBatcher`] seals.
pub type SumsBatch = OrdKeyBatch<Vector<SumsUpdate>>;

/// Files window entries by grid time and extracts the updates they make; see the [module
/// documentation](self).
///
/// # Examples
/// ```
/// use differential_dataflow::batcher::{Batcher, Extract};
/// use gostocks_core::indicators::Agg;
/// use gostocks_core::operators::WindowBatcher;
/// use gostocks_core::Symbol;
/// use timely::progress::frontier::Antichain;
///
/// let x = Symbol::new("X").unwrap();
/// let one = Agg::tick("10".parse().unwrap(), "1".parse().unwrap(), 1, None);
/// // Windows of 2 and 5: an entry at 1 enters both at 1 and leaves them at 3 and 6.
/// let mut batcher = WindowBatcher::new(&[2, 5]);
/// batcher.insert(&mut vec![(1, x, one)]);
/// let (batch, lower) = batcher.extract(Antichain::from_elem(2).borrow());
/// assert_eq!(batch.unwrap().updates, 2);
/// assert_eq!(lower.first(), Some(&3));
/// let (batch, lower) = batcher.extract(Antichain::from_elem(6).borrow());
/// assert_eq!(batch.unwrap().updates, 1);
/// assert_eq!(lower.first(), Some(&6));
/// // Once the input is done, whatever is left comes out, and nothing is held.
/// let (batch, lower) = batcher.extract(Antichain::new().borrow());
/// assert_eq!(batch.unwrap().updates, 1);
/// assert!(lower.is_empty());
/// ```
pub struct WindowBatcher {
    /// Window lengths, ns.
    lengths: Vec<u64>,
    /// Entries by `g0`, as `(symbol id, sums)`, kept until they have left every window.
    held: BTreeMap<u64, Entries>,
    /// Emptied lists of earlier times, for later ones: a fresh list per time would grow (and
    /// copy its entries) all over again.
    spare: Vec<Entries>,
    /// Every update before this time has been extracted.
    done: u64,
    lower: Antichain<u64>,
    /// Every symbol seen, by dense id, and each id's rank in symbol order (as of the last
    /// seal).
    ids: SymbolIds,
    ranks: Vec<u32>,
    /// Per window key (`id * windows + window`): its updates in the batch being sealed, then
    /// where they go. Zero between extractions.
    counts: Vec<u32>,
}

/// The entries of one grid time: `(symbol id, sums)`.
type Entries = Vec<(u32, Agg)>;

/// Which updates a list of entries makes at one time.
#[derive(Clone, Copy)]
enum Step {
    /// The entries enter every window.
    Enter,
    /// The entries leave this window.
    Leave(u8),
}

impl WindowBatcher {
    /// A batcher for windows of these lengths (ns).
    pub fn new(lengths: &[u64]) -> WindowBatcher {
        WindowBatcher {
            lengths: lengths.to_vec(),
            held: BTreeMap::new(),
            spare: Vec::new(),
            done: 0,
            lower: Antichain::new(),
            ids: SymbolIds::default(),
            ranks: Vec::new(),
            counts: Vec::new(),
        }
    }

    /// The dense id of `symbol`, new ones numbered as they come.
    #[inline]
    fn id(&mut self, symbol: Symbol) -> u32 {
        let id = self.ids.id(symbol);
        let keys = self.ids.len() * self.lengths.len();
        if self.counts.len() < keys {
            self.counts.resize(keys, 0);
        }
        id
    }

    /// Ranks every symbol in symbol order, when symbols came since the last ranking (they are
    /// few, and come early).
    fn rank(&mut self) {
        let symbols = self.ids.symbols();
        if self.ranks.len() == symbols.len() {
            return;
        }
        let mut order: Vec<u32> = (0..symbols.len() as u32).collect();
        order.sort_unstable_by_key(|&i| symbols[i as usize]);
        self.ranks.resize(order.len(), 0);
        for (rank, &i) in order.iter().enumerate() {
            self.ranks[i as usize] = rank as u32;
        }
    }

    /// The least time of an update not yet extracted, given that everything before `done` was.
    fn least_pending(&self) -> Option<u64> {
        let entering = self.held.range(self.done..).next().map(|(&g0, _)| g0);
        let leaving = self.lengths.iter().filter_map(|&len| {
            let from = self.done.saturating_sub(len);
            self.held
                .range(from..)
                .map(|(&g0, _)| g0.saturating_add(len))
                .find(|&t| t >= self.done)
        });
        entering.into_iter().chain(leaving).min()
    }
}

impl Batcher<Vec<WindowEntry>> for WindowBatcher {
    fn insert(&mut self, container: &mut Vec<WindowEntry>) {
        // Entries come in runs of equal time: one map lookup per run, one per symbol run.
        for group in container.chunk_by(|a, b| a.0 == b.0) {
            let g0 = group[0].0;
            let mut list = self
                .held
                .remove(&g0)
                .unwrap_or_else(|| self.spare.pop().unwrap_or_default());
            for &(_, symbol, agg) in group {
                list.push((self.id(symbol), agg));
            }
            self.held.insert(g0, list);
        }
        container.clear();
    }
}

impl Extract for WindowBatcher {
    type Time = u64;
    type Output = SumsBatch;

    fn extract<'a>(
        &'a mut self,
        upper: AntichainRef<'_, u64>,
    ) -> (Option<Self::Output>, AntichainRef<'a, u64>) {
        // Time is totally ordered: `upper` is one time, or empty once the input is done.
        let upper = upper.first().copied().unwrap_or(u64::MAX);
        let batch = (upper > self.done).then(|| self.seal(upper)).flatten();
        self.done = self.done.max(upper);
        // Entries that have left every window are done with.
        let longest = self.lengths.iter().copied().max().unwrap_or(0);
        while let Some(entry) = self.held.first_entry() {
            if upper != u64::MAX && entry.key().saturating_add(longest) >= upper {
                break;
            }
            let mut list = entry.remove();
            list.clear();
            self.spare.push(list);
        }
        self.lower = self
            .least_pending()
            .map_or_else(Antichain::new, Antichain::from_elem);
        (batch, self.lower.borrow())
    }
}

impl WindowBatcher {
    /// The updates at times in `[done, upper)` as a batch: sorted by `(key, time)`, equal ones
    /// summed, zeros dropped; `None` when nothing is left.
    fn seal(&mut self, upper: u64) -> Option<SumsBatch> {
        self.rank();
        let windows = self.lengths.len();
        // The lists that make updates now, with their time and step, in time order (a list
        // enters at its `g0` and leaves window `w` at `g0 + W`).
        let mut steps: Vec<(u64, Step, &Entries)> = self
            .held
            .range(self.done..upper)
            .map(|(&g0, list)| (g0, Step::Enter, list))
            .collect();
        for (w, &len) in self.lengths.iter().enumerate() {
            let (from, to) = (self.done.saturating_sub(len), upper.saturating_sub(len));
            if from >= to {
                continue;
            }
            steps.extend(
                self.held
                    .range(from..to)
                    .map(|(&g0, list)| (g0 + len, Step::Leave(w as u8), list))
                    .filter(|&(t, _, _)| t >= self.done && t < upper),
            );
        }
        // Stable: at equal times, entries before exits, exits in window order.
        steps.sort_by_key(|&(time, _, _)| time);
        // Count each key's updates; the keys present, in key order.
        let counts = &mut self.counts;
        let mut present: Vec<u32> = Vec::new();
        let mut n = 0usize;
        let mut count = |key: u32| {
            let c = &mut counts[key as usize];
            if *c == 0 {
                present.push(key);
            }
            *c += 1;
            n += 1;
        };
        for &(_, step, list) in &steps {
            for &(id, _) in list {
                match step {
                    Step::Enter => (0..windows).for_each(|w| count(id * windows as u32 + w as u32)),
                    Step::Leave(w) => count(id * windows as u32 + u32::from(w)),
                }
            }
        }
        if n == 0 {
            return None;
        }
        let ranks = &self.ranks;
        let wn = windows as u32;
        present.sort_unstable_by_key(|&key| (ranks[(key / wn) as usize], key % wn));
        let mut at = 0u32;
        for &key in &present {
            let c = &mut self.counts[key as usize];
            (*c, at) = (at, at + *c);
        }
        // Each update's place, stably: within a key, updates stay in time order. An update is
        // named by its step, its entry and whether it is an exit.
        let mut placed: Vec<(u32, u32)> = vec![(0, 0); n];
        for (s, &(_, step, list)) in steps.iter().enumerate() {
            for (i, &(id, _)) in list.iter().enumerate() {
                let mut place = |key: u32| {
                    let slot = &mut self.counts[key as usize];
                    placed[*slot as usize] = (s as u32, i as u32);
                    *slot += 1;
                };
                match step {
                    Step::Enter => (0..wn).for_each(|w| place(id * wn + w)),
                    Step::Leave(w) => place(id * wn + u32::from(w)),
                }
            }
        }
        // Each key's updates, summed per time, straight into the batch's columns.
        let mut storage = OrdKeyStorage::<Vector<SumsUpdate>> {
            keys: Vec::with_capacity(present.len()),
            upds: Upds::with_capacity(present.len() + 1, n),
        };
        let upds = &mut storage.upds;
        let mut group = placed.into_iter();
        let mut start = 0u32;
        for &key in &present {
            let end = self.counts[key as usize];
            let first = upds.times.len();
            for (s, i) in group.by_ref().take((end - start) as usize) {
                let (time, step, list) = steps[s as usize];
                let agg = list[i as usize].1;
                let fresh = match (upds.times.last(), upds.diffs.last_mut()) {
                    (Some(&t), Some(sum)) if upds.times.len() > first && t == time => {
                        match step {
                            Step::Enter => *sum += agg,
                            Step::Leave(_) => *sum -= agg,
                        }
                        false
                    }
                    _ => true,
                };
                if fresh {
                    let mut diff = Agg::default();
                    match step {
                        Step::Enter => diff += agg,
                        Step::Leave(_) => diff -= agg,
                    }
                    upds.times.push(time);
                    upds.diffs.push(diff);
                }
            }
            start = end;
            // Drop what summed to zero; a key left with nothing is not in the batch.
            let mut kept = first;
            for j in first..upds.times.len() {
                if !upds.diffs[j].is_zero() {
                    upds.times.swap(kept, j);
                    upds.diffs.swap(kept, j);
                    kept += 1;
                }
            }
            upds.times.truncate(kept);
            upds.diffs.truncate(kept);
            if kept > first {
                let symbol = self.ids.symbols()[(key / wn) as usize];
                storage.keys.push((symbol, (key % wn) as u8));
                upds.offs.push_ref(kept);
            }
        }
        for &key in &present {
            self.counts[key as usize] = 0;
        }
        let updates = storage.upds.times.len();
        (updates > 0).then(|| OrdKeyBatch {
            storage,
            updates,
            value: SumsBatch::create_value(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decimal::Fixed;
    use differential_dataflow::trace::{Cursor, Navigable};
    use rand::{Rng, SeedableRng};

    /// Every update of a batch as `(key, time, diff)`.
    fn updates(batch: &SumsBatch) -> Vec<(WindowKey, u64, Agg)> {
        let mut out = Vec::new();
        let mut cursor = batch.cursor();
        while let Some(key) = cursor.get_key(batch) {
            cursor.map_times(batch, |t, d| out.push((*key, *t, *d)));
            cursor.step_key(batch);
        }
        out
    }

    /// Against a from-scratch list of every update, consolidated, for random entries
    /// extracted at random uppers: the same updates, in `(key, time)` order, and a lower
    /// that is the least time still owed.
    #[test]
    fn extracts_what_a_from_scratch_list_holds() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        for _ in 0..50 {
            let lengths = [rng.random_range(1..6u64), rng.random_range(1..12u64)];
            let symbols: Vec<Symbol> = ["B", "A", "C"]
                .iter()
                .map(|s| Symbol::new(s).unwrap())
                .collect();
            let mut batcher = WindowBatcher::new(&lengths);
            let mut expected: Vec<(WindowKey, u64, Agg)> = Vec::new();
            let mut got: Vec<(WindowKey, u64, Agg)> = Vec::new();
            let mut frontier = 0u64;
            for _ in 0..30 {
                let mut entries: Vec<WindowEntry> = (0..rng.random_range(0..6))
                    .map(|_| {
                        let g0 = frontier + rng.random_range(0..4);
                        let symbol = symbols[rng.random_range(0..symbols.len())];
                        let price = Fixed::from_units(rng.random_range(1..4) * 100_000_000);
                        (
                            g0,
                            symbol,
                            Agg::tick(price, Fixed::from_units(100_000_000), 0, None),
                        )
                    })
                    .collect();
                entries.sort_by_key(|e| e.0);
                for &(g0, symbol, agg) in &entries {
                    for (w, len) in lengths.iter().enumerate() {
                        expected.push(((symbol, w as u8), g0, agg));
                        let mut gone = Agg::default();
                        gone -= agg;
                        expected.push(((symbol, w as u8), g0 + len, gone));
                    }
                }
                batcher.insert(&mut entries);
                frontier += rng.random_range(0..4);
                let (batch, lower) = batcher.extract(Antichain::from_elem(frontier).borrow());
                let mut batch = batch.map(|b| updates(&b)).unwrap_or_default();
                assert!(batch.is_sorted_by_key(|(k, t, _)| (*k, *t)));
                assert!(batch.iter().all(|(_, t, _)| *t < frontier));
                got.append(&mut batch);
                // The lower is the least time still owed (sums that cancel included).
                let owed = expected
                    .iter()
                    .map(|u| u.1)
                    .filter(|&t| t >= frontier)
                    .min();
                assert_eq!(lower.first().copied(), owed);
            }
            let (batch, lower) = batcher.extract(Antichain::new().borrow());
            got.extend(batch.map(|b| updates(&b)).unwrap_or_default());
            assert!(lower.is_empty());
            differential_dataflow::consolidation::consolidate_updates(&mut expected);
            differential_dataflow::consolidation::consolidate_updates(&mut got);
            assert_eq!(got, expected);
        }
    }
}
