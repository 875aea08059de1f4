//! Run with: cargo run -p gostocks-examples --example custom_indicator
//!
//! A custom indicator beside the built-in window sums: order-flow imbalance, the share of a
//! window's volume bought by aggressive buyers minus the share sold by aggressive sellers.
//!
//! Like the built-in [`Agg`](gostocks_core::indicators::Agg), it is an exact aggregate that
//! differential dataflow carries as the *difference* of each update: every trade adds its
//! volume to the window when it enters (at its grid time `g`) and the same quantity is
//! retracted when it leaves (at `g + W`). Integer sums make the retraction exact, so a window
//! always holds exactly the sum of its trades, however long the stream runs.
//!
//! The recording goes through both the core pipeline and the new indicator; this prints, for
//! AAPL's 60-second window, the core's count and VWAP beside the imbalance, and checks that
//! the two agree on the window's volume and that the imbalance equals a recomputation from the
//! file at every change.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use gostocks_core::differential_dataflow::difference::{
    Abelian, IsZero, Monoid, Multiply, Semigroup,
};
use gostocks_core::differential_dataflow::input::Input as _;
use gostocks_core::differential_dataflow::operators::CountTotal;
use gostocks_core::pipeline::build;
use gostocks_core::stats::{AnalyticsConfig, StatsRow};
use gostocks_core::watermark::grid_ceil;
use gostocks_core::{Side, Symbol, Tick, timely};
use gostocks_examples::{SEC, load_ticks, secs_since};
use serde::{Deserialize, Serialize};

const SYMBOL: &str = "AAPL";

/// Aggressive buy and sell volume, in 10⁻⁸ units: integers, so adding and retracting is exact.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
struct Flow {
    buy: i128,
    sell: i128,
}

impl Flow {
    fn of(side: Side, size: gostocks_core::Fixed) -> Flow {
        let v = i128::from(size.units());
        match side {
            Side::Buy => Flow { buy: v, sell: 0 },
            Side::Sell => Flow { buy: 0, sell: v },
        }
    }

    /// `(buy - sell) / (buy + sell)`, in [-1, 1]; `None` for an empty window.
    fn imbalance(&self) -> Option<f64> {
        let total = self.buy + self.sell;
        (total != 0).then(|| (self.buy - self.sell) as f64 / total as f64)
    }
}

// What differential needs of a difference type: a zero, addition, negation, and scaling by the
// input's integer multiplicities.
impl IsZero for Flow {
    fn is_zero(&self) -> bool {
        *self == Flow::default()
    }
}

impl Semigroup for Flow {
    fn plus_equals(&mut self, rhs: &Flow) {
        self.buy += rhs.buy;
        self.sell += rhs.sell;
    }
}

impl Monoid for Flow {
    fn zero() -> Flow {
        Flow::default()
    }
}

impl Abelian for Flow {
    fn negate(&mut self) {
        self.buy = -self.buy;
        self.sell = -self.sell;
    }
}

impl Multiply<isize> for Flow {
    type Output = Flow;
    fn multiply(self, k: &isize) -> Flow {
        let k = *k as i128;
        Flow {
            buy: self.buy * k,
            sell: self.sell * k,
        }
    }
}

/// What the dataflow produced for AAPL: the core's rows, and the indicator's changes.
#[derive(Default)]
struct Seen {
    stats: Vec<StatsRow>,
    flow: Vec<(Flow, u64, isize)>,
}

impl Seen {
    /// The window's flow at `time`: the total whose `+1` is not yet retracted (zero if none).
    fn flow_at(&self, time: u64) -> Flow {
        let mut totals: BTreeMap<Flow, isize> = BTreeMap::new();
        for (flow, _, diff) in self.flow.iter().filter(|(_, t, _)| *t <= time) {
            *totals.entry(*flow).or_default() += diff;
        }
        let live: Vec<Flow> = totals
            .into_iter()
            .filter(|(_, d)| *d != 0)
            .map(|(f, _)| f)
            .collect();
        assert!(live.len() <= 1, "one total per window at a time: {live:?}");
        live.first().copied().unwrap_or_default()
    }
}

