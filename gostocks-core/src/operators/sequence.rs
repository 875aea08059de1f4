//! `sequence`: puts each symbol's trades in `(t, seq)` order and pairs each with its predecessor.

use std::collections::BTreeMap;

use rustc_hash::FxHashMap as HashMap;

use serde::{Deserialize, Serialize};
use timely::dataflow::StreamVec;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::Capability;
use timely::dataflow::operators::generic::operator::Operator;

use crate::decimal::Fixed;
use crate::symbol::Symbol;
use crate::tick::Trade;

/// A trade's position and price: what an operator needs to know of the tick before another.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
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
pub struct Sequenced {
    /// The grid time at which the trade enters the results.
    pub time: u64,
    /// The trade.
    pub trade: Trade,
    /// Its predecessor, which may be arbitrarily older.
    pub prev: Option<Point>,
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
    /// let t = |time_ns, price: &str| Trade {
    ///     symbol: Symbol::new("AAPL").unwrap(), time_ns, seq: 0,
    ///     price: price.parse().unwrap(), size: "1".parse().unwrap(),
    /// };
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
        let resolution = resolution.max(1);
        let pact = Exchange::new(|t: &Trade| super::symbol_route(&t.symbol));
        self.unary_frontier(pact, "Sequence", move |_cap, _info| {
            // Trades not yet final, by grid time; one capability is held at the least of them.
            // Each grid time's trades are sorted once, when it becomes final (not the whole
            // backlog at every advance: partitions read at different paces can leave a large one).
            let mut pending: BTreeMap<u64, Vec<Trade>> = BTreeMap::new();
            let mut held: Option<Capability<u64>> = None;
            let mut last: HashMap<Symbol, Point> = HashMap::default();
            let mut ready: Vec<Sequenced> = Vec::new();
            let mut run: Vec<Trade> = Vec::new();
            move |(input, frontier), output| {
                input.for_each_stamp(|cap, data| {
                    let mut least = None;
                    // Trades mostly come in time order: one map lookup per run of a grid time.
                    let mut run_g = None;
                    for container in data {
                        for t in container.drain(..) {
                            let g = crate::feed::grid_ceil(t.time_ns, resolution);
                            if run_g != Some(g) {
                                if let Some(r) = run_g {
                                    pending.entry(r).or_default().append(&mut run);
                                }
                                run_g = Some(g);
                                least = Some(least.map_or(g, |l: u64| l.min(g)));
                            }
                            run.push(t);
                        }
                    }
                    if let Some(r) = run_g {
                        pending.entry(r).or_default().append(&mut run);
                    }
                    let Some(least) = least else { return };
                    if held.as_ref().is_none_or(|h| *h.time() > least) {
                        held = Some(cap.delayed(&least, 0));
                    }
                });
                let Some(cap) = held.as_mut() else { return };
                if frontier.less_equal(cap.time()) {
                    return;
                }
                // Grid times the frontier has passed are complete: emit them in (time, symbol,
                // t, seq) order, so each trade meets its true predecessor.
                while let Some(entry) = pending.first_entry() {
                    if frontier.less_equal(entry.key()) {
                        break;
                    }
                    let time = *entry.key();
                    let mut trades = entry.remove();
                    trades.sort_unstable_by_key(|t| (t.symbol, t.time_ns, t.seq));
                    for trade in trades {
                        let prev = last.insert(trade.symbol, Point::from(&trade));
                        ready.push(Sequenced { time, trade, prev });
                    }
                }
                output.session(&*cap).give_iterator(ready.drain(..));
                match pending.keys().next() {
                    Some(g) => cap.downgrade(g),
                    None => held = None,
                }
            }
        })
    }
}
