//! `sequence`: puts each symbol's trades in `(t, seq)` order and pairs each with its predecessor
//! ([`Sequence`]); or does that and folds the trades into cells in the same pass
//! ([`SequenceCells`], what the analytics use).

use serde::{Deserialize, Serialize};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::StreamVec;
use timely::dataflow::operators::generic::OutputBuilder;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::operator::Operator;
use timely::dataflow::operators::{Capability, InputCapability};

use super::cells::{Cell, CellFold, OpenCell};
use super::fold::Fold;
use super::stash::Stash;
use super::symbol_ids::SymbolIds;
use crate::decimal::Fixed;
use crate::indicators::quantize_log_return;
use crate::span::Span;
use crate::symbol::Symbol;
use crate::tick::Trade;

/// A trade's position and price: what an operator needs to know of the tick before another.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Point {
    /// Event time, ns since the Unix epoch.
    pub time_ns: u64,
    /// Sequence number within its source.
    pub seq: u64,
    /// Price.
    pub price: Fixed,
}

impl From<&Trade> for Point {
    fn from(t: &Trade) -> Point {
        Point {
            time_ns: t.time_ns,
            seq: t.seq,
            price: t.price,
        }
    }
}

/// A trade with the trade of the same symbol just before it in `(t, seq)` order, if any.
///
/// It carries its grid time: operators downstream group and stash by `time`, which may be later
/// than the timestamp of the message that carries it (one message holds every grid time that
/// became final at once).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Sequenced {
    /// The grid time at which the trade enters the results.
    pub time: u64,
    /// The trade.
    pub trade: Trade,
    /// Its predecessor, which may be arbitrarily older.
    pub prev: Option<Point>,
    /// The quantized log return from the predecessor's price to this trade's
    /// ([`quantize_log_return`]), worked out once where the trade is sequenced: the alert
    /// books take it rather than another logarithm per trade.
    pub ret: Option<i64>,
}

/// Containers of sequenced trades that the alert matcher of a worker is done with, given back
/// to the same worker's sequencer (the matcher reads the sequencer's output in the same thread).
/// timely hands a sent container back empty, without its memory: each message of sequenced
/// trades (a few hundred kB) was fresh memory, and with 100,000 alerts its first writes were a
/// fifth of the worker's page faults.
#[derive(Clone, Default)]
pub(crate) struct Spares(std::rc::Rc<std::cell::RefCell<Vec<Vec<Sequenced>>>>);

impl Spares {
    /// Containers kept at most: a few messages are in flight at once.
    const KEPT: usize = 8;
    /// The largest container kept (in trades, about 1.7 MB): a backlog's one large message
    /// is not held on to.
    const LARGEST: usize = 1 << 14;

    /// A container given back that holds `need` trades without growing (growing copies the
    /// whole old allocation into fresh memory, even empty).
    fn take(&self, need: usize) -> Option<Vec<Sequenced>> {
        let mut kept = self.0.borrow_mut();
        let i = kept.iter().position(|c| c.capacity() >= need)?;
        Some(kept.swap_remove(i))
    }

    /// Gives back a container that is done with, emptied.
    pub(crate) fn give(&self, mut container: Vec<Sequenced>) {
        let mut kept = self.0.borrow_mut();
        if kept.len() < Self::KEPT && (1..=Self::LARGEST).contains(&container.capacity()) {
            container.clear();
            kept.push(container);
        }
    }
}

