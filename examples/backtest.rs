//! Run with: cargo run -p gostocks-examples --example backtest [-- SPEED]
//!
//! A backtest: the recording is replayed faster than real time (100x by default: its five
//! minutes in about three seconds), paced by the ticks' own event times, and two
//! moving-average crossover strategies trade AAPL on the 1-second bar closes the pipeline
//! emits as the replay goes. Each goes long one share when its fast average of closes crosses
//! above its slow one and flat when it crosses back below; profit is counted exactly, in the
//! prices' own decimals. The strategies are then run again over bars built straight from the
//! file, and must agree to the last digit.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use gostocks_core::pipeline::{Sink, build};
use gostocks_core::stats::{AnalyticsConfig, BarRow};
use gostocks_core::watermark::grid_ceil;
use gostocks_core::{Fixed, Trade, timely};
use gostocks_examples::{SEC, load_recording};

const SYMBOL: &str = "AAPL";

/// A moving-average crossover over the last `fast` and `slow` closes.
#[derive(Clone, Debug)]
struct Crossover {
    fast: usize,
    slow: usize,
    closes: Vec<Fixed>,
    /// Whether the fast average was above the slow one at the last close.
    above: Option<bool>,
    /// The price the current long position was bought at.
    entry: Option<Fixed>,
    /// Realised profit, in 10⁻⁸ units (exact).
    pnl: i128,
    trades: usize,
}

impl Crossover {
    fn new(fast: usize, slow: usize) -> Crossover {
        Crossover {
            fast,
            slow,
            closes: Vec::new(),
            above: None,
            entry: None,
            pnl: 0,
            trades: 0,
        }
    }

    /// The sum of the last `n` closes (exact), to compare averages without dividing.
    fn sum(&self, n: usize) -> i128 {
        self.closes[self.closes.len() - n..]
            .iter()
            .map(|c| i128::from(c.units()))
            .sum()
    }

    fn on_close(&mut self, close: Fixed) {
        self.closes.push(close);
        if self.closes.len() < self.slow {
            return;
        }
        // fast mean > slow mean  <=>  sum_fast * slow > sum_slow * fast.
        let above =
            self.sum(self.fast) * self.slow as i128 > self.sum(self.slow) * self.fast as i128;
        match (self.above, above, self.entry) {
            (Some(false), true, None) => {
                self.entry = Some(close);
                self.trades += 1;
            }
            (Some(true), false, Some(entry)) => {
                self.pnl += i128::from(close.units() - entry.units());
                self.entry = None;
                self.trades += 1;
            }
            _ => {}
        }
        self.above = Some(above);
    }

    /// Profit including the open position marked at the last close, as an exact decimal.
    fn marked_pnl(&self) -> Fixed {
        let open = match (self.entry, self.closes.last()) {
            (Some(entry), Some(last)) => i128::from(last.units() - entry.units()),
            _ => 0,
        };
        Fixed::from_units(i64::try_from(self.pnl + open).expect("a small profit"))
    }
}

/// The strategies, fed each 1-second AAPL bar as the pipeline closes it.
struct Strategies(Rc<RefCell<Vec<Crossover>>>);

impl Sink for Strategies {
    fn bars(&mut self, rows: &mut Vec<BarRow>) {
        for bar in rows
            .drain(..)
            .filter(|b| b.bar == 0 && b.symbol.as_str() == SYMBOL)
        {
            for s in self.0.borrow_mut().iter_mut() {
                s.on_close(bar.core.close);
            }
        }
    }
}

fn main() {
    let speed: f64 = std::env::args()
        .nth(1)
        .map_or(100.0, |s| s.parse().expect("SPEED is a number, e.g. 100"));
    assert!(speed > 0.0, "SPEED must be above 0");
    let trades = load_recording();
    let strategies = vec![Crossover::new(5, 20), Crossover::new(10, 40)];
    let input = trades.clone();
    let initial = strategies.clone();
    let (live, elapsed) = timely::execute_directly(move |worker| {
        let live = Rc::new(RefCell::new(initial));
        let sink = Strategies(Rc::clone(&live));
        let (mut inputs, probe) = worker.dataflow::<u64, _, _>(|scope| {
            let (inputs, outputs) = build(scope, &AnalyticsConfig::default(), false);
            (inputs, outputs.into_sink(sink))
        });
        drop(inputs.rules);
        let (began, first) = (Instant::now(), input[0].time_ns);
        for trade in input {
            // Wait until the replay clock reaches the trade's event time, scaled by the speed,
            // running the dataflow meanwhile.
            let due = Duration::from_secs_f64((trade.time_ns - first) as f64 / 1e9 / speed);
            while began.elapsed() < due {
                if !worker.step_or_park(Some(due.saturating_sub(began.elapsed()))) {
                    break;
                }
            }
            let g = grid_ceil(trade.time_ns, SEC);
            inputs.trades.advance_to(g);
            inputs.trades.send(trade);
            // Time up to the trade is complete: bars that ended before it can close.
            inputs.trades.flush();
            while probe.less_than(&g) {
                worker.step();
            }
        }
        drop(inputs.trades);
        while worker.step() {}
        let elapsed = began.elapsed();
        (live.take(), elapsed)
    });

    let span = (trades.last().expect("trades").time_ns - trades[0].time_ns) as f64 / 1e9;
    println!(
        "replayed {span:.1} s of ticks in {:.2} s ({:.0}x real time)",
        elapsed.as_secs_f64(),
        span / elapsed.as_secs_f64()
    );
    println!(
        "{SYMBOL} on 1-second closes, long one share on a golden cross, flat on a death cross:"
    );
    let offline = replay_offline(&trades, strategies);
    for (s, o) in live.iter().zip(&offline) {
        println!(
            "  SMA {:>2}/{:<2}: {:>2} trades, profit {:>6} (position {})",
            s.fast,
            s.slow,
            s.trades,
            s.marked_pnl().to_string(),
            if s.entry.is_some() { "long" } else { "flat" },
        );
        assert!(s.closes.len() > s.slow, "enough bars to trade on");
        assert_eq!(s.closes, o.closes, "the pipeline's closes are the file's");
        assert_eq!(
            (s.trades, s.marked_pnl()),
            (o.trades, o.marked_pnl()),
            "the same trades and profit"
        );
    }
    let best = live
        .iter()
        .max_by_key(|s| s.marked_pnl())
        .expect("two strategies");
    println!("best: SMA {}/{}", best.fast, best.slow);
}

/// The strategies over 1-second bars built straight from the file (close: the last trade of
/// each second `[k, k+1)` in `(t, seq)` order).
fn replay_offline(trades: &[Trade], mut strategies: Vec<Crossover>) -> Vec<Crossover> {
    let mut closes: BTreeMap<u64, (u64, u64, Fixed)> = BTreeMap::new();
    for t in trades.iter().filter(|t| t.symbol.as_str() == SYMBOL) {
        let close = closes
            .entry(t.time_ns / SEC)
            .or_insert((t.time_ns, t.seq, t.price));
        if (t.time_ns, t.seq) >= (close.0, close.1) {
            *close = (t.time_ns, t.seq, t.price);
        }
    }
    for (_, _, price) in closes.into_values() {
        for s in &mut strategies {
            s.on_close(price);
        }
    }
    strategies
}
