//! `defer`: holds updates dated in the future until event time reaches them.

use std::collections::BTreeMap;

use timely::dataflow::StreamVec;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::Capability;
use timely::dataflow::operators::generic::operator::Operator;

/// Updates of one time waiting for the frontier, with the capability to send them at it.
type Held<D, R> = (Capability<u64>, Vec<(D, u64, R)>);

/// Updates `(data, time, diff)` whose time lies ahead of the stream's frontier.
pub trait Defer<'scope, D, R> {
    /// Passes each update on once the frontier has reached its time, at that time.
    ///
    /// Windows schedule their exits when ticks enter (`+agg` at `g`, `-agg` at `g + W`). Sent
    /// straight into an arrangement, an exit would wait in its batcher for `W`, and the batcher
    /// re-sorts everything it holds at every advance of the frontier: the cost of an advance would
    /// grow with the window, and a fine grid (many advances) would make it quadratic. Held here
    /// in a map by time, an update costs one insertion and one removal.
    ///
    /// # Examples
    /// ```
    /// use gostocks_core::operators::Defer;
    /// use timely::dataflow::operators::{Capture, ToStream, capture::Extract};
    ///
    /// let captured = timely::example(|scope| {
    ///     vec![("in", 0u64, 1isize), ("out", 5, -1)].to_stream(scope).defer().capture()
    /// });
    /// // Each update travels in a message of its own time.
    /// let out = captured.extract();
    /// assert_eq!(out, vec![(0, vec![("in", 0, 1)]), (5, vec![("out", 5, -1)])]);
    /// ```
    fn defer(self) -> StreamVec<'scope, u64, (D, u64, R)>;
}

impl<'scope, D: Clone + 'static, R: Clone + 'static> Defer<'scope, D, R>
    for StreamVec<'scope, u64, (D, u64, R)>
{
    fn defer(self) -> StreamVec<'scope, u64, (D, u64, R)> {
        self.unary_frontier(Pipeline, "Defer", |_cap, _info| {
            let mut held: BTreeMap<u64, Held<D, R>> = BTreeMap::new();
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
                // Due: no update of an earlier time can still arrive.
                while let Some(entry) = held.first_entry() {
                    if frontier.less_than(entry.key()) {
                        break;
                    }
                    let (cap, mut updates) = entry.remove();
                    output.session(&cap).give_container(&mut updates);
                }
            }
        })
    }
}
