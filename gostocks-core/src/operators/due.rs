//! `DueBatcher`: a differential batcher for updates mostly dated in the future.
//!
//! Windows schedule their exits when cells enter: `+agg` at `g`, `-agg` at `g + W`. Differential's
//! merge batcher keeps what is not yet due in its merge ladder, and every extraction merges and
//! splits all of it again: the cost of an advance would grow with the window. This batcher files
//! updates by time as they come (one map lookup per run of equal time), and an extraction takes
//! the due times off the front of the map, groups them by key (a counting sort), consolidates
//! them and seals them.
//! An entry and an exit of the same window at the same time meet here and cancel into one net
//! difference before they reach the arrangement.

use std::collections::BTreeMap;
use std::hash::Hash;

use rustc_hash::FxHashMap as HashMap;

use differential_dataflow::batcher::{Batcher, Extract};
use differential_dataflow::difference::Semigroup;
use differential_dataflow::trace::implementations::BatchContainer;
use differential_dataflow::trace::implementations::Vector;
use differential_dataflow::trace::implementations::ord_neu::key_batch::OrdKeyStorage;
use differential_dataflow::trace::implementations::ord_neu::{OrdKeyBatch, Upds};
use timely::progress::frontier::{Antichain, AntichainRef};

/// An update of a key-only arrangement over `u64` times.
pub type KeyUpdate<K, R> = ((K, ()), u64, R);

/// Files updates by time; see the [module documentation](self).
///
/// # Examples
/// ```
/// use differential_dataflow::batcher::{Batcher, Extract};
/// use gostocks_core::operators::DueBatcher;
/// use timely::progress::frontier::Antichain;
///
/// let mut batcher = DueBatcher::<&str, isize>::default();
/// batcher.insert(&mut vec![(("a", ()), 5, 1), (("a", ()), 1, 1), (("a", ()), 5, -1)]);
/// // At 3 only the update at 1 is due; the one at 5 is held, and the batcher says so.
/// let (batch, lower) = batcher.extract(Antichain::from_elem(3).borrow());
/// assert_eq!(batch.unwrap().updates, 1);
/// assert_eq!(lower.first(), Some(&5));
/// // The two updates at 5 cancel: nothing to seal, nothing held.
/// let (batch, lower) = batcher.extract(Antichain::from_elem(6).borrow());
/// assert!(batch.is_none());
/// assert!(lower.is_empty());
/// ```
pub struct DueBatcher<K, R> {
    held: BTreeMap<u64, Vec<KeyUpdate<K, R>>>,
    /// Emptied lists of sealed times, for later ones: a fresh list per time would grow (and
    /// copy its updates) all over again.
    spare: Vec<Vec<KeyUpdate<K, R>>>,
    lower: Antichain<u64>,
}

impl<K, R> Default for DueBatcher<K, R> {
    fn default() -> Self {
        DueBatcher {
            held: BTreeMap::new(),
            spare: Vec::new(),
            lower: Antichain::new(),
        }
    }
}

impl<K, R> Batcher<Vec<KeyUpdate<K, R>>> for DueBatcher<K, R>
where
    K: Ord + Hash + Clone + 'static,
    R: Semigroup + Ord + Clone + 'static,
{
    fn insert(&mut self, container: &mut Vec<KeyUpdate<K, R>>) {
        // Updates come in runs of equal time: one map lookup and one copy per run.
        for run in container.chunk_by(|a, b| a.1 == b.1) {
            self.held
                .entry(run[0].1)
                .or_insert_with(|| self.spare.pop().unwrap_or_default())
                .extend_from_slice(run);
        }
        container.clear();
    }
}

impl<K, R> Extract for DueBatcher<K, R>
where
    K: Ord + Hash + Clone + 'static,
    R: Semigroup + Ord + Clone + 'static,
{
    type Time = u64;
    type Output = OrdKeyBatch<Vector<KeyUpdate<K, R>>>;

    fn extract<'a>(
        &'a mut self,
        upper: AntichainRef<'_, u64>,
    ) -> (Option<Self::Output>, AntichainRef<'a, u64>) {
        // Time is totally ordered: `upper` is one time, or empty once the input is done.
        let later = match upper.first() {
            Some(&time) => self.held.split_off(&time),
            None => BTreeMap::new(),
        };
        let due: Vec<Vec<KeyUpdate<K, R>>> = std::mem::replace(&mut self.held, later)
            .into_values()
            .collect();
        self.lower = self
            .held
            .keys()
            .next()
            .map_or_else(Antichain::new, |&t| Antichain::from_elem(t));
        let batch = sealed(&due);
        self.spare.extend(due.into_iter().map(|mut run| {
            run.clear();
            run
        }));
        (batch, self.lower.borrow())
    }
}