/// Orders trades per symbol once their timestamp is complete.
pub trait Sequence<'scope> {
    /// Routes trades by symbol and places each at its grid time `grid_ceil(t, resolution)` (the
    /// message's timestamp may be earlier: an input only promises not to go below it). Once the
    /// frontier has passed a grid time, its trades are emitted at that time in `(symbol, t, seq)`
    /// order, each paired with its predecessor.
    ///
    /// Because a grid time is processed only when complete, the pairing depends on the set of
    /// trades and not on their arrival order.
    ///
    /// # Examples
    /// ```
    /// use gostocks_core::operators::Sequence;
    /// use gostocks_core::{Symbol, Trade};
    /// use timely::dataflow::operators::{Capture, ToStream, capture::Extract};
    ///
    /// let t = |time_ns, price: &str| Trade::new(
    ///     Symbol::new("AAPL").unwrap(), time_ns, 0, price.parse().unwrap(), "1".parse().unwrap(),
    /// );
    /// // Arrives out of order; comes out paired in event-time order.
    /// let captured = timely::example(move |scope| {
    ///     vec![t(2, "11"), t(1, "10")].to_stream(scope).sequence(1).capture()
    /// });
    /// let out: Vec<_> = captured.extract().into_iter().flat_map(|(_, v)| v).collect();
    /// assert_eq!(out[0].prev, None);
    /// assert_eq!(out[1].prev.unwrap().price.to_string(), "10");
    /// ```
    fn sequence(self, resolution: u64) -> StreamVec<'scope, u64, Sequenced>;
}

impl<'scope> Sequence<'scope> for StreamVec<'scope, u64, Trade> {
    fn sequence(self, resolution: u64) -> StreamVec<'scope, u64, Sequenced> {
        let pact = super::route::symbol_pact(|t: &Trade| &t.symbol);
        let mut grid = Grid::new(resolution, 1);
        self.unary_frontier(pact, "Sequence", move |_cap, _info| {
            let mut roster = Roster::default();
            let mut ready: Vec<Sequenced> = Vec::new();
            move |(input, frontier), output| {
                input.for_each_stamp(|cap, data| grid.take_in(&cap, data));
                // Grid times the frontier has passed are complete: emit them in (time, symbol,
                // t, seq) order, so each trade meets its true predecessor.
                let is_final = |time| !frontier.less_equal(&time);
                ready.reserve(grid.trades.finals(is_final).map(Vec::len).sum());
                grid.trades.release(is_final, |time, trades| {
                    roster.file(trades);
                    roster.sort(trades);
                    for (trade, &id) in trades.iter().zip(&roster.of) {
                        let last = &mut roster.last[id as usize];
                        let prev = last.replace(Point::from(trade));
                        ready.push(Sequenced {
                            time,
                            trade: *trade,
                            prev,
                            ret: prev.map(|p| quantize_log_return(trade.price, p.price)),
                        });
                    }
                    roster.finish();
                });
                if !ready.is_empty()
                    && let Some(cap) = grid.trades.cap(0)
                {
                    output.session(cap).give_container(&mut ready);
                    // A sent container comes back holding anything: empty it.
                    ready.clear();
                }
                grid.trades.settle();
            }
        })
    }
}

/// Trades not yet final, filed by grid time, in their arrival order: each grid time's trades
/// are taken in hand once, when it becomes final (not the whole backlog at every advance:
/// partitions read at different paces can leave a large one).
struct Grid {
    resolution: u64,
    trades: Stash<Vec<Trade>>,
}

impl Grid {
    /// A grid of `resolution` ns whose operator has `ports` outputs.
    fn new(resolution: u64, ports: usize) -> Grid {
        Grid {
            resolution: resolution.max(1),
            trades: Stash::new(ports),
        }
    }

    /// Files the trades of a message whose capability is `cap`.
    fn take_in<'a>(
        &mut self,
        cap: &InputCapability<u64>,
        data: impl Iterator<Item = &'a mut Vec<Trade>>,
    ) {
        for container in data {
            // Trades mostly come in time order: one map lookup and one copy per run of a grid
            // time (the trades `t` with `g - resolution < t <= g`).
            let mut rest = &container[..];
            while let Some(first) = rest.first() {
                let g = crate::watermark::grid_ceil(first.time_ns, self.resolution);
                let floor = g.saturating_sub(self.resolution);
                let len = rest
                    .iter()
                    .position(|t| t.time_ns > g || (t.time_ns <= floor && g > 0))
                    .unwrap_or(rest.len());
                self.trades.at(cap, g).extend_from_slice(&rest[..len]);
                rest = &rest[len..];
            }
            container.clear();
        }
    }
}

