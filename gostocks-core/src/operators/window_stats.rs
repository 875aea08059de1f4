//! `window_stats`: sliding-window statistics per symbol, maintained incrementally.
//!
//! The sums of a window travel as [`Agg`] differences through differential's `count_total`: a
//! symbol's cells of one grid time enter each window as one exact aggregate at `g0` and leave as
//! its negation at `g0 + W`. The extremes need more than sums: cells leave a window in the order
//! they entered it, so each window keeps its cells' lows and highs in monotonic queues (a sliding
//! minimum and maximum, exact and O(1) amortized). The changelog reads both once a grid time is
//! final.

use std::collections::VecDeque;

use rustc_hash::FxHashMap as HashMap;

use differential_dataflow::VecCollection;
use differential_dataflow::operators::CountTotal;
use differential_dataflow::operators::arrange::arrangement::arrange_core;
use differential_dataflow::trace::implementations::ord_neu::OrdKeySpine;
use serde::{Deserialize, Serialize};
use timely::dataflow::StreamVec;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::operator::Operator;

use super::cells::Cell;
use super::fold::{Fold, fold_messages};
use super::stash::Stash;
use super::window_batcher::{WindowBatcher, WindowEntry, WindowKey};
use crate::decimal::Fixed;
use crate::indicators::Agg;
use crate::span::Span;
use crate::stats::{StatsRow, WindowCore};
use crate::symbol::Symbol;

/// What the changelog learns of a cell besides its sums (which travel on their own input): a
/// small record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[non_exhaustive]
pub struct WindowChange {
    /// The cell's symbol.
    pub symbol: Symbol,
    /// Its least price.
    pub low: Fixed,
    /// Its greatest price.
    pub high: Fixed,
    /// Its latest trade, `(t, seq, price)`.
    pub last: (u64, u64, Fixed),
}

/// A change of a window's exact sums, from `count_total`: `+1` new total, `-1` old total.
type SumsUpdate = ((WindowKey, Agg), u64, isize);

/// Sliding-window statistics.
pub trait WindowStats<'scope> {
    /// The stats changelog: one [`StatsRow`] per `(symbol, window)` at each grid time where the
    /// window's content changed, emitted once that time is final, in `(symbol, window)` order.
    ///
    /// # Examples
    /// ```
    /// use gostocks_core::operators::{SequenceCells, WindowStats};
    /// use gostocks_core::{Span, Symbol, Trade};
    /// use timely::dataflow::operators::{Capture, ToStream, capture::Extract};
    ///
    /// let t = |time_ns, price: &str| Trade::new(
    ///     Symbol::new("X").unwrap(), time_ns, 0, price.parse().unwrap(), "1".parse().unwrap(),
    /// );
    /// let windows = [Span::new(2, "2ns")];
    /// let captured = timely::example(move |scope| {
    ///     let trades = vec![t(1, "10"), t(2, "12")].to_stream(scope);
    ///     let (cells, _) = trades.sequence_cells(1, &[], false);
    ///     cells.window_changelog(&windows).capture()
    /// });
    /// let rows: Vec<_> = captured.extract().into_iter().flat_map(|(_, v)| v).collect();
    /// let counts: Vec<_> = rows.iter().map(|r| (r.time_ns, r.core.map_or(0, |c| c.agg.count))).collect();
    /// // Enter at 1 and 2; the first leaves at 3, the second at 4.
    /// assert_eq!(counts, [(1, 1), (2, 2), (3, 1), (4, 0)]);
    /// assert_eq!(rows[1].core.unwrap().max.to_string(), "12");
    /// // At 3 only the trade at 2 is left: the queue of highs let go of nothing it needed.
    /// assert_eq!(rows[2].core.unwrap().min.to_string(), "12");
    /// ```
    fn window_changelog(self, windows: &[Span]) -> StreamVec<'scope, u64, StatsRow>;
}

