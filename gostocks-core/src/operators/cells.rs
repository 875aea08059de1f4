//! `cells`: what a symbol's trades of one grid time add up to, as exact partial aggregates.
//!
//! Windows and bars only ever need what a symbol's trades of one grid time add up to: their sums,
//! extremes, first and last trade. The sequencer ([`super::SequenceCells`]) folds each trade,
//! once, into its symbol's open [`Cell`] with the cell fold defined here, so that every operator
//! downstream works per cell, not per trade.

use serde::{Deserialize, Serialize};

use crate::decimal::Fixed;
use crate::indicators::Agg;
use crate::span::Span;
use crate::symbol::Symbol;
use crate::tick::Trade;

/// What a run of trades adds up to: first and last trade by `(t, seq)`, extremes and sums.
/// Merging partials (`absorb`) is commutative: parts may arrive in any order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[non_exhaustive]
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
#[non_exhaustive]
pub struct Cell {
    /// The grid time at which the trades enter the results.
    pub time: u64,
    /// Their symbol.
    pub symbol: Symbol,
    /// What they add up to.
    pub part: Partial,
}

/// Where cells are cut: the first bar boundary after a time, over every bar size. Trades come
/// close together in time, so the range of times that share the last answer is kept, and a
/// time inside it costs two comparisons instead of a division per size.
struct Cuts {
    /// Bar sizes, ns.
    sizes: Vec<u64>,
    /// Every time in `[lo, hi)` lies in the same bar of every size: its boundary is `hi`.
    lo: u64,
    hi: u64,
}

impl Cuts {
    fn new(bars: &[Span]) -> Cuts {
        Cuts {
            sizes: bars.iter().map(Span::ns).filter(|&s| s > 0).collect(),
            // An empty range: the first time asked computes.
            lo: 1,
            hi: 0,
        }
    }

    /// The first bar boundary after `t`: a cell starting at `t` ends before it.
    #[inline]
    fn after(&mut self, t: u64) -> u64 {
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

/// The cell fold: each trade of a grid time goes into its symbol's open cell, or starts a new
/// one, cut wherever a trade starts a new bar of one of the bar sizes: a cell lies in exactly one
/// bar of every size, so bars can be assembled from cells exactly.
pub(crate) struct CellFold {
    cuts: Cuts,
}

impl CellFold {
    /// The fold for bars of these sizes.
    pub(crate) fn new(bars: &[Span]) -> CellFold {
        CellFold {
            cuts: Cuts::new(bars),
        }
    }

    /// Adds the trade `t` of grid time `time`, with the quantized log return `ret` from its
    /// predecessor, to `open`, its symbol's open cell among `cells`, or to a new cell pushed
    /// onto `cells` (then the open one). The trades of a symbol must come in `(t, seq)` order,
    /// and `open` must be [`OpenCell::NONE`] at the start of each grid time.
    #[inline]
    pub(crate) fn add(
        &mut self,
        open: &mut OpenCell,
        time: u64,
        t: &Trade,
        ret: Option<i64>,
        cells: &mut Vec<Cell>,
    ) {
        let point = (t.time_ns, t.seq, t.price);
        if open.at != OpenCell::NONE.at && t.time_ns < open.cut {
            cells[open.at as usize].part.follow(point, t.size, ret);
        } else {
            *open = OpenCell {
                at: cells.len() as u32,
                cut: self.cuts.after(t.time_ns),
            };
            cells.push(Cell {
                time,
                symbol: t.symbol,
                part: Partial::one(point, t.size, ret),
            });
        }
    }
}

/// A symbol's open cell in the grid time being folded: its index among the cells, and the
/// time at which it is cut.
#[derive(Clone, Copy, Debug)]
pub(crate) struct OpenCell {
    at: u32,
    cut: u64,
}

impl OpenCell {
    /// No open cell.
    pub(crate) const NONE: OpenCell = OpenCell {
        at: u32::MAX,
        cut: 0,
    };
}
