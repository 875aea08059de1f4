//! `window_stats`: sliding-window statistics per symbol, maintained incrementally.
//!
//! The sums of a window travel as [`Agg`] differences through differential's `count_total`: a
//! symbol's trades of one grid time enter each window as one exact aggregate at `g0` and leave as
//! its negation at `g0 + W`. The extremes need more than sums, so each window also keeps an
//! ordered multiset of its prices, fed by exact `±count` updates. The changelog reads both once a
//! grid time is final.

use std::collections::BTreeMap;

use rustc_hash::FxHashMap as HashMap;

use differential_dataflow::difference::Abelian;
use differential_dataflow::operators::CountTotal;
use differential_dataflow::{AsCollection, VecCollection};
use serde::{Deserialize, Serialize};
use timely::dataflow::StreamVec;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::operator::Operator;

use super::defer::Defer;
use super::runs::{RunFolder, fold_messages};
use super::sequence::Sequenced;
use crate::decimal::Fixed;
use crate::indicators::{Agg, quantize_log_return};
use crate::span::Span;
use crate::stats::{StatsRow, WindowCore};
use crate::symbol::Symbol;

/// A window of a symbol: `(symbol, window index)`.
pub type WindowKey = (Symbol, u8);

/// What the changelog learns of a symbol's trades at a grid time, besides the window sums: a
/// small record (the sums, 128 bytes each, travel on their own input).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum WindowChange {
    /// `count` more trades of the symbol at `price` entered its windows at this grid time (the
    /// changelog schedules their exit from each window itself, at `time + W`).
    Price(Symbol, Fixed, i64),
    /// The symbol's latest trade as of this grid time.
    Last(Symbol, u64, u64, Fixed),
}

impl WindowChange {
    fn symbol(&self) -> Symbol {
        match self {
            WindowChange::Price(s, ..) | WindowChange::Last(s, ..) => *s,
        }
    }
}

/// A change of a window's exact sums, from `count_total`: `+1` new total, `-1` old total.
type SumsUpdate = ((WindowKey, Agg), u64, isize);

/// Sliding-window statistics.
pub trait WindowStats<'scope> {
    /// The exact sums of every `(symbol, window)`, as a collection whose value at each grid time
    /// is the window's total [`Agg`] (`count_total` over aggregate differences).
    fn window_sums(self, windows: &[Span]) -> VecCollection<'scope, u64, (WindowKey, Agg)>;

    /// The stats changelog: one [`StatsRow`] per `(symbol, window)` at each grid time where the
    /// window's content changed, emitted once that time is final, in `(symbol, window)` order.
    ///
    /// # Examples
    /// ```
    /// use gostocks_core::operators::{Sequence, WindowStats};
    /// use gostocks_core::{Span, Symbol, Trade};
    /// use timely::dataflow::operators::{Capture, ToStream, capture::Extract};
    ///
    /// let t = |time_ns, price: &str| Trade {
    ///     symbol: Symbol::new("X").unwrap(), time_ns, seq: 0,
    ///     price: price.parse().unwrap(), size: "1".parse().unwrap(),
    /// };
    /// let windows = [Span::new(2, "2ns")];
    /// let captured = timely::example(move |scope| {
    ///     let trades = vec![t(1, "10"), t(2, "12")].to_stream(scope);
    ///     trades.sequence(1).window_changelog(&windows).capture()
    /// });
    /// let rows: Vec<_> = captured.extract().into_iter().flat_map(|(_, v)| v).collect();
    /// let counts: Vec<_> = rows.iter().map(|r| (r.time_ns, r.core.map_or(0, |c| c.agg.count))).collect();
    /// // Enter at 1 and 2; the first leaves at 3, the second at 4.
    /// assert_eq!(counts, [(1, 1), (2, 2), (3, 1), (4, 0)]);
    /// assert_eq!(rows[1].core.unwrap().max.to_string(), "12");
    /// ```
    fn window_changelog(self, windows: &[Span]) -> StreamVec<'scope, u64, StatsRow>;
}

