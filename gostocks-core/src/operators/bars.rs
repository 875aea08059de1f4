//! `bars`: tumbling OHLCV bars per symbol with an EMA of closes.

use rustc_hash::FxHashMap as HashMap;

use differential_dataflow::{AsCollection, VecCollection};
use timely::dataflow::StreamVec;
use timely::dataflow::channels::pact::ParallelizationContract;
use timely::dataflow::operators::generic::operator::Operator;

use super::cells::{Cell, Partial};
use super::fold::{Fold, KeyFolder, fold_messages};
use super::stash::Stash;
use crate::indicators::Ema;
use crate::span::Span;
use crate::stats::{BarCore, BarRow};
use crate::symbol::Symbol;

/// A bar: `(symbol, bar index, start_ns)`.
pub type BarKey = (Symbol, u8, u64);

/// A change of a final bar, as the EMA stage stashes it.
type BarUpdate = ((BarKey, BarCore), isize);

/// Tumbling bars.
pub trait Bars<'scope> {
    /// Final bars keyed by `(symbol, bar index, start_ns)`, as a collection to which each bar
    /// is added (`+1`) at its end time `(k+1)B` once that time is final, and never changed.
    ///
    /// A bar `[kB, (k+1)B)` is only ever final: its parts (cells, each in one bar of every size)
    /// are merged as they arrive, and the bar is assembled once, when no trade of it can still
    /// arrive. Nothing is arranged: a `reduce` would index every part only to retract it a bar
    /// later, and the state here is only the bars still open.
    ///
    /// # Examples
    /// ```
    /// use gostocks_core::operators::{Bars, SequenceCells};
    /// use gostocks_core::{Span, Symbol, Trade};
    /// use timely::dataflow::operators::{Capture, ToStream, capture::Extract};
    ///
    /// let t = |time_ns, price: &str| Trade::new(
    ///     Symbol::new("X").unwrap(), time_ns, 0, price.parse().unwrap(), "1".parse().unwrap(),
    /// );
    /// let bars = [Span::new(4, "4ns")];
    /// let captured = timely::example(move |scope| {
    ///     let trades = vec![t(3, "11"), t(1, "10"), t(2, "9"), t(5, "12")].to_stream(scope);
    ///     let (cells, _) = trades.sequence_cells(1, &bars, false);
    ///     cells.bar_cores(&bars).inner.capture()
    /// });
    /// let out: Vec<_> = captured.extract().into_iter().flat_map(|(_, v)| v).collect();
    /// // The bar [0, 4) at its end 4, and the bar [4, 8) at 8.
    /// let ((key, core), time, diff) = out[0];
    /// assert_eq!((key.2, time, diff), (0, 4, 1));
    /// assert_eq!((core.open.to_string(), core.low.to_string(), core.close.to_string()), ("10".into(), "9".into(), "11".into()));
    /// assert_eq!((out[1].0.0.2, out[1].1, out[1].0.1.agg.count), (4, 8, 1));
    /// ```
    fn bar_cores(self, bars: &[Span]) -> VecCollection<'scope, u64, ((Symbol, u8, u64), BarCore)>;
}

impl<'scope> Bars<'scope> for StreamVec<'scope, u64, Cell> {
    fn bar_cores(self, bars: &[Span]) -> VecCollection<'scope, u64, ((Symbol, u8, u64), BarCore)> {
        let parts = fold_messages(self, "BarPartials", BarsFold::new(bars));
        let pact = super::route::symbol_pact(|(k, _, _): &(BarKey, Partial, u64)| &k.0);
        bar_cores_core(parts, pact)
    }
}

/// The parts of each bar in a message, merged, with the end time at which the bar is whole.
pub(crate) struct BarsFold {
    sizes: Vec<u64>,
    parts: KeyFolder<BarKey, Partial>,
}

impl BarsFold {
    pub(crate) fn new(bars: &[Span]) -> BarsFold {
        BarsFold {
            sizes: bars.iter().map(Span::ns).collect(),
            parts: KeyFolder::new(),
        }
    }
}

impl Fold<Cell> for BarsFold {
    type Out = (BarKey, Partial, u64);

    /// A bar's partial may mix grid times: all of them lie at or before the bar's end. A cell
    /// lies in one bar of every size (`cells` cuts at bar boundaries).
    #[inline]
    fn add(&mut self, c: &Cell, _out: &mut Vec<Self::Out>) {
        let mut part = c.part;
        // A bar's sums are its trades' own: returns are a window statistic.
        (part.agg.n_ret, part.agg.sum_r, part.agg.sum_r2) = (0, 0, 0);
        for (b, size) in self.sizes.iter().enumerate() {
            let start = part.first.0 / size * size;
            self.parts
                .add((c.symbol, b as u8, start), part, |p, o| p.absorb(&o));
        }
    }

    fn flush(&mut self, out: &mut Vec<Self::Out>) {
        out.reserve(self.parts.len());
        for (key, part) in self.parts.drain() {
            let end = key.2 + self.sizes[key.1 as usize];
            out.push((key, part, end));
        }
    }
}

