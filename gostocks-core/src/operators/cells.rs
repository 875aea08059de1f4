//! `cells`: folds each symbol's sequenced trades of a grid time into exact partial aggregates.
//!
//! Windows and bars only ever need what a symbol's trades of one grid time add up to: their sums,
//! extremes, first and last trade. Folding them here, once, in the order `sequence` emits them
//! (runs of `(time, symbol)`), means every operator downstream works per cell, not per trade.

use serde::{Deserialize, Serialize};
use timely::dataflow::StreamVec;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::operator::Operator;

use super::sequence::Sequenced;
use crate::decimal::Fixed;
use crate::indicators::{Agg, quantize_log_return};
use crate::span::Span;
use crate::symbol::Symbol;
use crate::tick::Trade;

/// What a run of trades adds up to: first and last trade by `(t, seq)`, extremes and sums.
/// Merging partials (`absorb`) is commutative: parts may arrive in any order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Partial {
    /// `(t, seq, price)` of the earliest trade.
    pub first: (u64, u64, Fixed),
    /// `(t, seq, price)` of the latest trade.
    pub last: (u64, u64, Fixed),
    /// Greatest price.
    pub high: Fixed,
    /// Least price.
    pub low: Fixed,
    /// Exact sums, with the log returns of the trades that have a predecessor.
    pub agg: Agg,
}

impl Partial {
    /// The partial of one trade at `(t, seq, price)` with `size` and its quantized log return.
    pub fn one(point: (u64, u64, Fixed), size: Fixed, ret: Option<i64>) -> Partial {
        Partial {
            first: point,
            last: point,
            high: point.2,
            low: point.2,
            agg: Agg::tick(point.2, size, point.0, ret),
        }
    }

    /// Adds the trade at `point` with `size` and its quantized log return, which comes after
    /// every trade in the partial in `(t, seq)` order.
    #[inline]
    pub(crate) fn follow(&mut self, point: (u64, u64, Fixed), size: Fixed, ret: Option<i64>) {
        self.last = point;
        self.high = self.high.max(point.2);
        self.low = self.low.min(point.2);
        self.agg += Agg::tick(point.2, size, point.0, ret);
    }

    /// Merges another partial of the same symbol into this one, in any order.
    pub fn absorb(&mut self, other: &Partial) {
        self.first = self.first.min(other.first);
        self.last = self.last.max(other.last);
        self.high = self.high.max(other.high);
        self.low = self.low.min(other.low);
        self.agg += other.agg;
    }
}

/// The trades of one symbol at one grid time that also share a bar of every configured size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Cell {
    /// The grid time at which the trades enter the results.
    pub time: u64,
    /// Their symbol.
    pub symbol: Symbol,
    /// What they add up to.
    pub part: Partial,
}

/// Folds sequenced trades into [`Cell`]s.
pub trait Cells<'scope> {
    /// One cell per run of trades with the same grid time and symbol, cut wherever a trade
    /// starts a new bar of one of `bars`: a cell lies in exactly one bar of every size, so bars
    /// can be assembled from cells exactly. A run split over two messages gives two cells, whose
    /// sum is the same.
    ///
    /// # Examples
    /// ```
    /// use gostocks_core::operators::{Cells, Sequence};
    /// use gostocks_core::{Span, Symbol, Trade};
    /// use timely::dataflow::operators::{Capture, ToStream, capture::Extract};
    ///
    /// let t = |time_ns, price: &str| Trade {
    ///     symbol: Symbol::new("X").unwrap(), time_ns, seq: 0,
    ///     price: price.parse().unwrap(), size: "2".parse().unwrap(),
    /// };
    /// let bars = [Span::new(10, "10ns")];
    /// let captured = timely::example(move |scope| {
    ///     // Grid of 10ns: 3 and 7 share the cell at 10; 10 itself starts a new bar.
    ///     vec![t(7, "11"), t(3, "10"), t(10, "12")].to_stream(scope).sequence(10).cells(&bars).capture()
    /// });
    /// let cells: Vec<_> = captured.extract().into_iter().flat_map(|(_, v)| v).collect();
    /// assert_eq!(cells.len(), 2);
    /// assert_eq!((cells[0].time, cells[0].part.agg.count, cells[0].part.high.to_string()), (10, 2, "11".into()));
    /// assert_eq!((cells[1].time, cells[1].part.first.0), (10, 10));
    /// // The trade at 10 carries its return from 11, the trade before it in another cell.
    /// assert_eq!(cells[1].part.agg.n_ret, 1);
    /// ```
    fn cells(self, bars: &[Span]) -> StreamVec<'scope, u64, Cell>;
}