impl<'scope> WindowStats<'scope> for StreamVec<'scope, u64, Cell> {
    fn window_changelog(self, windows: &[Span]) -> StreamVec<'scope, u64, StatsRow> {
        let cells = by_symbol(self);
        let entries = fold_messages(cells.clone(), "WindowEntries", EntriesFold);
        let changes = fold_messages(cells, "WindowChanges", ChangesFold);
        window_changelog_core(entries, changes, windows)
    }
}

/// [`WindowStats::window_changelog`] from what [`EntriesFold`] and [`ChangesFold`] make of the
/// cells, on their symbol's worker already (as [`super::SequenceCells`] leaves them: nothing
/// moves).
pub(crate) fn window_changelog_core<'scope>(
    entries: StreamVec<'scope, u64, WindowEntry>,
    changes: StreamVec<'scope, u64, (WindowChange, u64)>,
    windows: &[Span],
) -> StreamVec<'scope, u64, StatsRow> {
    let lengths: Vec<u64> = windows.iter().map(Span::ns).collect();
    window_sums(entries, &lengths)
        .inner
        .changelog(changes, lengths)
}

/// What the changelog learns of each cell besides its sums, at the cell's grid time.
pub(crate) struct ChangesFold;

impl Fold<Cell> for ChangesFold {
    type Out = (WindowChange, u64);

    #[inline]
    fn add(&mut self, c: &Cell, out: &mut Vec<Self::Out>) {
        let change = WindowChange {
            symbol: c.symbol,
            low: c.part.low,
            high: c.part.high,
            last: c.part.last,
        };
        out.push((change, c.time));
    }

    fn expect(&mut self, records: usize, out: &mut Vec<Self::Out>) {
        out.reserve(records);
    }

    fn flush(&mut self, _out: &mut Vec<Self::Out>) {}
}

/// Cells on the worker of their symbol ([`super::route::symbol_route`]): every operator downstream
/// works per symbol on the worker's own cells.
fn by_symbol(cells: StreamVec<'_, u64, Cell>) -> StreamVec<'_, u64, Cell> {
    let pact = super::route::symbol_pact(|c: &Cell| &c.symbol);
    cells.unary(pact, "BySymbol", |_cap, _info| {
        move |input, output| {
            input.for_each_stamp(|cap, data| {
                let mut session = output.session(&cap);
                for container in data {
                    session.give_container(container);
                }
            });
        }
    })
}

/// What the cells add to their symbol's windows, one entry per symbol and grid time (mostly):
/// each enters every window at its grid time and leaves window `W` at `g0 + W`, which the
/// batcher works out ([`WindowBatcher`]).
pub(crate) struct EntriesFold;

impl Fold<Cell> for EntriesFold {
    type Out = WindowEntry;

    /// Cells come in time order, a symbol's cells of one grid time mostly side by side:
    /// merging neighbours of the same symbol and time leaves fewer entries (the batcher would
    /// sum them anyway).
    #[inline]
    fn add(&mut self, c: &Cell, out: &mut Vec<WindowEntry>) {
        match out.last_mut() {
            Some((g0, symbol, agg)) if *g0 == c.time && *symbol == c.symbol => {
                *agg += c.part.agg;
            }
            _ => out.push((c.time, c.symbol, c.part.agg)),
        }
    }

    fn expect(&mut self, records: usize, out: &mut Vec<WindowEntry>) {
        out.reserve(records);
    }

    fn flush(&mut self, _out: &mut Vec<WindowEntry>) {}
}

/// The exact sums of every `(symbol, window)` from window entries on their symbol's worker, as
/// a collection whose value at each grid time is the window's total [`Agg`] (`count_total` over
/// aggregate differences).
fn window_sums<'scope>(
    entries: StreamVec<'scope, u64, WindowEntry>,
    lengths: &[u64],
) -> VecCollection<'scope, u64, (WindowKey, Agg)> {
    // Every key of a symbol is on its worker: the arrangement needs no exchange. Entries wait
    // in the batcher, filed by time, until they have left every window.
    let lengths = lengths.to_vec();
    arrange_core::<_, _, WindowBatcher, OrdKeySpine<WindowKey, u64, Agg>>(
        entries,
        Pipeline,
        "WindowSums",
        move |_, _| WindowBatcher::new(&lengths),
    )
    .count_total_core()
}