/// [`Bars::bar_cores`] from what [`BarsFold`] makes of the cells, the parts of bars brought
/// to their symbol's worker by `pact` ([`Pipeline`](timely::dataflow::channels::pact::Pipeline)
/// when they are there already): each bar is emitted once its end time is final.
pub(crate) fn bar_cores_core<'scope, P>(
    parts: StreamVec<'scope, u64, (BarKey, Partial, u64)>,
    pact: P,
) -> VecCollection<'scope, u64, ((Symbol, u8, u64), BarCore)>
where
    P: ParallelizationContract<u64, Vec<(BarKey, Partial, u64)>>,
{
    parts
        .unary_frontier(pact, "BarAssemble", |_cap, _info| {
            // Parts of bars waiting for their end time to be final, by end.
            let mut open: Stash<HashMap<BarKey, Partial>> = Stash::new(1);
            let mut ready = Vec::new();
            move |(input, frontier), output| {
                input.for_each_stamp(|cap, data| {
                    for container in data {
                        for (key, part, end) in container.drain(..) {
                            open.at(&cap, end)
                                .entry(key)
                                .and_modify(|p| p.absorb(&part))
                                .or_insert(part);
                        }
                    }
                });
                // A bar ending at `end` takes trades up to the cell at grid time `end`: it is
                // whole once the frontier has passed `end`. Every bar made whole now travels
                // in one message under the least end (each record keeps its own time).
                let is_final = |end| !frontier.less_equal(&end);
                ready.reserve(open.finals(is_final).map(HashMap::len).sum());
                open.release(is_final, |end, bars| {
                    ready.extend(bars.drain().map(|(key, p)| {
                        let core = BarCore {
                            open: p.first.2,
                            high: p.high,
                            low: p.low,
                            close: p.last.2,
                            agg: p.agg,
                        };
                        ((key, core), end, 1isize)
                    }));
                });
                if !ready.is_empty()
                    && let Some(cap) = open.cap(0)
                {
                    output.session(cap).give_container(&mut ready);
                    // A sent container comes back holding anything: empty it.
                    ready.clear();
                }
                open.settle();
            }
        })
        .as_collection()
}

/// Attaches the EMA of closes to final bars, in bar order per `(symbol, bar)`.
pub trait BarEma<'scope> {
    /// Emits each bar once final (the frontier passed its end), with
    /// `ema_k = a·close_k + (1 − a)·ema_{k−1}`, `a = 2/(span + 1)`.
    ///
    /// # Examples
    /// ```
    /// use gostocks_core::operators::{BarEma, Bars, SequenceCells};
    /// use gostocks_core::{Span, Symbol, Trade};
    /// use timely::dataflow::operators::{Capture, ToStream, capture::Extract};
    ///
    /// let t = |time_ns, price: &str| Trade::new(
    ///     Symbol::new("X").unwrap(), time_ns, 0, price.parse().unwrap(), "1".parse().unwrap(),
    /// );
    /// let bars = [Span::new(4, "4ns")];
    /// let captured = timely::example(move |scope| {
    ///     let trades = vec![t(1, "10"), t(5, "13"), t(9, "16")].to_stream(scope);
    ///     let (cells, _) = trades.sequence_cells(1, &bars, false);
    ///     cells.bar_cores(&bars).with_ema(3).capture()
    /// });
    /// let rows: Vec<_> = captured.extract().into_iter().flat_map(|(_, v)| v).collect();
    /// // Span 3: a = 1/2. The first EMA is the first close; then halfway to each new close.
    /// let emas: Vec<_> = rows.iter().map(|r| (r.start_ns, r.ema)).collect();
    /// assert_eq!(emas, [(0, 10.0), (4, 11.5), (8, 13.75)]);
    /// ```
    fn with_ema(self, span: u32) -> StreamVec<'scope, u64, BarRow>;
}

/// An update of the collection of final bars.
type BarCoreUpdate = (((Symbol, u8, u64), BarCore), u64, isize);

impl<'scope> BarEma<'scope> for VecCollection<'scope, u64, ((Symbol, u8, u64), BarCore)> {
    fn with_ema(self, span: u32) -> StreamVec<'scope, u64, BarRow> {
        let pact = super::route::symbol_pact(|((k, _), _, _): &BarCoreUpdate| &k.0);
        with_ema_core(self, span, pact)
    }
}

/// [`BarEma::with_ema`] with the bars brought to their symbol's worker by `pact`:
/// [`Pipeline`](timely::dataflow::channels::pact::Pipeline) when they are there already.
pub(crate) fn with_ema_core<'scope, P>(
    bars: VecCollection<'scope, u64, ((Symbol, u8, u64), BarCore)>,
    span: u32,
    pact: P,
) -> StreamVec<'scope, u64, BarRow>
where
    P: ParallelizationContract<u64, Vec<BarCoreUpdate>>,
{
    bars.inner
        .unary_frontier(pact, "BarEma", move |_cap, _info| {
            let mut pending: Stash<Vec<BarUpdate>> = Stash::new(1);
            let mut emas: HashMap<(Symbol, u8), Ema> = HashMap::default();
            let mut ready: Vec<BarRow> = Vec::new();
            move |(input, frontier), output| {
                input.for_each_stamp(|cap, data| {
                    for container in data {
                        for (record, time, diff) in container.drain(..) {
                            pending.at(&cap, time).push((record, diff));
                        }
                    }
                });
                let is_final = |time| !frontier.less_equal(&time);
                ready.reserve(pending.finals(is_final).map(Vec::len).sum());
                pending.release(is_final, |_time, updates| {
                    // A time's bars mostly have distinct keys: ordering them by key is enough,
                    // and only repeated keys need consolidating in full.
                    updates.sort_unstable_by_key(|(a, _)| a.0);
                    if updates.windows(2).any(|w| w[0].0.0 == w[1].0.0) {
                        differential_dataflow::consolidation::consolidate(updates);
                    }
                    for (((symbol, bar, start_ns), core), diff) in updates.drain(..) {
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
                });
                // Every bar made final now travels in one message, under the least time.
                if !ready.is_empty()
                    && let Some(cap) = pending.cap(0)
                {
                    output.session(cap).give_container(&mut ready);
                    // A sent container comes back holding anything: empty it.
                    ready.clear();
                }
                pending.settle();
            }
        })
}
