//! `bars`: tumbling OHLCV bars per symbol with an EMA of closes.

use std::collections::BTreeMap;

use rustc_hash::FxHashMap as HashMap;

use differential_dataflow::{AsCollection, VecCollection};
use timely::dataflow::StreamVec;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::operator::Operator;

use super::defer::Defer;
use super::runs::{RunFolder, fold_messages};
use super::sequence::Sequenced;
use crate::decimal::Fixed;
use crate::indicators::{Agg, Ema};
use crate::span::Span;
use crate::stats::{BarCore, BarRow};
use crate::symbol::Symbol;

/// The part of a bar seen in one batch: first and last trade by `(t, seq)`, extremes and sums.
/// Sorts by its first trade, so a bar's partials arrive at the reduce in time order.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct BarPartial {
    /// `(t, seq, price)` of the earliest trade.
    pub first: (u64, u64, Fixed),
    /// `(t, seq, price)` of the latest trade.
    pub last: (u64, u64, Fixed),
    /// Greatest price.
    pub high: Fixed,
    /// Least price.
    pub low: Fixed,
    /// Exact sums.
    pub agg: Agg,
}

impl BarPartial {
    fn absorb(&mut self, other: &BarPartial) {
        self.first = self.first.min(other.first);
        self.last = self.last.max(other.last);
        self.high = self.high.max(other.high);
        self.low = self.low.min(other.low);
        self.agg += other.agg;
    }
}

/// A bar: `(symbol, bar index, start_ns)`.
pub type BarKey = (Symbol, u8, u64);

/// A change of a final bar, as the EMA stage stashes it.
type BarUpdate = ((BarKey, BarCore), isize);

/// Tumbling bars.
pub trait Bars<'scope> {
    /// Final bars keyed by `(symbol, bar index, start_ns)`.
    ///
    /// A bar `[kB, (k+1)B)` is only ever final, so each batch's part of it is placed at the bar's
    /// end time `(k+1)B` (a grid time, as the resolution divides `B`): the reduce then runs once
    /// per bar, when no trade of it can still arrive. One bar length later the parts are
    /// retracted again (the bar leaves the collection, `-1`), which bounds the state.
    fn bar_cores(self, bars: &[Span]) -> VecCollection<'scope, u64, ((Symbol, u8, u64), BarCore)>;
}

impl<'scope> Bars<'scope> for StreamVec<'scope, u64, Sequenced> {
    fn bar_cores(self, bars: &[Span]) -> VecCollection<'scope, u64, ((Symbol, u8, u64), BarCore)> {
        let sizes: Vec<u64> = bars.iter().map(Span::ns).collect();
        // One folder per bar size, so that each sees its keys in runs. A bar's partial may mix
        // grid times: all of them lie at or before the bar's end.
        let mut parts: Vec<RunFolder<BarKey, BarPartial>> =
            sizes.iter().map(|_| RunFolder::new()).collect();
        fold_messages(self, "BarPartials", move |trade, out| match trade {
            Some(s) => {
                let t = &s.trade;
                let point = (t.time_ns, t.seq, t.price);
                let one = BarPartial {
                    first: point,
                    last: point,
                    high: t.price,
                    low: t.price,
                    agg: Agg::tick(t.price, t.size, t.time_ns, None),
                };
                for (b, size) in sizes.iter().enumerate() {
                    let start = t.time_ns / size * size;
                    parts[b].add((t.symbol, b as u8, start), one, |p, o| p.absorb(&o));
                }
            }
            None => {
                for (key, part) in parts.iter_mut().flat_map(|p| p.drain(|p, o| p.absorb(&o))) {
                    let end = key.2 + sizes[key.1 as usize];
                    out.push(((key, part), end, 1isize));
                    // Retracted once final and emitted, so the bar's state can be compacted
                    // away: memory does not grow with the length of the input.
                    out.push(((key, part), end + sizes[key.1 as usize], -1isize));
                }
            }
        })
        .defer()
        .as_collection()
        .reduce_named(
            "BarContent",
            |_key, parts: &[(&BarPartial, isize)], out: &mut Vec<(BarCore, isize)>| {
                let mut whole = *parts[0].0;
                for &(part, n) in parts {
                    for _ in 0..n {
                        whole.absorb(part);
                    }
                }
                // `whole` started as the first partial and absorbed it once more: take that back.
                whole.agg -= parts[0].0.agg;
                out.push((
                    BarCore {
                        open: whole.first.2,
                        high: whole.high,
                        low: whole.low,
                        close: whole.last.2,
                        agg: whole.agg,
                    },
                    1,
                ));
            },
        )
    }
}

/// Attaches the EMA of closes to final bars, in bar order per `(symbol, bar)`.
pub trait BarEma<'scope> {
    /// Emits each bar once final (the frontier passed its end), with
    /// `ema_k = a·close_k + (1 − a)·ema_{k−1}`, `a = 2/(span + 1)`.
    fn with_ema(self, span: u32) -> StreamVec<'scope, u64, BarRow>;
}

impl<'scope> BarEma<'scope> for VecCollection<'scope, u64, ((Symbol, u8, u64), BarCore)> {
    fn with_ema(self, span: u32) -> StreamVec<'scope, u64, BarRow> {
        type Update = (((Symbol, u8, u64), BarCore), u64, isize);
        let pact = Exchange::new(|((k, _), _, _): &Update| super::symbol_route(&k.0));
        self.inner
            .unary_frontier(pact, "BarEma", move |_cap, _info| {
                let mut pending: BTreeMap<u64, (_, Vec<BarUpdate>)> = BTreeMap::new();
                let mut emas: HashMap<(Symbol, u8), Ema> = HashMap::default();
                let mut ready: Vec<BarRow> = Vec::new();
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
                    let mut first_cap = None;
                    while let Some(entry) = pending.first_entry() {
                        if frontier.less_equal(entry.key()) {
                            break;
                        }
                        let (cap, mut updates) = entry.remove();
                        first_cap.get_or_insert(cap);
                        differential_dataflow::consolidation::consolidate(&mut updates);
                        for (((symbol, bar, start_ns), core), diff) in updates {
                            if diff <= 0 {
                                continue;
                            }
                            let ema = emas
                                .entry((symbol, bar))
                                .or_insert_with(|| Ema::new(span))
                                .update(core.close.to_f64());
                            ready.push(BarRow {
                                symbol,
                                bar,
                                start_ns,
                                core,
                                ema,
                            });
                        }
                    }
                    // Every bar made final now travels in one message, under the least time.
                    if let Some(cap) = first_cap {
                        output.session(&cap).give_iterator(ready.drain(..));
                    }
                }
            })
    }
}