/// One window of a symbol: its sums, and the lows and highs of its cells as monotonic queues of
/// `(grid time, price)`: lows increasing, highs decreasing, so the front is the extreme.
#[derive(Default)]
struct Window {
    agg: Agg,
    lows: VecDeque<(u64, Fixed)>,
    highs: VecDeque<(u64, Fixed)>,
}

impl Window {
    fn enter(&mut self, g0: u64, low: Fixed, high: Fixed) {
        while self.lows.back().is_some_and(|&(_, p)| p >= low) {
            self.lows.pop_back();
        }
        self.lows.push_back((g0, low));
        while self.highs.back().is_some_and(|&(_, p)| p <= high) {
            self.highs.pop_back();
        }
        self.highs.push_back((g0, high));
    }

    /// Drops the cells that have left a window of length `len` at grid time `g`.
    fn expire(&mut self, g: u64, len: u64) {
        let gone = |&(g0, _): &(u64, Fixed)| g0.saturating_add(len) <= g;
        while self.lows.front().is_some_and(gone) {
            self.lows.pop_front();
        }
        while self.highs.front().is_some_and(gone) {
            self.highs.pop_front();
        }
    }
}

/// Per symbol: the latest trade, and each of its windows.
struct SymbolState {
    last: Option<(u64, u64, Fixed)>,
    windows: Vec<Window>,
}

trait Changelog<'scope> {
    fn changelog(
        self,
        changes: StreamVec<'scope, u64, (WindowChange, u64)>,
        lengths: Vec<u64>,
    ) -> StreamVec<'scope, u64, StatsRow>;
}

/// What arrived for one grid time: the windows' new totals, the windows whose old total was
/// retracted, and the cells' changes.
type Lists = (Vec<(WindowKey, Agg)>, Vec<WindowKey>, Vec<WindowChange>);