/// A trade's place among the trades of its symbol: `(t, seq)`, then price and size, so that the
/// order does not depend on arrival.
type Key = (u64, u64, Fixed, Fixed);

#[inline]
fn key(t: &Trade) -> Key {
    (t.time_ns, t.seq, t.price, t.size)
}

/// Every symbol seen, by dense id, with what sequencing keeps of each: its latest trade and,
/// for the grid time at hand, its trades and its open cell.
///
/// A grid time holds a few trades of each of a few symbols, and each symbol's trades mostly
/// arrive in order already. [`Roster::file`] gives each trade its symbol's id (one lookup per
/// run of a symbol) and checks that order; then the trades are folded as they came, each into
/// its symbol's own state, and sorted only when a symbol's trades were not in order: a
/// counting sort over the ids, symbols in their order, and a sort within a symbol only where
/// it arrived out of order.
#[derive(Default)]
struct Roster {
    ids: SymbolIds,
    /// Per id: its latest trade over every grid time so far.
    last: Vec<Option<Point>>,
    /// Per id: its trades in this grid time (zero between grid times); while sorting, where
    /// its group starts.
    counts: Vec<u32>,
    /// Per id: the key of its latest trade in this grid time, where it has one.
    tail: Vec<Key>,
    /// Per id: its open cell in this grid time.
    open: Vec<OpenCell>,
    /// The ids present in this grid time.
    present: Vec<u32>,
    /// Each trade's id, in the order of the trades.
    of: Vec<u32>,
    /// Each slot's trade, while sorting.
    slots: Vec<u32>,
    /// The trades in their new order, while sorting; then the list they came in.
    sorted: Vec<Trade>,
}

impl Roster {
    /// The dense id of `symbol`, new ones numbered as they come.
    #[inline]
    fn id(&mut self, symbol: Symbol) -> u32 {
        let id = self.ids.id(symbol);
        if id as usize == self.last.len() {
            self.last.push(None);
            self.counts.push(0);
            self.tail.push(Key::default());
            self.open.push(OpenCell::NONE);
        }
        id
    }

    /// Files a grid time's trades under their symbols' ids ([`Roster::of`]); says whether the
    /// trades of every symbol are in [`Key`] order.
    fn file(&mut self, trades: &[Trade]) -> bool {
        self.of.clear();
        let mut ordered = true;
        for t in trades {
            let id = self.id(t.symbol);
            let i = id as usize;
            let k = key(t);
            if self.counts[i] == 0 {
                self.present.push(id);
            } else if k < self.tail[i] {
                ordered = false;
            }
            self.counts[i] += 1;
            self.tail[i] = k;
            self.of.push(id);
        }
        ordered
    }

    /// Puts the trades just filed in `(symbol, t, seq)` order (ties by price and size), with
    /// [`Roster::of`] following them.
    fn sort(&mut self, trades: &mut Vec<Trade>) {
        if trades.is_sorted_by_key(|t| (t.symbol, key(t))) {
            return;
        }
        let symbols = self.ids.symbols();
        self.present
            .sort_unstable_by_key(|&id| symbols[id as usize]);
        // Where each group starts, groups in symbol order.
        let mut at = 0;
        for &id in &self.present {
            let count = &mut self.counts[id as usize];
            (*count, at) = (at, at + *count);
        }
        // Each trade's slot, stably.
        self.slots.clear();
        self.slots.resize(trades.len(), 0);
        for (i, &id) in self.of.iter().enumerate() {
            let next = &mut self.counts[id as usize];
            self.slots[*next as usize] = i as u32;
            *next += 1;
        }
        // Each group now ends where its count points: the ids in their new order.
        self.of.clear();
        let mut start = 0;
        for &id in &self.present {
            let end = self.counts[id as usize];
            self.of
                .extend(std::iter::repeat_n(id, (end - start) as usize));
            start = end;
        }
        let mut sorted = std::mem::take(&mut self.sorted);
        sorted.extend(self.slots.iter().map(|&i| trades[i as usize]));
        std::mem::swap(trades, &mut sorted);
        sorted.clear();
        self.sorted = sorted;
        for group in trades.chunk_by_mut(|a, b| a.symbol == b.symbol) {
            if !group.is_sorted_by_key(key) {
                group.sort_unstable_by_key(key);
            }
        }
    }

