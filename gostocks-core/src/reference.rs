//! A from-scratch recomputation of the analytics contract: plain loops over all trades, no
//! dataflow, no incremental state. Tests compare the dataflow against it at every grid time; it
//! is also a readable statement of what the numbers mean.

use std::collections::BTreeMap;

use crate::feed::grid_ceil;
use crate::indicators::{Agg, Ema, quantize_log_return};
use crate::stats::{AnalyticsConfig, BarCore, BarRow, StatsRow, WindowCore};
use crate::symbol::Symbol;
use crate::tick::Trade;

/// The trades of each symbol in `(t, seq)` order.
fn by_symbol(trades: &[Trade]) -> BTreeMap<Symbol, Vec<Trade>> {
    let mut map: BTreeMap<Symbol, Vec<Trade>> = BTreeMap::new();
    for t in trades {
        map.entry(t.symbol).or_default().push(*t);
    }
    for v in map.values_mut() {
        v.sort_by_key(|t| (t.time_ns, t.seq, t.price, t.size));
    }
    map
}

/// The stats changelog the contract defines, in `(time, symbol, window)` order.
pub fn stats(trades: &[Trade], config: &AnalyticsConfig) -> Vec<StatsRow> {
    let res = config.resolution.ns();
    let mut rows = Vec::new();
    for (symbol, ticks) in by_symbol(trades) {
        // Each tick's log return against the tick just before it (possibly outside any window).
        let returns: Vec<Option<i64>> = (0..ticks.len())
            .map(|i| (i > 0).then(|| quantize_log_return(ticks[i].price, ticks[i - 1].price)))
            .collect();
        for (w, span) in config.windows.iter().enumerate() {
            let len = span.ns();
            let mut times: Vec<u64> = ticks
                .iter()
                .flat_map(|t| [grid_ceil(t.time_ns, res), grid_ceil(t.time_ns, res) + len])
                .collect();
            times.sort_unstable();
            times.dedup();
            let (mut lo, mut hi) = (0, 0);
            for g in times {
                // The window at g: g - W < t <= g (indices lo..hi; both only move forward).
                while hi < ticks.len() && ticks[hi].time_ns <= g {
                    hi += 1;
                }
                while lo < hi && ticks[lo].time_ns + len <= g {
                    lo += 1;
                }
                let inside: Vec<usize> = (lo..hi).collect();
                let core = (!inside.is_empty()).then(|| {
                    let mut agg = Agg::default();
                    for &i in &inside {
                        agg +=
                            Agg::tick(ticks[i].price, ticks[i].size, ticks[i].time_ns, returns[i]);
                    }
                    let min = inside
                        .iter()
                        .map(|&i| ticks[i].price)
                        .min()
                        .unwrap_or_default();
                    let max = inside
                        .iter()
                        .map(|&i| ticks[i].price)
                        .max()
                        .unwrap_or_default();
                    WindowCore { agg, min, max }
                });
                let last = inside.last().map(|&i| ticks[i].price);
                rows.push(StatsRow {
                    time_ns: g,
                    symbol,
                    window: w as u8,
                    core,
                    last,
                });
            }
        }
    }
    rows.sort_by_key(|r| (r.time_ns, r.symbol, r.window));
    rows
}

/// The bars the contract defines, with their EMA, in `(end time, symbol, bar)` order.
pub fn bars(trades: &[Trade], config: &AnalyticsConfig) -> Vec<BarRow> {
    let mut rows = Vec::new();
    for (symbol, ticks) in by_symbol(trades) {
        for (b, span) in config.bars.iter().enumerate() {
            let size = span.ns();
            let mut ema = Ema::new(config.ema_span);
            let mut i = 0;
            while i < ticks.len() {
                let start = ticks[i].time_ns / size * size;
                let mut j = i;
                while j < ticks.len() && ticks[j].time_ns < start + size {
                    j += 1;
                }
                let bar = &ticks[i..j];
                let mut agg = Agg::default();
                for t in bar {
                    agg += Agg::tick(t.price, t.size, t.time_ns, None);
                }
                let core = BarCore {
                    open: bar[0].price,
                    high: bar.iter().map(|t| t.price).max().unwrap_or_default(),
                    low: bar.iter().map(|t| t.price).min().unwrap_or_default(),
                    close: bar[bar.len() - 1].price,
                    agg,
                };
                let ema = ema.update(core.close.to_f64());
                rows.push(BarRow {
                    symbol,
                    bar: b as u8,
                    start_ns: start,
                    core,
                    ema,
                });
                i = j;
            }
        }
    }
    rows.sort_by_key(|r| {
        (
            r.start_ns + config.bars[r.bar as usize].ns(),
            r.symbol,
            r.bar,
        )
    });
    rows
}