impl<'scope> WindowStats<'scope> for StreamVec<'scope, u64, Sequenced> {
    fn window_sums(self, windows: &[Span]) -> VecCollection<'scope, u64, (WindowKey, Agg)> {
        let lengths: Vec<u64> = windows.iter().map(Span::ns).collect();
        let mut cells: RunFolder<(u64, Symbol), Agg> = RunFolder::new();
        fold_messages(self, "WindowSums", move |trade, out| match trade {
            // One aggregate per symbol and grid time: differential would sum them anyway.
            Some(s) => {
                let t = &s.trade;
                let ret = s.prev.map(|p| quantize_log_return(t.price, p.price));
                cells.add(
                    (s.time, t.symbol),
                    Agg::tick(t.price, t.size, t.time_ns, ret),
                    |a, b| *a += b,
                );
            }
            None => {
                for ((g0, symbol), agg) in cells.drain(|a, b| *a += b) {
                    let mut gone = agg;
                    gone.negate();
                    for (w, len) in lengths.iter().enumerate() {
                        out.push(((symbol, w as u8), g0, agg));
                        out.push(((symbol, w as u8), g0 + len, gone));
                    }
                }
            }
        })
        .defer()
        .as_collection()
        .count_total()
    }

    fn window_changelog(self, windows: &[Span]) -> StreamVec<'scope, u64, StatsRow> {
        let lengths: Vec<u64> = windows.iter().map(Span::ns).collect();
        let sums = self.clone().window_sums(windows).inner;
        let mut cells: RunFolder<(u64, Symbol, Fixed), i64> = RunFolder::new();
        let mut last: RunFolder<(u64, Symbol), (u64, u64, Fixed)> = RunFolder::new();
        let prices = fold_messages(
            self.clone(),
            "WindowPrices",
            move |trade, out| match trade {
                Some(s) => {
                    let t = &s.trade;
                    cells.add((s.time, t.symbol, t.price), 1, |a, b| *a += b);
                    last.add((s.time, t.symbol), (t.time_ns, t.seq, t.price), |a, b| {
                        *a = (*a).max(b)
                    });
                }
                None => {
                    for ((g0, symbol, price), n) in cells.drain(|a, b| *a += b) {
                        out.push((WindowChange::Price(symbol, price, n), g0));
                    }
                    for ((g0, symbol), (t, seq, price)) in last.drain(|a, b| *a = (*a).max(b)) {
                        out.push((WindowChange::Last(symbol, t, seq, price), g0));
                    }
                }
            },
        );
        sums.changelog(prices, lengths)
    }
}

/// Per symbol: the latest trade, and for each of its windows the current sums and prices.
#[derive(Default)]
struct SymbolState {
    last: Option<(u64, u64, Fixed)>,
    windows: HashMap<u8, (Agg, BTreeMap<Fixed, i64>)>,
}

trait Changelog<'scope> {
    fn changelog(
        self,
        prices: StreamVec<'scope, u64, (WindowChange, u64)>,
        lengths: Vec<u64>,
    ) -> StreamVec<'scope, u64, StatsRow>;
}

/// What arrived for one grid time: its capability, the sums changes and the price changes.
type Pending<C> = (C, Vec<(WindowKey, Agg, isize)>, Vec<WindowChange>);