fn main() {
    let ticks = load_ticks();
    let config = AnalyticsConfig::default();
    let window_ns = config.windows[0].ns();
    let input = ticks.clone();
    let seen = timely::execute_directly(move |worker| {
        let seen = Rc::new(RefCell::new(Seen::default()));
        let (stats_sink, flow_sink) = (Rc::clone(&seen), Rc::clone(&seen));
        let (mut inputs, mut sides) = worker.dataflow::<u64, _, _>(|scope| {
            let (inputs, outputs) = build(scope, &config, false);
            outputs.in_order(
                move |rows| {
                    let keep = rows
                        .drain(..)
                        .filter(|r| r.symbol.as_str() == SYMBOL && r.window == 0);
                    stats_sink.borrow_mut().stats.extend(keep)
                },
                |_bars| {},
                |_events| {},
            );
            // The indicator: each trade's flow enters at its grid time and leaves W later.
            let (sides, trades) =
                scope.new_collection::<(Symbol, Side, gostocks_core::Fixed), isize>();
            let entered =
                trades.explode(|(symbol, side, size)| Some((symbol, Flow::of(side, size))));
            let left = entered.clone().negate().delay(move |t| t + window_ns);
            // `count_total` accumulates each symbol's differences: its window's total flow,
            // as a `+1` of the new total and a `-1` of the old one at every change.
            entered
                .concat(left)
                .count_total()
                .inspect(move |((symbol, flow), time, diff)| {
                    if symbol.as_str() == SYMBOL {
                        flow_sink.borrow_mut().flow.push((*flow, *time, *diff));
                    }
                });
            (inputs, sides)
        });
        drop(inputs.rules);
        for tick in input {
            let trade = tick.validate().expect("valid ticks");
            let g = grid_ceil(trade.time_ns, SEC);
            inputs.trades.advance_to(g);
            inputs.trades.send(trade);
            sides.advance_to(g);
            sides.insert((
                trade.symbol,
                tick.side.expect("the recording has sides"),
                trade.size,
            ));
        }
        drop(inputs.trades);
        drop(sides);
        while worker.step() {}
        seen.take()
    });

    let start = ticks[0].time_ns as u64 / SEC * SEC;
    println!("{SYMBOL}, 60s window: the core's sums beside the custom order-flow imbalance");
    println!(
        "{:>6} {:>5} {:>10} {:>10}",
        "t", "count", "vwap", "imbalance"
    );
    for row in &seen.stats {
        let flow = seen.flow_at(row.time_ns);
        let core = row.core.unwrap_or_default();
        let show = |v: Option<f64>, signed: bool| match v {
            Some(v) if signed => format!("{v:+.4}"),
            Some(v) => format!("{v:.4}"),
            None => "-".to_owned(),
        };
        println!(
            "{:>6} {:>5} {:>10} {:>10}",
            secs_since(start, row.time_ns),
            core.agg.count,
            show(core.agg.vwap(), false),
            show(flow.imbalance(), true),
        );
        // The two sums see the same trades: the window's volume is bought plus sold.
        assert_eq!(
            flow.buy + flow.sell,
            core.agg.volume,
            "volume at {}",
            row.time_ns
        );
        assert_eq!(
            flow,
            recompute(&ticks, row.time_ns, window_ns),
            "flow at {}",
            row.time_ns
        );
    }
    // The indicator changes only when the window's content does (it may stay put when a
    // trade leaves as an equal one enters, which the core's sums of event times still see).
    let core_times: Vec<u64> = seen.stats.iter().map(|r| r.time_ns).collect();
    assert!(
        seen.flow
            .iter()
            .all(|(_, t, _)| core_times.binary_search(t).is_ok())
    );
    assert!(seen.stats.len() > 100);
    println!(
        "{} changes; the imbalance equals its recomputation from the file at each",
        seen.stats.len()
    );
}

/// AAPL's buy and sell volume over `(g - W, g]`, straight from the file.
fn recompute(ticks: &[Tick], g: u64, window_ns: u64) -> Flow {
    let mut flow = Flow::default();
    for t in ticks {
        let time = t.time_ns as u64;
        if t.symbol == SYMBOL && time <= g && time + window_ns > g {
            flow.plus_equals(&Flow::of(t.side.expect("sides"), t.size));
        }
    }
    flow
}
