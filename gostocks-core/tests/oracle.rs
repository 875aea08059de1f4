//! Oracle tests: the incremental dataflow against a from-scratch recomputation
//! (`gostocks_core::reference`) on seeded random tick streams, at every grid time.

use gostocks_core::batch::{Outputs, RowCounts, run_batch};
use gostocks_core::stats::AnalyticsConfig;
use gostocks_core::{Fixed, Span, Symbol, Trade, reference};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const SEC: u64 = 1_000_000_000;
const BASE: u64 = 1_700_000_000 * SEC;

fn config(lateness: u64) -> AnalyticsConfig {
    AnalyticsConfig::default()
        .with_windows(vec![Span::new(3 * SEC, "3s"), Span::new(10 * SEC, "10s")])
        .with_resolution(Span::new(SEC, "1s"))
        .with_bars(vec![Span::new(SEC, "1s"), Span::new(5 * SEC, "5s")])
        .with_ema_span(3)
        .with_lateness(lateness)
}

/// A stream with the awkward cases in it: equal timestamps, ticks exactly on grid, window and
/// bar boundaries, runs of equal prices, and gaps longer than the longest window.
fn stream(seed: u64, n: usize) -> Vec<Trade> {
    let mut rng = StdRng::seed_from_u64(seed);
    let symbols: Vec<Symbol> = ["AAA", "BBB", "CCC"]
        .iter()
        .map(|s| Symbol::new(s).unwrap())
        .collect();
    let mut t = BASE;
    let mut prices = [10_000i64, 2_500, 77];
    (0..n)
        .map(|seq| {
            t += match rng.random_range(0..100) {
                0..=19 => 0,                        // same timestamp as the previous tick
                20..=29 => SEC - t % SEC,           // exactly on the next grid point
                30..=31 => 12 * SEC,                // a gap longer than every window
                32..=34 => 5 * SEC - t % (5 * SEC), // on a 5 s bar boundary
                _ => rng.random_range(1..SEC / 2),
            };
            let s = rng.random_range(0..symbols.len());
            prices[s] = (prices[s] + rng.random_range(-3..=3)).max(1);
            Trade::new(
                symbols[s],
                t,
                seq as u64,
                Fixed::from_mantissa(prices[s], 2).unwrap(),
                Fixed::from_mantissa(rng.random_range(1..500), rng.random_range(0..4)).unwrap(),
            )
        })
        .collect()
}

/// The same ticks in an arrival order that is shuffled, but never more than `lateness` behind.
fn shuffle_within(trades: &[Trade], lateness: u64, seed: u64) -> Vec<Trade> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut keyed: Vec<(u64, Trade)> = trades
        .iter()
        .map(|t| (t.time_ns + rng.random_range(0..=lateness), *t))
        .collect();
    keyed.sort_by_key(|(k, t)| (*k, t.seq));
    keyed.into_iter().map(|(_, t)| t).collect()
}

fn check(trades: Vec<Trade>, inputs: Vec<Vec<Trade>>, cfg: &AnalyticsConfig, workers: usize) {
    let want_stats = reference::stats(&trades, cfg);
    let want_bars = reference::bars(&trades, cfg);
    let got = run_batch(inputs.clone(), cfg, workers, Outputs::Collect);
    // Consumed where they are computed (the benchmark's way), the same rows are produced.
    let counted = run_batch(inputs, cfg, workers, Outputs::Count);
    assert!(
        counted.stats.is_empty() && counted.bars.is_empty(),
        "nothing gathered"
    );
    assert_eq!(
        counted.counts,
        RowCounts::new(want_stats.len(), want_bars.len(), 0)
    );
    assert_eq!(got.counts, counted.counts);
    assert!(
        got.late.is_empty(),
        "nothing is late: {:?}",
        got.late.first()
    );
    assert_eq!(got.stats.len(), want_stats.len(), "number of stats rows");
    for (g, w) in got.stats.iter().zip(&want_stats) {
        assert_eq!(
            g, w,
            "stats row at {} for {} window {}",
            w.time_ns, w.symbol, w.window
        );
    }
    assert_eq!(got.bars, want_bars);
}

#[test]
fn in_order_streams_match_the_reference_at_one_and_two_workers() {
    for seed in 0..4 {
        let trades = stream(seed, 3_000);
        for workers in [1, 2] {
            check(trades.clone(), vec![trades.clone()], &config(0), workers);
        }
    }
}

#[test]
fn arrival_order_within_the_lateness_does_not_change_results() {
    let lateness = 4 * SEC;
    for seed in 10..13 {
        let trades = stream(seed, 3_000);
        let shuffled = shuffle_within(&trades, lateness, seed);
        assert_ne!(shuffled, trades, "the shuffle moved something");
        for workers in [1, 2] {
            check(
                trades.clone(),
                vec![shuffled.clone()],
                &config(lateness),
                workers,
            );
        }
    }
}

#[test]
fn several_inputs_each_with_its_own_watermark() {
    let trades = stream(21, 4_000);
    // Split by symbol: three inputs that interleave in event time.
    let inputs: Vec<Vec<Trade>> = ["AAA", "BBB", "CCC"]
        .iter()
        .map(|s| {
            trades
                .iter()
                .filter(|t| t.symbol.as_str() == *s)
                .copied()
                .collect()
        })
        .collect();
    for workers in [1, 2] {
        check(trades.clone(), inputs.clone(), &config(0), workers);
    }
}

#[test]
fn late_ticks_are_set_aside_and_not_counted() {
    let trades = stream(33, 2_000);
    let mut arrival = trades.clone();
    // Move a tick from the middle to the end: by then it is far more than the lateness behind.
    let moved = arrival.remove(1_000);
    arrival.push(moved);
    let cfg = config(SEC);
    let got = run_batch(vec![arrival], &cfg, 2, Outputs::Collect);
    assert_eq!(got.late.len(), 1);
    assert_eq!(got.late[0].0, moved);
    let admitted: Vec<Trade> = trades.iter().filter(|t| **t != moved).copied().collect();
    assert_eq!(got.stats, reference::stats(&admitted, &cfg));
    assert_eq!(got.bars, reference::bars(&admitted, &cfg));
}