impl<'scope> Changelog<'scope> for StreamVec<'scope, u64, SumsUpdate> {
    fn changelog(
        self,
        changes: StreamVec<'scope, u64, (WindowChange, u64)>,
        lengths: Vec<u64>,
    ) -> StreamVec<'scope, u64, StatsRow> {
        // Both inputs come from cells already on their symbol's worker.
        self.binary_frontier(
            changes,
            Pipeline,
            Pipeline,
            "StatsChangelog",
            |_cap, _info| {
                let mut stash: Stash<Lists> = Stash::new(1);
                let mut state: HashMap<Symbol, SymbolState> = HashMap::default();
                let mut ready: Vec<StatsRow> = Vec::new();
                let fresh = {
                    let n = lengths.len();
                    move || SymbolState {
                        last: None,
                        windows: (0..n).map(|_| Window::default()).collect(),
                    }
                };
                move |(sums_in, sums_frontier), (changes_in, changes_frontier), output| {
                    sums_in.for_each_stamp(|cap, data| {
                        for container in data {
                            // Updates come in runs of one time: one stash lookup per run.
                            let mut rest = &container[..];
                            while let Some(&(_, time, _)) = rest.first() {
                                let len = rest
                                    .iter()
                                    .position(|(_, t, _)| *t != time)
                                    .unwrap_or(rest.len());
                                let (news, gone, _) = stash.at(&cap, time);
                                for &((key, agg), _, diff) in &rest[..len] {
                                    // A retraction needs only its key: the total it retracts
                                    // is the one the window holds.
                                    if diff > 0 {
                                        news.push((key, agg));
                                    } else {
                                        gone.push(key);
                                    }
                                }
                                rest = &rest[len..];
                            }
                            container.clear();
                        }
                    });
                    changes_in.for_each_stamp(|cap, data| {
                        for container in data {
                            let mut rest = &container[..];
                            while let Some(&(_, time)) = rest.first() {
                                let len = rest
                                    .iter()
                                    .position(|(_, t)| *t != time)
                                    .unwrap_or(rest.len());
                                let list = &mut stash.at(&cap, time).2;
                                list.extend(rest[..len].iter().map(|(change, _)| *change));
                                rest = &rest[len..];
                            }
                            container.clear();
                        }
                    });
                    // A row per window that changed, at most one per list entry: sized once,
                    // as growing it copies every row again.
                    let is_final = |time: u64| {
                        !sums_frontier.less_equal(&time) && !changes_frontier.less_equal(&time)
                    };
                    let rows: usize = stash
                        .finals(is_final)
                        .map(|(news, gone, _)| news.len() + gone.len())
                        .sum();
                    ready.reserve(rows);
                    stash.release(is_final, |time, (news, gone, changes)| {
                        // Cells enter in grid-time order (this loop runs in time order), which
                        // is what the monotonic queues need. Within a time, a window's old total
                        // is retracted before its new one is set: a window with both lands on
                        // the new total, one with only a retraction is empty.
                        for c in changes.drain(..) {
                            let s = state.entry(c.symbol).or_insert_with(&fresh);
                            s.last = Some(s.last.map_or(c.last, |l| l.max(c.last)));
                            for w in &mut s.windows {
                                w.enter(time, c.low, c.high);
                            }
                        }
                        // The windows that changed, in key order: count_total emits a batch
                        // key by key, so each list is sorted already (checked, not assumed).
                        // A window with a retraction and a new total lands on the new total;
                        // one with only a retraction is empty.
                        if !gone.is_sorted() {
                            gone.sort_unstable();
                        }
                        if !news.is_sorted_by_key(|(k, _)| *k) {
                            news.sort_unstable_by_key(|(k, _)| *k);
                        }
                        let mut gone_keys = gone.drain(..).peekable();
                        let mut new_totals = news.drain(..).peekable();
                        let mut current: Option<(Symbol, &mut SymbolState)> = None;
                        loop {
                            let key = match (gone_keys.peek(), new_totals.peek()) {
                                (None, None) => break,
                                (Some(g), None) => *g,
                                (None, Some((k, _))) => *k,
                                (Some(g), Some((k, _))) => (*g).min(*k),
                            };
                            while gone_keys.next_if_eq(&key).is_some() {}
                            let mut agg = Agg::default();
                            while let Some((_, new)) = new_totals.next_if(|(k, _)| *k == key) {
                                agg = new;
                            }
                            let (symbol, w) = key;
                            // One lookup per symbol: its windows are neighbours in key order.
                            let s = match current {
                                Some((sym, s)) if sym == symbol => s,
                                _ => state.entry(symbol).or_insert_with(&fresh),
                            };
                            let window = &mut s.windows[w as usize];
                            window.agg = agg;
                            window.expire(time, lengths[w as usize]);
                            let core = match (window.lows.front(), window.highs.front()) {
                                (Some(&(_, min)), Some(&(_, max))) if window.agg.count != 0 => {
                                    Some(WindowCore {
                                        agg: window.agg,
                                        min,
                                        max,
                                    })
                                }
                                _ => None,
                            };
                            let last = core.and(s.last.map(|l| l.2));
                            ready.push(StatsRow {
                                time_ns: time,
                                symbol,
                                window: w,
                                core,
                                last,
                            });
                            current = Some((symbol, s));
                        }
                    });
                    // Every time made final now travels in one message, under the least one.
                    if !ready.is_empty()
                        && let Some(cap) = stash.cap(0)
                    {
                        output.session(cap).give_container(&mut ready);
                        // A sent container comes back holding anything: empty it.
                        ready.clear();
                    }
                    stash.settle();
                }
            },
        )
    }
}
