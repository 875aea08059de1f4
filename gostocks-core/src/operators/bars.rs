//! `bars`: tumbling OHLCV bars per symbol with an EMA of closes.

use std::collections::{BTreeMap, HashMap};

use differential_dataflow::{AsCollection, VecCollection};
use timely::dataflow::StreamVec;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::operator::Operator;

use super::sequence::Sequenced;
use crate::decimal::Fixed;
use crate::indicators::{Agg, Ema};
use crate::span::Span;
use crate::stats::{BarCore, BarRow};
use crate::symbol::Symbol;

/// A trade as a bar sees it; sorts by `(t, seq)`.
type BarTick = (u64, u64, Fixed, Fixed);

/// Tumbling bars.
pub trait Bars<'scope> {
    /// Final bars keyed by `(symbol, bar index, start_ns)`.
    ///
    /// A bar `[kB, (k+1)B)` is only ever final, so every trade is placed at the bar's end time
    /// `(k+1)B` (a grid time, as the resolution divides `B`): the reduce then runs once per bar,
    /// when its last trade can no longer arrive.
    fn bar_cores(self, bars: &[Span]) -> VecCollection<'scope, u64, ((Symbol, u8, u64), BarCore)>;
}

impl<'scope> Bars<'scope> for StreamVec<'scope, u64, Sequenced> {
    fn bar_cores(self, bars: &[Span]) -> VecCollection<'scope, u64, ((Symbol, u8, u64), BarCore)> {
        let sizes: Vec<u64> = bars.iter().map(Span::ns).collect();
        self.unary(Pipeline, "BarContributions", move |_cap, _info| {
            move |input, output| {
                input.for_each_stamp(|cap, data| {
                    let Some(cap) = cap.retain_least(output.output_index()) else {
                        return;
                    };
                    let mut session = output.session(&cap);
                    for container in data {
                        for s in container.iter() {
                            let t = &s.trade;
                            for (b, size) in sizes.iter().enumerate() {
                                let start = t.time_ns / size * size;
                                let tick: BarTick = (t.time_ns, t.seq, t.price, t.size);
                                session.give((
                                    ((t.symbol, b as u8, start), tick),
                                    start + size,
                                    1isize,
                                ));
                            }
                        }
                    }
                });
            }
        })
        .as_collection()
        .reduce_named(
            "BarContent",
            |_key, ticks: &[(&BarTick, isize)], out: &mut Vec<(BarCore, isize)>| {
                let (first, last) = (ticks[0].0, ticks[ticks.len() - 1].0);
                let mut core = BarCore {
                    open: first.2,
                    high: first.2,
                    low: first.2,
                    close: last.2,
                    agg: Agg::default(),
                };
                for &(&(t, _, price, size), n) in ticks {
                    core.high = core.high.max(price);
                    core.low = core.low.min(price);
                    for _ in 0..n {
                        core.agg += Agg::tick(price, size, t, None);
                    }
                }
                out.push((core, 1));
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
                let mut pending: BTreeMap<u64, (_, Vec<(((Symbol, u8, u64), BarCore), isize)>)> =
                    BTreeMap::new();
                let mut emas: HashMap<(Symbol, u8), Ema> = HashMap::new();
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
                        let (cap, mut updates) = entry.remove();
                        differential_dataflow::consolidation::consolidate(&mut updates);
                        let mut session = output.session(&cap);
                        for (((symbol, bar, start_ns), core), diff) in updates {
                            if diff <= 0 {
                                continue;
                            }
                            let ema = emas
                                .entry((symbol, bar))
                                .or_insert_with(|| Ema::new(span))
                                .update(core.close.to_f64());
                            session.give(BarRow {
                                symbol,
                                bar,
                                start_ns,
                                core,
                                ema,
                            });
                        }
                    }
                }
            })
    }
}
