//! `window_stats`: sliding-window statistics per symbol, maintained incrementally.

use std::collections::BTreeMap;

use differential_dataflow::{AsCollection, VecCollection};
use timely::dataflow::StreamVec;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::operator::Operator;

use super::sequence::{Point, Sequenced};
use crate::decimal::Fixed;
use crate::indicators::{Agg, quantize_log_return};
use crate::span::Span;
use crate::stats::{StatsRow, WindowCore};
use crate::symbol::Symbol;

/// Sliding-window statistics.
pub trait WindowStats<'scope> {
    /// For every symbol and window, the window's content at each grid time where it changed:
    /// a collection keyed by `(symbol, window index)`.
    ///
    /// Each trade enters its windows at its grid time `g0` with its exact [`Agg`] as the
    /// difference, and leaves them at `g0 + W` with the negated one; a `reduce` over distinct
    /// prices then yields the sums (added exactly) and the least and greatest price. Nothing is
    /// ever recomputed from floats, so an emptied window returns exactly to nothing.
    fn window_cores(
        self,
        windows: &[Span],
    ) -> VecCollection<'scope, u64, ((Symbol, u8), WindowCore)>;
}

impl<'scope> WindowStats<'scope> for StreamVec<'scope, u64, Sequenced> {
    fn window_cores(
        self,
        windows: &[Span],
    ) -> VecCollection<'scope, u64, ((Symbol, u8), WindowCore)> {
        let lengths: Vec<u64> = windows.iter().map(Span::ns).collect();
        self.unary(Pipeline, "WindowContributions", move |_cap, _info| {
            move |input, output| {
                input.for_each_stamp(|cap, data| {
                    let Some(cap) = cap.retain_least(output.output_index()) else {
                        return;
                    };
                    let g0 = *cap.time();
                    let mut session = output.session(&cap);
                    for container in data {
                        for s in container.iter() {
                            let t = &s.trade;
                            let ret = s.prev.map(|p| quantize_log_return(t.price, p.price));
                            let agg = Agg::tick(t.price, t.size, t.time_ns, ret);
                            let mut gone = agg;
                            differential_dataflow::difference::Abelian::negate(&mut gone);
                            for (w, len) in lengths.iter().enumerate() {
                                let key = (t.symbol, w as u8);
                                session.give(((key, t.price), g0, agg));
                                session.give(((key, t.price), g0 + len, gone));
                            }
                        }
                    }
                });
            }
        })
        .as_collection()
        .reduce_named(
            "WindowContent",
            |_key, prices: &[(&Fixed, Agg)], out: &mut Vec<(WindowCore, isize)>| {
                let mut agg = Agg::default();
                for (_, a) in prices {
                    agg += *a;
                }
                // Prices arrive sorted, and only prices still in the window have a non-zero sum.
                let min = *prices[0].0;
                let max = *prices[prices.len() - 1].0;
                out.push((WindowCore { agg, min, max }, 1));
            },
        )
    }
}

/// Turns window contents joined with the last trade per symbol into the changelog: one
/// [`StatsRow`] per `(symbol, window)` at each grid time where its content changed, emitted once
/// the time is final, in `(symbol, window)` order.
pub trait StatsChangelog<'scope> {
    /// See the trait.
    fn stats_changelog(self) -> StreamVec<'scope, u64, StatsRow>;
}

type Joined = (Symbol, ((u8, WindowCore), Point));

impl<'scope> StatsChangelog<'scope> for VecCollection<'scope, u64, Joined> {
    fn stats_changelog(self) -> StreamVec<'scope, u64, StatsRow> {
        let pact = Exchange::new(|(j, _, _): &(Joined, u64, isize)| super::symbol_route(&j.0));
        self.inner
            .unary_frontier(pact, "StatsChangelog", |_cap, _info| {
                let mut pending: BTreeMap<u64, (_, Vec<(Joined, isize)>)> = BTreeMap::new();
                move |(input, frontier), output| {
                    input.for_each_stamp(|cap, data| {
                        for container in data {
                            for (record, time, diff) in container.drain(..) {
                                let entry = pending
                                    .entry(time)
                                    .or_insert_with(|| (cap.delayed(&time, 0), Vec::new()));
                                entry.1.push((record, diff));
                            }
                        }
                    });
                    while let Some(entry) = pending.first_entry() {
                        if frontier.less_equal(entry.key()) {
                            break;
                        }
                        let time = *entry.key();
                        let (cap, mut updates) = entry.remove();
                        differential_dataflow::consolidation::consolidate(&mut updates);
                        // Sorted by (symbol, window, ...): a key's insertions and retractions are adjacent.
                        let mut session = output.session(&cap);
                        let mut i = 0;
                        while i < updates.len() {
                            let (sym, ((w, _), _)) = updates[i].0;
                            let mut row = StatsRow {
                                time_ns: time,
                                symbol: sym,
                                window: w,
                                core: None,
                                last: None,
                            };
                            while i < updates.len()
                                && (updates[i].0.0, updates[i].0.1.0.0) == (sym, w)
                            {
                                let ((_, ((_, core), last)), diff) = updates[i];
                                if diff > 0 {
                                    row.core = Some(core);
                                    row.last = Some(last.price);
                                }
                                i += 1;
                            }
                            session.give(row);
                        }
                    }
                }
            })
    }
}