    /// Folds a grid time's filed trades into `cells`, each with its predecessor, in the order
    /// given: each symbol's trades must be in [`Key`] order. Each trade with its predecessor
    /// goes to `sequenced` too, when given.
    fn fold(
        &mut self,
        time: u64,
        trades: &[Trade],
        fold: &mut CellFold,
        cells: &mut Vec<Cell>,
        mut sequenced: Option<&mut Vec<Sequenced>>,
    ) {
        for (trade, &id) in trades.iter().zip(&self.of) {
            let i = id as usize;
            let before = self.last[i].replace(Point::from(trade));
            let ret = before.map(|p| quantize_log_return(trade.price, p.price));
            fold.add(&mut self.open[i], time, trade, ret, cells);
            if let Some(out) = sequenced.as_deref_mut() {
                out.push(Sequenced {
                    time,
                    trade: *trade,
                    prev: before,
                    ret,
                });
            }
        }
    }

    /// The grid time is done: forgets its counts and open cells.
    fn finish(&mut self) {
        for &id in &self.present {
            self.counts[id as usize] = 0;
            self.open[id as usize] = OpenCell::NONE;
        }
        self.present.clear();
    }
}

/// What [`SequenceCells::sequence_cells`] returns: the cells, and the sequenced trades when
/// asked for.
pub type CellsAndSequenced<'scope> = (
    StreamVec<'scope, u64, Cell>,
    Option<StreamVec<'scope, u64, Sequenced>>,
);

/// Sequencing and cells in one pass.
pub trait SequenceCells<'scope> {
    /// [`Sequence::sequence`], with each symbol's trades of a grid time folded into [`Cell`]s
    /// as they are sequenced: one cell per run of trades with the same grid time and symbol,
    /// cut wherever a trade starts a new bar of one of `bars` (a cell lies in exactly one bar
    /// of every size, so bars can be assembled from cells exactly). Each trade's log return is
    /// taken from its predecessor, which may be in an earlier cell.
    ///
    /// The trades of a final grid time are folded in the order they came, each into its
    /// symbol's state, when every symbol's trades came in `(t, seq)` order (the grid time is
    /// sorted first when not), with no [`Sequenced`] record per trade: the cells do not depend
    /// on arrival order, but their order within a grid time may follow it. The sequenced
    /// trades are also emitted when `keep_sequenced` (alert matching needs them), grid time
    /// by grid time, each symbol's in `(t, seq)` order: the symbols of a grid time may be
    /// interleaved as their trades came (alert matching takes each symbol's trades apart, and
    /// the full sort cost a copy of every trade).
    ///
    /// # Examples
    /// ```
    /// use gostocks_core::operators::SequenceCells;
    /// use gostocks_core::{Span, Symbol, Trade};
    /// use timely::dataflow::operators::{Capture, ToStream, capture::Extract};
    ///
    /// let t = |time_ns, price: &str| Trade::new(
    ///     Symbol::new("X").unwrap(), time_ns, 0, price.parse().unwrap(), "2".parse().unwrap(),
    /// );
    /// let bars = [Span::new(10, "10ns")];
    /// let (cells, sequenced) = timely::example(move |scope| {
    ///     // Grid of 10ns: 3 and 7 share the cell at 10; 10 itself starts a new bar.
    ///     let trades = vec![t(7, "11"), t(3, "10"), t(10, "12"), t(14, "9")].to_stream(scope);
    ///     let (cells, sequenced) = trades.sequence_cells(10, &bars, true);
    ///     (cells.capture(), sequenced.unwrap().capture())
    /// });
    /// let cells: Vec<_> = cells.extract().into_iter().flat_map(|(_, v)| v).collect();
    /// assert_eq!(cells.len(), 3);
    /// assert_eq!((cells[0].time, cells[0].part.agg.count, cells[0].part.high.to_string()), (10, 2, "11".into()));
    /// assert_eq!((cells[1].time, cells[1].part.first.0), (10, 10));
    /// // The trade at 10 carries its return from 11, the trade before it in another cell.
    /// assert_eq!(cells[1].part.agg.n_ret, 1);
    /// assert_eq!((cells[2].time, cells[2].part.low.to_string()), (20, "9".into()));
    /// let sequenced: Vec<_> = sequenced.extract().into_iter().flat_map(|(_, v)| v).collect();
    /// let times: Vec<_> = sequenced.iter().map(|s| (s.time, s.trade.time_ns)).collect();
    /// assert_eq!(times, [(10, 3), (10, 7), (10, 10), (20, 14)]);
    /// ```
    fn sequence_cells(
        self,
        resolution: u64,
        bars: &[Span],
        keep_sequenced: bool,
    ) -> CellsAndSequenced<'scope>;
}