impl<'scope> Changelog<'scope> for StreamVec<'scope, u64, SumsUpdate> {
    fn changelog(
        self,
        prices: StreamVec<'scope, u64, (WindowChange, u64)>,
        lengths: Vec<u64>,
    ) -> StreamVec<'scope, u64, StatsRow> {
        let by_key = Exchange::new(|((k, _), _, _): &SumsUpdate| super::symbol_route(&k.0));
        let by_symbol =
            Exchange::new(|(c, _): &(WindowChange, u64)| super::symbol_route(&c.symbol()));
        self.binary_frontier(
            prices,
            by_key,
            by_symbol,
            "StatsChangelog",
            |_cap, _info| {
                let mut pending: BTreeMap<u64, Pending<_>> = BTreeMap::new();
                let mut state: HashMap<Symbol, SymbolState> = HashMap::default();
                // Prices due to leave a window: at grid time g, (symbol, window, price, count).
                let mut leaving: BTreeMap<u64, Vec<(Symbol, u8, Fixed, i64)>> = BTreeMap::new();
                let mut ready: Vec<StatsRow> = Vec::new();
                move |(sums_in, sums_frontier), (prices_in, prices_frontier), output| {
                    sums_in.for_each_stamp(|cap, data| {
                        for container in data {
                            for ((key, agg), time, diff) in container.drain(..) {
                                pending
                                    .entry(time)
                                    .or_insert_with(|| {
                                        (cap.delayed(&time, 0), Vec::new(), Vec::new())
                                    })
                                    .1
                                    .push((key, agg, diff));
                            }
                        }
                    });
                    prices_in.for_each_stamp(|cap, data| {
                        for container in data {
                            for (change, time) in container.drain(..) {
                                pending
                                    .entry(time)
                                    .or_insert_with(|| {
                                        (cap.delayed(&time, 0), Vec::new(), Vec::new())
                                    })
                                    .2
                                    .push(change);
                            }
                        }
                    });
                    let mut first_cap = None;
                    while let Some(entry) = pending.first_entry() {
                        if sums_frontier.less_equal(entry.key())
                            || prices_frontier.less_equal(entry.key())
                        {
                            break;
                        }
                        let time = *entry.key();
                        let (cap, sums, changes) = entry.remove();
                        first_cap.get_or_insert(cap);
                        // Changes apply in any order: prices add, the last trade is a maximum, and a
                        // window's `+new, -old` total pair lands on `new` either way (a retraction
                        // only clears the total it retracts).
                        let mut changed: Vec<WindowKey> = Vec::with_capacity(sums.len());
                        while let Some(due) = leaving.first_entry() {
                            if *due.key() > time {
                                break;
                            }
                            for (symbol, w, price, n) in due.remove() {
                                let prices = &mut state
                                    .entry(symbol)
                                    .or_default()
                                    .windows
                                    .entry(w)
                                    .or_default()
                                    .1;
                                let count = prices.entry(price).or_default();
                                *count -= n;
                                if *count == 0 {
                                    prices.remove(&price);
                                }
                            }
                        }
                        for change in changes {
                            match change {
                                WindowChange::Last(symbol, t, seq, price) => {
                                    let s = state.entry(symbol).or_default();
                                    s.last = Some(
                                        s.last.map_or((t, seq, price), |l| l.max((t, seq, price))),
                                    );
                                }
                                WindowChange::Price(symbol, price, n) => {
                                    let windows = &mut state.entry(symbol).or_default().windows;
                                    for (w, len) in lengths.iter().enumerate() {
                                        *windows
                                            .entry(w as u8)
                                            .or_default()
                                            .1
                                            .entry(price)
                                            .or_default() += n;
                                        leaving
                                            .entry(time + len)
                                            .or_default()
                                            .push((symbol, w as u8, price, n));
                                    }
                                }
                            }
                        }
                        for ((symbol, w), agg, diff) in sums {
                            let sums = &mut state
                                .entry(symbol)
                                .or_default()
                                .windows
                                .entry(w)
                                .or_default()
                                .0;
                            if diff > 0 {
                                *sums = agg;
                            } else if *sums == agg {
                                *sums = Agg::default();
                            }
                            changed.push((symbol, w));
                        }
                        changed.sort_unstable();
                        changed.dedup();
                        for (symbol, w) in changed {
                            let s = state.get_mut(&symbol).expect("a changed window has state");
                            let (agg, prices) =
                                s.windows.get(&w).expect("a changed window has state");
                            let core = (agg.count != 0).then(|| WindowCore {
                                agg: *agg,
                                min: prices.first_key_value().map_or(Fixed::ZERO, |(p, _)| *p),
                                max: prices.last_key_value().map_or(Fixed::ZERO, |(p, _)| *p),
                            });
                            let last = core.and(s.last.map(|l| l.2));
                            if core.is_none() {
                                s.windows.remove(&w);
                            }
                            ready.push(StatsRow {
                                time_ns: time,
                                symbol,
                                window: w,
                                core,
                                last,
                            });
                        }
                    }
                    // Every time made final now travels in one message, under the least one.
                    if let Some(cap) = first_cap {
                        output.session(&cap).give_iterator(ready.drain(..));
                    }
                }
            },
        )
    }
}
