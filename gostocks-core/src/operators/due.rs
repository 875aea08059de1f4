//! `DueBatcher`: a differential batcher for updates mostly dated in the future.
//!
//! Windows schedule their exits when cells enter: `+agg` at `g`, `-agg` at `g + W`. Differential's
//! merge batcher keeps what is not yet due in its merge ladder, and every extraction merges and
//! splits all of it again: the cost of an advance would grow with the window. This batcher files
//! updates by time as they come (one map lookup per run of equal time), and an extraction takes
//! the due times off the front of the map, sorts and consolidates them once, and seals them.
//! An entry and an exit of the same window at the same time meet here and cancel into one net
//! difference before they reach the arrangement.

use std::collections::BTreeMap;

use differential_dataflow::batcher::merge::Sealer;
use differential_dataflow::batcher::{Batcher, Extract};
use differential_dataflow::difference::Semigroup;
use differential_dataflow::trace::implementations::Vector;
use differential_dataflow::trace::implementations::ord_neu::{OrdKeyBatch, VecOrdKeyBuilder};
use timely::progress::frontier::{Antichain, AntichainRef};

use super::runs::settle;

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
    run: Vec<KeyUpdate<K, R>>,
    lower: Antichain<u64>,
}

impl<K, R> Default for DueBatcher<K, R> {
    fn default() -> Self {
        DueBatcher {
            held: BTreeMap::new(),
            run: Vec::new(),
            lower: Antichain::new(),
        }
    }
}

impl<K, R> Batcher<Vec<KeyUpdate<K, R>>> for DueBatcher<K, R>
where
    K: Ord + Clone + 'static,
    R: Semigroup + Ord + Clone + 'static,
{
    fn insert(&mut self, container: &mut Vec<KeyUpdate<K, R>>) {
        for update in container.drain(..) {
            if let Some(time) = self.run.first().map(|u| u.1)
                && time != update.1
            {
                settle(&mut self.held, time, &mut self.run);
            }
            self.run.push(update);
        }
        if let Some(time) = self.run.first().map(|u| u.1) {
            settle(&mut self.held, time, &mut self.run);
        }
    }
}

impl<K, R> Extract for DueBatcher<K, R>
where
    K: Ord + Clone + 'static,
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
        let mut times = std::mem::replace(&mut self.held, later).into_values();
        let mut due = times.next().unwrap_or_default();
        for mut updates in times {
            due.append(&mut updates);
        }
        let due = consolidated(due);
        self.lower = self
            .held
            .keys()
            .next()
            .map_or_else(Antichain::new, |&t| Antichain::from_elem(t));
        let batch = if due.is_empty() {
            None
        } else {
            VecOrdKeyBuilder::<K, u64, R>::seal(&mut vec![due])
        };
        (batch, self.lower.borrow())
    }
}

/// The updates sorted by `(key, time)`, equal ones summed, zeros dropped. Diffs can be large
/// (window sums are 128 bytes): the sort moves small `(key, time, index)` references, and each
/// update is copied once, into its place.
fn consolidated<K: Ord + Clone, R: Semigroup + Clone>(
    updates: Vec<KeyUpdate<K, R>>,
) -> Vec<KeyUpdate<K, R>> {
    let mut order: Vec<(&K, u64, u32)> = updates
        .iter()
        .enumerate()
        .map(|(i, ((k, ()), t, _))| (k, *t, i as u32))
        .collect();
    order.sort_unstable();
    let mut out: Vec<KeyUpdate<K, R>> = Vec::with_capacity(updates.len());
    let mut last: Option<(&K, u64)> = None;
    for (k, t, i) in order {
        let (_, _, diff) = &updates[i as usize];
        match out.last_mut() {
            Some((_, _, sum)) if last == Some((k, t)) => sum.plus_equals(diff),
            _ => {
                out.push(updates[i as usize].clone());
                last = Some((k, t));
            }
        }
    }
    out.retain(|(_, _, diff)| !diff.is_zero());
    out
}