/// The updates of `runs` (given in time order) as a batch: sorted by `(key, time)`, equal ones
/// summed, zeros dropped; `None` when nothing is left.
///
/// A counting sort: a batch holds few distinct keys (a worker's windows) and many updates, and
/// the runs come in time order, so grouping by key (stably) is all the sorting there is to do.
/// Diffs can be large (window sums are 128 bytes): each update is copied once, into the batch's
/// own columns. (Differential's builder stages every key's updates and consolidates them again,
/// which here they are already.)
fn sealed<K, R>(runs: &[Vec<KeyUpdate<K, R>>]) -> Option<OrdKeyBatch<Vector<KeyUpdate<K, R>>>>
where
    K: Ord + Hash + Clone + 'static,
    R: Semigroup + Ord + Clone + 'static,
{
    let n: usize = runs.iter().map(Vec::len).sum();
    if n == 0 {
        return None;
    }
    // Each update's key as a dense id, in order of first appearance.
    let mut ids: HashMap<&K, u32> = HashMap::default();
    let mut keys: Vec<&K> = Vec::new();
    let mut counts: Vec<usize> = Vec::new();
    let mut of: Vec<u32> = Vec::with_capacity(n);
    for ((k, ()), _, _) in runs.iter().flatten() {
        let id = *ids.entry(k).or_insert_with(|| {
            keys.push(k);
            counts.push(0);
            (keys.len() - 1) as u32
        });
        counts[id as usize] += 1;
        of.push(id);
    }
    // Where each key's updates start, keys in order.
    let mut by_key: Vec<u32> = (0..keys.len() as u32).collect();
    by_key.sort_unstable_by_key(|&id| keys[id as usize]);
    let mut start = vec![0usize; keys.len()];
    let mut at = 0;
    for &id in &by_key {
        start[id as usize] = at;
        at += counts[id as usize];
    }
    // Place each update's position, stably: within a key, updates stay in time order.
    let mut placed: Vec<(u32, u32)> = vec![(0, 0); n];
    let positions = runs
        .iter()
        .enumerate()
        .flat_map(|(r, run)| (0..run.len()).map(move |i| (r as u32, i as u32)));
    for (&id, pos) in of.iter().zip(positions) {
        let slot = &mut start[id as usize];
        placed[*slot] = pos;
        *slot += 1;
    }
    // Each key's updates, summed per time, straight into the batch's columns.
    let mut storage = OrdKeyStorage::<Vector<KeyUpdate<K, R>>> {
        keys: Vec::with_capacity(keys.len()),
        upds: Upds::with_capacity(keys.len() + 1, n),
    };
    let upds = &mut storage.upds;
    let mut group = placed.into_iter();
    for &id in &by_key {
        let first = upds.times.len();
        for (r, i) in group.by_ref().take(counts[id as usize]) {
            let (_, time, diff) = &runs[r as usize][i as usize];
            match (upds.times.last(), upds.diffs.last_mut()) {
                (Some(t), Some(sum)) if upds.times.len() > first && t == time => {
                    sum.plus_equals(diff);
                }
                _ => {
                    upds.times.push(*time);
                    upds.diffs.push(diff.clone());
                }
            }
        }
        // Drop what summed to zero; a key left with nothing is not in the batch.
        let mut kept = first;
        for i in first..upds.times.len() {
            if !upds.diffs[i].is_zero() {
                upds.times.swap(kept, i);
                upds.diffs.swap(kept, i);
                kept += 1;
            }
        }
        upds.times.truncate(kept);
        upds.diffs.truncate(kept);
        if kept > first {
            storage.keys.push(keys[id as usize].clone());
            upds.offs.push_ref(kept);
        }
    }
    let updates = storage.upds.times.len();
    (updates > 0).then(|| OrdKeyBatch {
        storage,
        updates,
        value: OrdKeyBatch::<Vector<KeyUpdate<K, R>>>::create_value(),
    })
}
