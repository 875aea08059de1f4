//! Folding records by key before they travel on.

use std::collections::hash_map::Entry;
use std::hash::Hash;

use rustc_hash::FxHashMap as HashMap;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::StreamVec;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::OutputBuilder;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
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

    /// Every key with its merged value, in the order the keys first came, emptying the folder.
    pub(crate) fn drain(&mut self) -> impl Iterator<Item = (K, V)> + '_ {
        self.map.clear();
        self.values.drain(..)
    }
}

/// A pre-aggregation: each record of a message goes to `add`, then `flush` sends on what it
/// folded. Whatever it pushes is sent under the message's capability (records may carry later
/// times of their own).
pub(crate) trait Fold<I> {
    /// What the fold sends on.
    type Out;
    /// Folds one record; may push finished output.
    fn add(&mut self, record: &I, out: &mut Vec<Self::Out>);
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

/// The streams of [`fan_out`]: one per fold.
pub(crate) type FannedOut<'scope, A, B, C> = (
    StreamVec<'scope, u64, A>,
    StreamVec<'scope, u64, B>,
    StreamVec<'scope, u64, C>,
);

/// Three folds over `stream` in one pass, each with its own output. Three consumers of one
/// stream would each get a copy of every message but the last; this reads it once.
pub(crate) fn fan_out<'scope, I, A, B, C>(
    stream: StreamVec<'scope, u64, I>,
    name: &str,
    (mut a, mut b, mut c): (A, B, C),
) -> FannedOut<'scope, A::Out, B::Out, C::Out>
where
    I: Clone + 'static,
    A: Fold<I> + 'static,
    B: Fold<I> + 'static,
    C: Fold<I> + 'static,
    A::Out: Clone + 'static,
    B::Out: Clone + 'static,
    C::Out: Clone + 'static,
{
    let mut builder = OperatorBuilder::new(name.to_owned(), stream.scope());
    let mut input = builder.new_input(stream, Pipeline);
    let (a_out, a_stream) = builder.new_output::<Vec<A::Out>>();
    let (b_out, b_stream) = builder.new_output::<Vec<B::Out>>();
    let (c_out, c_stream) = builder.new_output::<Vec<C::Out>>();
    let mut a_out = OutputBuilder::<u64, CapacityContainerBuilder<Vec<A::Out>>>::from(a_out);
    let mut b_out = OutputBuilder::<u64, CapacityContainerBuilder<Vec<B::Out>>>::from(b_out);
    let mut c_out = OutputBuilder::<u64, CapacityContainerBuilder<Vec<C::Out>>>::from(c_out);
    builder.build(move |_initial| {
        let (mut a_buf, mut b_buf, mut c_buf) = (Vec::new(), Vec::new(), Vec::new());
        move |_frontiers| {
            input.for_each_stamp(|cap, data| {
                for container in data {
                    for record in container.iter() {
                        a.add(record, &mut a_buf);
                        b.add(record, &mut b_buf);
                        c.add(record, &mut c_buf);
                    }
                }
                a.flush(&mut a_buf);
                b.flush(&mut b_buf);
                c.flush(&mut c_buf);
                // A sent container comes back holding anything: empty it.
                if !a_buf.is_empty()
                    && let Some(cap) = cap.retain_least(0)
                {
                    a_out.activate().session(&cap).give_container(&mut a_buf);
                    a_buf.clear();
                }
                if !b_buf.is_empty()
                    && let Some(cap) = cap.retain_least(1)
                {
                    b_out.activate().session(&cap).give_container(&mut b_buf);
                    b_buf.clear();
                }
                if !c_buf.is_empty()
                    && let Some(cap) = cap.retain_least(2)
                {
                    c_out.activate().session(&cap).give_container(&mut c_buf);
                    c_buf.clear();
                }
            });
        }
    });
    (a_stream, b_stream, c_stream)
}