impl<'scope> SequenceCells<'scope> for StreamVec<'scope, u64, Trade> {
    fn sequence_cells(
        self,
        resolution: u64,
        bars: &[Span],
        keep_sequenced: bool,
    ) -> CellsAndSequenced<'scope> {
        let folds = (EachCell, Nothing, Nothing);
        let (cells, _, _, sequenced) =
            sequence_cells_core(self, resolution, bars, keep_sequenced, None, folds);
        (cells, sequenced)
    }
}

/// The cells themselves, as a fold.
struct EachCell;

impl Fold<Cell> for EachCell {
    type Out = Cell;

    #[inline]
    fn add(&mut self, cell: &Cell, out: &mut Vec<Cell>) {
        out.push(*cell);
    }

    fn expect(&mut self, records: usize, out: &mut Vec<Cell>) {
        out.reserve(records);
    }

    fn flush(&mut self, _out: &mut Vec<Cell>) {}
}

/// A fold that keeps nothing: an output left unused.
struct Nothing;

impl Fold<Cell> for Nothing {
    type Out = ();

    #[inline]
    fn add(&mut self, _cell: &Cell, _out: &mut Vec<()>) {}

    fn flush(&mut self, _out: &mut Vec<()>) {}
}

/// What [`sequence_cells_core`] returns: one stream per fold, and the sequenced trades when
/// asked for.
pub(crate) type Folded<'scope, A, B, C> = (
    StreamVec<'scope, u64, A>,
    StreamVec<'scope, u64, B>,
    StreamVec<'scope, u64, C>,
    Option<StreamVec<'scope, u64, Sequenced>>,
);

