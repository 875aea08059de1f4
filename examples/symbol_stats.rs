//! Run with: cargo run -p gostocks-examples --example symbol_stats
//!
//! The whole analytics over a recorded file: [`build`] puts the pipeline on a timely worker,
//! the recording's trades go in at their grid times, and the stats changelog comes out in
//! order. This prints AAPL's 60-second window each time it changes (count, volume, last, min,
//! max, VWAP), and checks every printed row against the same window recomputed from the file.

use std::cell::RefCell;
use std::rc::Rc;

use gostocks_core::pipeline::build;
use gostocks_core::stats::{AnalyticsConfig, StatsRow};
use gostocks_core::watermark::grid_ceil;
use gostocks_core::{Fixed, Trade, timely};
use gostocks_examples::{SEC, load_recording, secs_since};

const SYMBOL: &str = "AAPL";

fn main() {
    let trades = load_recording();
    let config = AnalyticsConfig::default();
    let window_ns = config.windows[0].ns();
    let input = trades.clone();
    let rows = timely::execute_directly(move |worker| {
        let rows = Rc::new(RefCell::new(Vec::new()));
        let sink = Rc::clone(&rows);
        let mut inputs = worker.dataflow::<u64, _, _>(|scope| {
            let (inputs, outputs) = build(scope, &config, false);
            // Worker 0 gets each final grid time's rows, sorted: keep AAPL's first window.
            outputs.in_order(
                move |batch: &mut Vec<StatsRow>| {
                    sink.borrow_mut().extend(
                        batch
                            .drain(..)
                            .filter(|r| r.symbol.as_str() == SYMBOL && r.window == 0),
                    )
                },
                |_bars| {},
                |_events| {},
            );
            inputs
        });
        // No alert rules: closing their input lets time pass on it.
        drop(inputs.rules);
        for trade in input {
            // The recording is in time order, so each trade's grid time bounds the next ones'.
            inputs.trades.advance_to(grid_ceil(trade.time_ns, SEC));
            inputs.trades.send(trade);
        }
        drop(inputs.trades);
        while worker.step() {}
        rows.take()
    });

    let start = trades[0].time_ns / SEC * SEC;
    println!("{SYMBOL}, 60s window, each change (t = seconds into the recording)");
    println!(
        "{:>6} {:>5} {:>7} {:>8} {:>8} {:>8} {:>10}",
        "t", "count", "volume", "last", "min", "max", "vwap"
    );
    for row in &rows {
        match (row.core, row.last) {
            (Some(core), Some(last)) => println!(
                "{:>6} {:>5} {:>7} {:>8} {:>8} {:>8} {:>10.4}",
                secs_since(start, row.time_ns),
                core.agg.count,
                core.agg.volume_fixed().to_string(),
                last.to_string(),
                core.min.to_string(),
                core.max.to_string(),
                core.agg.vwap().unwrap_or(f64::NAN),
            ),
            _ => println!("{:>6} {:>5}", secs_since(start, row.time_ns), "empty"),
        }
        check(row, &trades, window_ns);
    }
    assert!(
        rows.len() > 100,
        "AAPL trades all through the recording: {} rows",
        rows.len()
    );
    let last = rows.last().expect("rows");
    assert!(
        last.core.is_none(),
        "once the input ends, every window empties"
    );
    println!(
        "{} changes, each equal to the window recomputed from the file",
        rows.len()
    );
}

/// The window `(g - W, g]` of AAPL's trades, recomputed from the file, equals the row.
fn check(row: &StatsRow, trades: &[Trade], window_ns: u64) {
    let g = row.time_ns;
    let inside: Vec<&Trade> = trades
        .iter()
        .filter(|t| t.symbol.as_str() == SYMBOL && t.time_ns <= g && t.time_ns + window_ns > g)
        .collect();
    let Some(core) = row.core else {
        assert!(
            inside.is_empty(),
            "t={g}: an empty row for a window holding trades"
        );
        return;
    };
    let volume: i64 = inside.iter().map(|t| t.size.units()).sum();
    let min = inside.iter().map(|t| t.price).min();
    let max = inside.iter().map(|t| t.price).max();
    let last = inside
        .iter()
        .max_by_key(|t| (t.time_ns, t.seq))
        .map(|t| t.price);
    assert_eq!(core.agg.count as usize, inside.len(), "count at {g}");
    assert_eq!(
        core.agg.volume_fixed(),
        Fixed::from_units(volume),
        "volume at {g}"
    );
    assert_eq!(
        (Some(core.min), Some(core.max)),
        (min, max),
        "min, max at {g}"
    );
    assert_eq!(row.last, last, "last at {g}");
}
