//! `defer`: holds updates dated in the future until event time reaches them.

use std::collections::BTreeMap;

use differential_dataflow::consolidation::consolidate_updates;
use differential_dataflow::difference::Semigroup;
use timely::dataflow::StreamVec;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::Capability;
use timely::dataflow::operators::generic::operator::Operator;

/// Updates of one time waiting for the frontier, with the capability to send them at it.
type Held<D, R> = (Capability<u64>, Vec<(D, u64, R)>);

/// Updates `(data, time, diff)` whose time lies ahead of the stream's frontier.
pub trait Defer<'scope, D, R> {
    /// Passes each update on once the frontier has reached its time, at that time, consolidated:
    /// the diffs of equal data at one time are summed, and updates that cancel are dropped.
    ///
    /// Windows schedule their exits when ticks enter (`+agg` at `g`, `-agg` at `g + W`). Sent
    /// straight into an arrangement, an exit would wait in its batcher for `W`, and the batcher
    /// re-sorts everything it holds at every advance of the frontier: the cost of an advance would
    /// grow with the window, and a fine grid (many advances) would make it quadratic. Held here
    /// in a map by time, an update costs one insertion and one removal. Consolidating here
    /// merges a window's entries and exits of one time into one update before the batcher sees
    /// them.
    ///
    /// # Examples
    /// ```
    /// use gostocks_core::operators::Defer;
    /// use timely::dataflow::operators::{Capture, ToStream, capture::Extract};
    ///
    /// let captured = timely::example(|scope| {
    ///     let updates = vec![("in", 0u64, 1isize), ("out", 5, -1), ("out", 5, -1), ("x", 5, 1), ("x", 5, -1)];
    ///     updates.to_stream(scope).defer().capture()
    /// });
    /// // Released when due, consolidated (here all at once: the input was complete).
    /// let out = captured.extract();
    /// let updates: Vec<_> = out.into_iter().flat_map(|(_, v)| v).collect();
    /// assert_eq!(updates, vec![("in", 0, 1), ("out", 5, -2)]);
    /// ```
    fn defer(self) -> StreamVec<'scope, u64, (D, u64, R)>;
}

impl<'scope, D: Ord + Clone + 'static, R: Semigroup + Clone + 'static> Defer<'scope, D, R>
    for StreamVec<'scope, u64, (D, u64, R)>
{
    fn defer(self) -> StreamVec<'scope, u64, (D, u64, R)> {
        self.unary_frontier(Pipeline, "Defer", |_cap, _info| {
            let mut held: BTreeMap<u64, Held<D, R>> = BTreeMap::new();
            let mut due: Vec<(D, u64, R)> = Vec::new();
            move |(input, frontier), output| {
                input.for_each_stamp(|cap, data| {
                    for container in data {
                        for update in container.drain(..) {
                            held.entry(update.1)
                                .or_insert_with(|| (cap.delayed(&update.1, 0), Vec::new()))
                                .1
                                .push(update);
                        }
                    }
                });
                // Due: no update of an earlier time can still arrive. Every due update travels
                // in one message under the least due time (each record keeps its own time), so a
                // fine grid does not cost a message per time.
                let mut first: Option<Capability<u64>> = None;
                while let Some(entry) = held.first_entry() {
                    if frontier.less_than(entry.key()) {
                        break;
                    }
                    let (cap, mut updates) = entry.remove();
                    first.get_or_insert(cap);
                    due.append(&mut updates);
                }
                if let Some(cap) = first {
                    consolidate_updates(&mut due);
                    output.session(&cap).give_container(&mut due);
                }
            }
        })
    }
}