/// [`SequenceCells::sequence_cells`] with the cells folded three ways as they are made, each
/// fold with its output: the cells never travel as messages of their own (what the analytics
/// derive from a cell is smaller than the cell, and one stream read by three operators would
/// be copied for each but the last).
pub(crate) fn sequence_cells_core<'scope, A, B, C>(
    trades: StreamVec<'scope, u64, Trade>,
    resolution: u64,
    bars: &[Span],
    keep_sequenced: bool,
    spares: Option<Spares>,
    (mut a, mut b, mut c): (A, B, C),
) -> Folded<'scope, A::Out, B::Out, C::Out>
where
    A: Fold<Cell> + 'static,
    B: Fold<Cell> + 'static,
    C: Fold<Cell> + 'static,
    A::Out: Clone + 'static,
    B::Out: Clone + 'static,
    C::Out: Clone + 'static,
{
    let mut builder = OperatorBuilder::new("SequenceCells".to_owned(), trades.scope());
    let pact = super::route::symbol_pact(|t: &Trade| &t.symbol);
    let mut input = builder.new_input(trades, pact);
    let (a_out, a_stream) = builder.new_output::<Vec<A::Out>>();
    let (b_out, b_stream) = builder.new_output::<Vec<B::Out>>();
    let (c_out, c_stream) = builder.new_output::<Vec<C::Out>>();
    let (sequenced_out, sequenced) = builder.new_output::<Vec<Sequenced>>();
    let mut a_out = OutputBuilder::<u64, CapacityContainerBuilder<Vec<A::Out>>>::from(a_out);
    let mut b_out = OutputBuilder::<u64, CapacityContainerBuilder<Vec<B::Out>>>::from(b_out);
    let mut c_out = OutputBuilder::<u64, CapacityContainerBuilder<Vec<C::Out>>>::from(c_out);
    let mut sequenced_out =
        OutputBuilder::<u64, CapacityContainerBuilder<Vec<Sequenced>>>::from(sequenced_out);
    // The outputs that carry data, each with a capability at the least grid time waiting; the
    // sequenced trades' last.
    let ports = if keep_sequenced { 4 } else { 3 };
    let mut grid = Grid::new(resolution, ports);
    let mut fold = CellFold::new(bars);
    builder.build(move |_initial| {
        let mut roster = Roster::default();
        let mut cells: Vec<Cell> = Vec::new();
        let mut ready: Vec<Sequenced> = Vec::new();
        let (mut a_buf, mut b_buf, mut c_buf) = (Vec::new(), Vec::new(), Vec::new());
        move |frontiers| {
            let frontier = &frontiers[0];
            input.for_each_stamp(|cap, data| grid.take_in(&cap, data));
            let is_final = |time| !frontier.less_equal(&time);
            if keep_sequenced {
                // Sized once: a sent container comes back empty, and growing it trade by trade
                // would copy the sequenced trades over and over. One the matcher is done with
                // is filled again rather than fresh memory, and new ones are sized in powers
                // of two, so that one given back fits a later message.
                let need: usize = grid.trades.finals(is_final).map(Vec::len).sum();
                if ready.capacity() < need {
                    ready = spares
                        .as_ref()
                        .and_then(|s| s.take(need))
                        .unwrap_or_else(|| Vec::with_capacity(need.next_power_of_two()));
                }
            }
            grid.trades.release(is_final, |time, trades| {
                // Folded as they came when every symbol's trades came in order (the cells'
                // order within a grid time matters to no fold, nor the order of the symbols'
                // sequenced trades to alert matching).
                if !roster.file(trades) {
                    roster.sort(trades);
                }
                let sequenced = keep_sequenced.then_some(&mut ready);
                roster.fold(time, trades, &mut fold, &mut cells, sequenced);
                roster.finish();
            });
            let Some(caps) = grid.trades.caps() else {
                return;
            };
            // The cells of every grid time made final now (a few dozen kB: still in cache),
            // folded at once, into outputs sized once: an output sent comes back empty, and
            // growing it grid time by grid time would copy it over and over.
            a.expect(cells.len(), &mut a_buf);
            b.expect(cells.len(), &mut b_buf);
            c.expect(cells.len(), &mut c_buf);
            for cell in &cells {
                a.add(cell, &mut a_buf);
                b.add(cell, &mut b_buf);
                c.add(cell, &mut c_buf);
            }
            cells.clear();
            a.flush(&mut a_buf);
            b.flush(&mut b_buf);
            c.flush(&mut c_buf);
            send(&mut a_out, &caps[0], &mut a_buf);
            send(&mut b_out, &caps[1], &mut b_buf);
            send(&mut c_out, &caps[2], &mut c_buf);
            if keep_sequenced {
                send(&mut sequenced_out, &caps[3], &mut ready);
            }
            grid.trades.settle();
        }
    });
    (
        a_stream,
        b_stream,
        c_stream,
        keep_sequenced.then_some(sequenced),
    )
}

/// Sends `buf` under `cap` unless it is empty, and leaves it empty.
fn send<D: Clone + 'static>(
    out: &mut OutputBuilder<u64, CapacityContainerBuilder<Vec<D>>>,
    cap: &Capability<u64>,
    buf: &mut Vec<D>,
) {
    if !buf.is_empty() {
        out.activate().session(cap).give_container(buf);
        // A sent container comes back holding anything: empty it.
        buf.clear();
    }
}
