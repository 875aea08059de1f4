//! Ten million ticks through short windows: aggregates add and retract exactly. Every window that
//! empties comes back to exactly nothing, and the final windows equal a from-scratch computation.
//!
//! Ten million ticks take minutes without optimisation, so this runs in release builds
//! (`./scripts/test` runs it with `cargo test --release`).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use gostocks_core::operators::{EmitOrdered, analytics};
use gostocks_core::stats::{AnalyticsConfig, StatsRow};
use gostocks_core::{Fixed, Span, Symbol, Trade, reference};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use timely::dataflow::operators::Input;

const SEC: u64 = 1_000_000_000;
const TICKS: u64 = 10_000_000;

#[test]
#[cfg_attr(
    debug_assertions,
    ignore = "10 million ticks: run in release (./scripts/test does)"
)]
fn ten_million_ticks_retract_exactly() {
    let cfg = AnalyticsConfig::default()
        .with_windows(vec![Span::new(2 * SEC, "2s"), Span::new(5 * SEC, "5s")])
        .with_resolution(Span::new(SEC, "1s"))
        .with_bars(vec![Span::new(SEC, "1s")])
        .with_ema_span(20)
        .with_lateness(0);
    let symbols: Vec<Symbol> = ["AAA", "BBB", "CCC", "DDD"]
        .iter()
        .map(|s| Symbol::new(s).unwrap())
        .collect();
    let rows: Arc<Mutex<Log>> = Arc::default();
    let tail: Arc<Mutex<VecDeque<Trade>>> = Arc::default();
    let (sink, recent) = (Arc::clone(&rows), Arc::clone(&tail));
    let config = cfg.clone();
    let end_of_ticks = timely::execute_directly(move |worker| {
        let mut input = worker.dataflow::<u64, _, _>(|scope| {
            let (input, trades) = scope.new_input::<Vec<Trade>>();
            analytics(trades, &config, false).stats.emit_ordered(
                |r: &StatsRow| r.time_ns,
                move |_, batch| {
                    let mut rows = sink.lock().unwrap();
                    for row in batch.drain(..) {
                        // Exactness: an empty window is exactly nothing, never a residue.
                        match row.core {
                            Some(c) => assert!(
                                c.agg.count > 0,
                                "a window with a residue but no ticks: {row:?}"
                            ),
                            None => assert!(row.last.is_none()),
                        }
                        rows.count += 1;
                        if row.core.is_some() {
                            rows.last_full.insert((row.symbol, row.window), row);
                        }
                        rows.last.insert((row.symbol, row.window), row);
                    }
                },
            );
            input
        });
        let mut rng = StdRng::seed_from_u64(7);
        let mut prices = [1_000_000_000i64; 4];
        let mut t = 1_700_000_000 * SEC;
        for seq in 0..TICKS {
            // About 5,000 ticks a second, with pauses longer than the longest window.
            t += if rng.random_ratio(1, 20_000) {
                7 * SEC
            } else {
                rng.random_range(0..400_000)
            };
            let s = rng.random_range(0..4);
            prices[s] = (prices[s] + rng.random_range(-5_000..=5_000)).max(1);
            let trade = Trade::new(
                symbols[s],
                t,
                seq,
                Fixed::from_units(prices[s]),
                Fixed::from_units(rng.random_range(1..100_000_000_000)),
            );
            input.advance_to(t);
            input.send(trade);
            let mut recent = recent.lock().unwrap();
            recent.push_back(trade);
            while recent.front().is_some_and(|f| f.time_ns + 7 * SEC < t) {
                recent.pop_front();
            }
            if seq % 65_536 == 0 {
                worker.step();
            }
        }
        input.close();
        while worker.step() {}
        t
    });

    let log = rows.lock().unwrap();
    // About 2,000 s of event time, 8 windows: a row per window and second with changes.
    assert!(
        log.count > 10_000,
        "a changelog was written: {} rows",
        log.count
    );
    // Every window was emptied at the end: its last line says so, exactly.
    assert_eq!(log.last.len(), 8);
    for ((symbol, w), row) in &log.last {
        assert!(
            row.core.is_none(),
            "{symbol} window {w} ends empty, exactly: {row:?}"
        );
        assert!(row.time_ns > end_of_ticks);
    }
    // Each window's last non-empty state equals a computation from scratch over the last ticks
    // (the tail holds more than the longest window plus every predecessor those windows need).
    let tail: Vec<Trade> = tail.lock().unwrap().iter().copied().collect();
    let mut want: BTreeMap<(Symbol, u8), StatsRow> = BTreeMap::new();
    for row in reference::stats(&tail, &cfg)
        .into_iter()
        .filter(|r| r.core.is_some())
    {
        want.insert((row.symbol, row.window), row);
    }
    assert_eq!(
        want, log.last_full,
        "final windows equal the from-scratch computation"
    );
}

/// What the sink keeps of the changelog.
#[derive(Default)]
struct Log {
    count: u64,
    last: BTreeMap<(Symbol, u8), StatsRow>,
    last_full: BTreeMap<(Symbol, u8), StatsRow>,
}