impl<'scope> Cells<'scope> for StreamVec<'scope, u64, Sequenced> {
    fn cells(self, bars: &[Span]) -> StreamVec<'scope, u64, Cell> {
        let mut folder = CellFolder::new(bars);
        self.unary(Pipeline, "Cells", move |_cap, _info| {
            let mut out: Vec<Cell> = Vec::new();
            move |input, output| {
                input.for_each_stamp(|cap, data| {
                    let Some(cap) = cap.retain_least(output.output_index()) else {
                        return;
                    };
                    for container in data {
                        for s in container.iter() {
                            folder.add(s.time, &s.trade, s.prev.map(|p| p.price), &mut out);
                        }
                    }
                    folder.flush(&mut out);
                    output.session(&cap).give_container(&mut out);
                    // A sent container comes back holding anything: empty it.
                    out.clear();
                });
            }
        })
    }
}

/// Where cells are cut: the first bar boundary after a time, over every bar size. Trades come
/// close together in time, so the range of times that share the last answer is kept, and a
/// time inside it costs two comparisons instead of a division per size.
pub(crate) struct Cuts {
    /// Bar sizes, ns.
    sizes: Vec<u64>,
    /// Every time in `[lo, hi)` lies in the same bar of every size: its boundary is `hi`.
    lo: u64,
    hi: u64,
}

impl Cuts {
    pub(crate) fn new(bars: &[Span]) -> Cuts {
        Cuts {
            sizes: bars.iter().map(Span::ns).filter(|&s| s > 0).collect(),
            // An empty range: the first time asked computes.
            lo: 1,
            hi: 0,
        }
    }

    /// The first bar boundary after `t`: a cell starting at `t` ends before it.
    #[inline]
    pub(crate) fn after(&mut self, t: u64) -> u64 {
        if self.lo <= t && t < self.hi {
            return self.hi;
        }
        let (mut lo, mut hi) = (0, u64::MAX);
        for &size in &self.sizes {
            let start = t / size * size;
            lo = lo.max(start);
            hi = hi.min(start.saturating_add(size));
        }
        (self.lo, self.hi) = (lo, hi);
        hi
    }
}

/// Folds trades, given in `(time, symbol, t, seq)` order, into [`Cell`]s.
pub(crate) struct CellFolder {
    cuts: Cuts,
    /// The open cell and the time at which it must be cut.
    open: Option<(Cell, u64)>,
}

impl CellFolder {
    pub(crate) fn new(bars: &[Span]) -> CellFolder {
        CellFolder {
            cuts: Cuts::new(bars),
            open: None,
        }
    }

    /// Adds the trade `t` of grid time `time`, whose predecessor traded at `prev`; a cell it
    /// closes goes to `out`.
    #[inline]
    pub(crate) fn add(&mut self, time: u64, t: &Trade, prev: Option<Fixed>, out: &mut Vec<Cell>) {
        let point = (t.time_ns, t.seq, t.price);
        let ret = prev.map(|p| quantize_log_return(t.price, p));
        match &mut self.open {
            Some((cell, cut))
                if cell.time == time && cell.symbol == t.symbol && t.time_ns < *cut =>
            {
                cell.part.follow(point, t.size, ret);
            }
            _ => {
                let cell = Cell {
                    time,
                    symbol: t.symbol,
                    part: Partial::one(point, t.size, ret),
                };
                let cut = self.cuts.after(t.time_ns);
                if let Some((done, _)) = self.open.replace((cell, cut)) {
                    out.push(done);
                }
            }
        }
    }

    /// Closes the open cell into `out`.
    pub(crate) fn flush(&mut self, out: &mut Vec<Cell>) {
        out.extend(self.open.take().map(|(cell, _)| cell));
    }
}
