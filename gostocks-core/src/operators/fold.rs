//! Folds: what an operator makes of each record of a message before anything travels on
//! ([`Fold`], applied by [`fold_messages`] or by the sequencer as it makes cells), and
//! [`KeyFolder`], which merges values by key.

use std::collections::hash_map::Entry;
use std::hash::Hash;

use rustc_hash::FxHashMap as HashMap;
use timely::dataflow::StreamVec;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::operator::Operator;

/// Merges values by key. The map holds only each key's position: a value (which may be large)
/// is copied once, when its key first comes, and merged in place after that.
pub(crate) struct KeyFolder<K, V> {
    map: HashMap<K, u32>,
    values: Vec<(K, V)>,
}

impl<K: Eq + Hash + Copy, V> KeyFolder<K, V> {
    pub(crate) fn new() -> Self {
        KeyFolder {
            map: HashMap::default(),
            values: Vec::new(),
        }
    }

    /// Merges `value` under `key` with `merge(existing, new)`.
    #[inline]
    pub(crate) fn add(&mut self, key: K, value: V, merge: impl Fn(&mut V, V)) {
        match self.map.entry(key) {
            Entry::Occupied(e) => merge(&mut self.values[*e.get() as usize].1, value),
            Entry::Vacant(e) => {
                e.insert(self.values.len() as u32);
                self.values.push((key, value));
            }
        }
    }

    /// How many keys hold a value.
    pub(crate) fn len(&self) -> usize {
        self.values.len()
    }

    /// Every key with its merged value, in the order the keys first came, emptying the folder.
    pub(crate) fn drain(&mut self) -> impl Iterator<Item = (K, V)> + '_ {
        self.map.clear();
        self.values.drain(..)
    }
}

/// A pre-aggregation: each record of a batch (a message, for [`fold_messages`]; the cells of
/// the grid times made final at once, for the sequencer) goes to `add`, then `flush` pushes
/// what is still folded. Whatever it pushes is sent under a capability at or before every
/// record's time (records may carry later times of their own).
pub(crate) trait Fold<I> {
    /// What the fold sends on.
    type Out;
    /// Folds one record; may push finished output.
    fn add(&mut self, record: &I, out: &mut Vec<Self::Out>);
    /// `records` records are about to be added: a fold that pushes one output per record
    /// makes room for them at once rather than growing (and copying) its output step by step.
    fn expect(&mut self, _records: usize, _out: &mut Vec<Self::Out>) {}
    /// The message is done: pushes what is still folded.
    fn flush(&mut self, out: &mut Vec<Self::Out>);
}

/// Applies `fold` to every message of `stream`.
pub(crate) fn fold_messages<'scope, I, F>(
    stream: StreamVec<'scope, u64, I>,
    name: &str,
    mut fold: F,
) -> StreamVec<'scope, u64, F::Out>
where
    I: Clone + 'static,
    F: Fold<I> + 'static,
    F::Out: Clone + 'static,
{
    stream.unary(Pipeline, name, move |_cap, _info| {
        let mut out = Vec::new();
        move |input, output| {
            input.for_each_stamp(|cap, data| {
                let Some(cap) = cap.retain_least(output.output_index()) else {
                    return;
                };
                for container in data {
                    fold.expect(container.len(), &mut out);
                    for s in container.iter() {
                        fold.add(s, &mut out);
                    }
                }
                fold.flush(&mut out);
                output.session(&cap).give_container(&mut out);
                // A sent container comes back holding anything: empty it.
                out.clear();
            });
        }
    })
}
