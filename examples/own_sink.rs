//! Run with: cargo run -p gostocks-examples --example own_sink
//!
//! The pipeline embedded in your own program, with your own sink. [`build`] puts the analytics
//! on each timely worker; [`Outputs::into_sink`](gostocks_core::pipeline::Outputs::into_sink)
//! hands every final time's rows, in order, to a type of yours that implements
//! [`Sink`]: here, one that writes the 1-minute bars as CSV to standard output.
//!
//! It runs on two worker threads: each takes every other trade of the recording, the pipeline
//! routes each symbol to one worker, and the sink on worker 0 still sees one ordered stream,
//! the same as on one worker. The bars are checked against bars built from the file directly.
//!
//! (The `gostocks` binary has sinks of its own, for Redis, Kafka and Postgres: asynchronous,
//! with bounded queues, retries and health. They live in the binary; this trait is the
//! synchronous seam the library offers.)

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex};

use gostocks_core::pipeline::{Sink, build};
use gostocks_core::stats::{AnalyticsConfig, BarRow};
use gostocks_core::watermark::grid_ceil;
use gostocks_core::{Fixed, Symbol, Trade, timely};
use gostocks_examples::{SEC, load_recording};

const WORKERS: usize = 2;

/// Writes the 1-minute bars (bar index 1 of the default config) as CSV, and keeps them.
struct CsvBars {
    out: std::io::Stdout,
    kept: Arc<Mutex<Vec<BarRow>>>,
}

impl Sink for CsvBars {
    fn bars(&mut self, rows: &mut Vec<BarRow>) {
        let mut out = self.out.lock();
        for bar in rows.drain(..).filter(|b| b.bar == 1) {
            let c = bar.core;
            writeln!(
                out,
                "{},{},{},{},{},{},{},{:.4}",
                bar.symbol,
                bar.start_ns,
                c.open,
                c.high,
                c.low,
                c.close,
                c.agg.volume_fixed(),
                bar.ema
            )
            .expect("stdout");
            self.kept.lock().expect("lock").push(bar);
        }
    }
    // `stats` and `events` keep their defaults: this sink drops those rows.
}

fn main() {
    let trades = Arc::new(load_recording());
    let kept = Arc::new(Mutex::new(Vec::new()));
    println!("symbol,start_ns,open,high,low,close,volume,ema");
    let (shared, all) = (Arc::clone(&kept), Arc::clone(&trades));
    timely::execute(timely::Config::process(WORKERS), move |worker| {
        let sink = CsvBars {
            out: std::io::stdout(),
            kept: Arc::clone(&shared),
        };
        let (index, peers) = (worker.index(), worker.peers());
        let mut inputs = worker.dataflow::<u64, _, _>(|scope| {
            let (inputs, outputs) = build(scope, &AnalyticsConfig::default(), false);
            outputs.into_sink(sink);
            inputs
        });
        drop(inputs.rules);
        // Each worker reads its share; the pipeline moves every trade to its symbol's worker.
        for trade in all.iter().skip(index).step_by(peers) {
            inputs.trades.advance_to(grid_ceil(trade.time_ns, SEC));
            inputs.trades.send(*trade);
        }
    })
    .expect("timely runs");

    let got = kept.lock().expect("lock").clone();
    let want = minute_bars(&trades);
    assert_eq!(
        got.len(),
        want.len(),
        "one bar per symbol and minute with trades"
    );
    for bar in &got {
        let c = bar.core;
        let key = (bar.start_ns, bar.symbol);
        assert_eq!(
            want.get(&key),
            Some(&(c.open, c.high, c.low, c.close, c.agg.volume_fixed())),
            "{key:?}"
        );
    }
    // In order: by end time, then symbol.
    assert!(
        got.windows(2)
            .all(|w| (w[0].start_ns, w[0].symbol) < (w[1].start_ns, w[1].symbol))
    );
    eprintln!(
        "{} bars from {WORKERS} workers, in order, each equal to the file's",
        got.len()
    );
}

/// Open, high, low, close and volume.
type Ohlcv = (Fixed, Fixed, Fixed, Fixed, Fixed);

/// The bar of each `(minute start, symbol)`, straight from the file.
fn minute_bars(trades: &[Trade]) -> BTreeMap<(u64, Symbol), Ohlcv> {
    let minute = 60 * SEC;
    let mut bars = BTreeMap::new();
    let mut sorted = trades.to_vec();
    sorted.sort_by_key(|t| (t.time_ns, t.seq));
    for t in sorted {
        let key = (t.time_ns / minute * minute, t.symbol);
        let bar = bars
            .entry(key)
            .or_insert((t.price, t.price, t.price, t.price, Fixed::ZERO));
        bar.1 = bar.1.max(t.price);
        bar.2 = bar.2.min(t.price);
        bar.3 = t.price;
        bar.4 = Fixed::from_units(bar.4.units() + t.size.units());
    }
    bars
}
