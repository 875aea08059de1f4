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
    /// // Released when due (here all at once: the input was complete), each at its own time.
    /// let out = captured.extract();
    /// let updates: Vec<_> = out.into_iter().flat_map(|(_, v)| v).collect();
    /// assert_eq!(updates, vec![("in", 0, 1), ("out", 5, -1)]);
    /// ```
    fn defer(self) -> StreamVec<'scope, u64, (D, u64, R)>;

    /// [`Defer::defer`] for the updates at least `horizon` past the time of the message that
    /// carries them; the others are passed on at once, in a message of that time. An update due
    /// soon gains nothing from being held: only long waits cost the batcher.
    ///
    /// # Examples
    /// ```
    /// use gostocks_core::operators::Defer;
    /// use timely::dataflow::operators::{Capture, ToStream, capture::Extract};
    ///
    /// let captured = timely::example(|scope| {
    ///     vec![("soon", 3u64, 1isize), ("late", 10, -1)].to_stream(scope).defer_beyond(5).capture()
    /// });
    /// let out: Vec<_> = captured.extract().into_iter().flat_map(|(_, v)| v).collect();
    /// assert_eq!(out, vec![("soon", 3, 1), ("late", 10, -1)]);
    /// ```
    fn defer_beyond(self, horizon: u64) -> StreamVec<'scope, u64, (D, u64, R)>;
}

impl<'scope, D: Clone + 'static, R: Clone + 'static> Defer<'scope, D, R>
    for StreamVec<'scope, u64, (D, u64, R)>
{
    fn defer(self) -> StreamVec<'scope, u64, (D, u64, R)> {
        self.defer_beyond(0)
    }

    fn defer_beyond(self, horizon: u64) -> StreamVec<'scope, u64, (D, u64, R)> {
        self.unary_frontier(Pipeline, "Defer", move |_cap, _info| {
            let mut held: BTreeMap<u64, Held<D, R>> = BTreeMap::new();
            let mut now: Vec<(D, u64, R)> = Vec::new();
            let mut run: Vec<(D, u64, R)> = Vec::new();
            let mut due: Vec<(D, u64, R)> = Vec::new();
            move |(input, frontier), output| {
                input.for_each_stamp(|cap, data| {
                    let Some(&time) = cap.least() else { return };
                    let soon = time.saturating_add(horizon);
                    // Updates of equal time come in runs: one map lookup per run.
                    let mut hold = |run: &mut Vec<(D, u64, R)>| {
                        if let Some(t) = run.first().map(|u| u.1) {
                            held.entry(t)
                                .or_insert_with(|| (cap.delayed(&t, 0), Vec::new()))
                                .1
                                .append(run);
                        }
                    };
                    for container in data {
                        for update in container.drain(..) {
                            if update.1 < soon {
                                now.push(update);
                                continue;
                            }
                            if run.first().is_some_and(|u| u.1 != update.1) {
                                hold(&mut run);
                            }
                            run.push(update);
                        }
                    }
                    hold(&mut run);
                    if !now.is_empty()
                        && let Some(cap) = cap.retain_least(output.output_index())
                    {
                        output.session(&cap).give_container(&mut now);
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
                    output.session(&cap).give_container(&mut due);
                }
            }
        })
    }
}
