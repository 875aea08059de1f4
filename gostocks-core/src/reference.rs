//! A from-scratch recomputation of the analytics contract: plain loops over all trades, no
//! dataflow, no incremental state. Tests compare the dataflow against it at every grid time; it
//! is also a readable statement of what the numbers mean.

use std::collections::BTreeMap;

use crate::alerts::{AlertRule, Condition, EventKind, Mode, PauseReason};
use crate::decimal::Fixed;
use crate::indicators::{Agg, Ema, quantize_log_return};
use crate::stats::{AnalyticsConfig, BarCore, BarRow, StatsRow, WindowCore};
use crate::symbol::Symbol;
use crate::tick::Trade;
use crate::watermark::grid_ceil;

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

// ---- alerts: a plain loop over ticks and rules ----

/// What a rule's state machine needs at one tick.
/// A window's (n, Σp, Σ size, Σ price × size) at a tick.
type PrevSums = (i128, i128, i128, i128);

struct At {
    price: Fixed,
    prev: Option<Fixed>,
    /// Per window: (n, Σp) up to and including the tick, the volatility, the price of the
    /// window's earliest tick, Σ size and Σ price × size.
    windows: Vec<(i128, i128, Option<f64>, Fixed, i128, i128)>,
    /// Per window: (n, Σp, Σ size, Σ price × size) at the previous tick (for the crosses), with
    /// that tick's price.
    prev_windows: Option<(Fixed, Vec<PrevSums>)>,
}

fn volatility_of(returns: &[f64]) -> Option<f64> {
    // From scratch with the same quantized returns the contract uses.
    if returns.len() < 2 {
        return None;
    }
    let q: Vec<i128> = returns.iter().map(|r| (r * 1e12).round() as i128).collect();
    let n = q.len() as f64;
    let mean = q.iter().sum::<i128>() as f64 / n;
    let ss: f64 = q.iter().map(|&x| (x as f64 - mean).powi(2)).sum();
    Some((ss / (n - 1.0)).sqrt() / 1e12)
}

fn timeline(trades: &[Trade], symbol: Symbol, windows: &[u64]) -> Vec<(Trade, At)> {
    let mut mine: Vec<Trade> = trades
        .iter()
        .filter(|t| t.symbol == symbol)
        .copied()
        .collect();
    mine.sort_by_key(|t| (t.time_ns, t.seq));
    let mut out: Vec<(Trade, At)> = Vec::new();
    let mut starts = vec![0usize; windows.len()];
    for i in 0..mine.len() {
        let t = mine[i].time_ns;
        let ws = windows
            .iter()
            .zip(&mut starts)
            .map(|(&w, start)| {
                // The window (t - W, t] up to and including tick i, summed from scratch.
                while mine[*start].time_ns + w <= t {
                    *start += 1;
                }
                let inside: Vec<usize> = (*start..=i).collect();
                let n = inside.len() as i128;
                let sum: i128 = inside
                    .iter()
                    .map(|&j| i128::from(mine[j].price.units()))
                    .sum();
                let rets: Vec<f64> = inside
                    .iter()
                    .filter(|&&j| j > 0)
                    .map(|&j| (mine[j].price.to_f64() / mine[j - 1].price.to_f64()).ln())
                    .collect();
                let volume: i128 = inside
                    .iter()
                    .map(|&j| i128::from(mine[j].size.units()))
                    .sum();
                let pq: i128 = inside
                    .iter()
                    .map(|&j| i128::from(mine[j].price.units()) * i128::from(mine[j].size.units()))
                    .sum();
                (n, sum, volatility_of(&rets), mine[*start].price, volume, pq)
            })
            .collect::<Vec<_>>();
        let prev_windows = out.last().map(|(p, at)| {
            (
                p.price,
                at.windows.iter().map(|w| (w.0, w.1, w.4, w.5)).collect(),
            )
        });
        out.push((
            mine[i],
            At {
                price: mine[i].price,
                prev: i.checked_sub(1).map(|j| mine[j].price),
                windows: ws,
                prev_windows,
            },
        ));
    }
    out
}

/// Whether the rule's condition holds, and its value.
fn holds(r: &AlertRule, at: &At) -> Option<f64> {
    let (p, thr) = (at.price, r.threshold);
    let price = p.to_f64();
    let yes = |c: bool, v: f64| c.then_some(v);
    match r.condition {
        Condition::PriceAbove => yes(p > thr, price),
        Condition::PriceBelow => yes(p < thr, price),
        Condition::CrossesAbove => yes(at.prev.is_some_and(|q| q <= thr) && p > thr, price),
        Condition::CrossesBelow => yes(at.prev.is_some_and(|q| q >= thr) && p < thr, price),
        Condition::SmaCrossAbove | Condition::SmaCrossBelow => {
            let w = usize::from(r.window.unwrap());
            let (n, sum, _, _, _, _) = at.windows[w];
            let (pp, pw) = at.prev_windows.as_ref()?;
            let (pn, psum, _, _) = pw[w];
            let now = n * i128::from(p.units()) - sum;
            let before = pn * i128::from(pp.units()) - psum;
            let sma = sum as f64 / n as f64 / 1e8;
            if r.condition == Condition::SmaCrossAbove {
                yes(before <= 0 && now > 0, sma)
            } else {
                yes(before >= 0 && now < 0, sma)
            }
        }
        Condition::VolatilityAbove => {
            let v = at.windows[usize::from(r.window.unwrap())].2?;
            yes(v > thr.to_f64(), v)
        }
        Condition::ChangePctAbove | Condition::ChangePctBelow => {
            let first = at.windows[usize::from(r.window.unwrap())].3;
            let (rise, x) = change(first, p, thr);
            let pct = (p.units() - first.units()) as f64 * 100.0 / first.units() as f64;
            if r.condition == Condition::ChangePctAbove {
                yes(rise > x, pct)
            } else {
                yes(-rise > x, pct)
            }
        }
        Condition::VolumeAbove => {
            let volume = at.windows[usize::from(r.window.unwrap())].4;
            yes(volume > i128::from(thr.units()), volume as f64 / 1e8)
        }
        Condition::VwapCrossAbove | Condition::VwapCrossBelow => {
            let w = usize::from(r.window.unwrap());
            let (_, _, _, _, q, pq) = at.windows[w];
            let (pp, pw) = at.prev_windows.as_ref()?;
            let (_, _, pq_before, pqsum_before) = pw[w];
            if q == 0 || pq_before == 0 {
                return None;
            }
            // (price - vwap) · Σq, now and at the tick before
            let now = i128::from(p.units()) * q - pq;
            let before = i128::from(pp.units()) * pq_before - pqsum_before;
            let vwap = pq as f64 / q as f64 / 1e8;
            if r.condition == Condition::VwapCrossAbove {
                yes(before <= 0 && now > 0, vwap)
            } else {
                yes(before >= 0 && now < 0, vwap)
            }
        }
        Condition::EntersChannel
        | Condition::ExitsChannel
        | Condition::Inside
        | Condition::Outside => {
            let upper = r.upper.unwrap();
            let inside = |q: Fixed| thr <= q && q <= upper;
            let c = match r.condition {
                Condition::Inside => inside(p),
                Condition::Outside => !inside(p),
                Condition::EntersChannel => at.prev.is_some_and(|q| !inside(q)) && inside(p),
                _ => at.prev.is_some_and(inside) && !inside(p),
            };
            yes(c, price)
        }
        // Judged on quotes (see `spread_alert_events`).
        Condition::SpreadAbove => None,
    }
}

/// A move from `first` to `price` against a threshold of `thr` percent, both scaled to compare
/// in integers: `(price - first) × 100 × 10⁸` and `thr × 10⁸ × first` (prices in 10⁻⁸ units),
/// so that `rise > x` says the price rose by more than `thr` %.
fn change(first: Fixed, price: Fixed, thr: Fixed) -> (i128, i128) {
    let (p0, p) = (i128::from(first.units()), i128::from(price.units()));
    ((p - p0) * 100 * 100_000_000, i128::from(thr.units()) * p0)
}

/// Whether the condition is false by at least the hysteresis.
fn reset(r: &AlertRule, at: &At) -> bool {
    let (p, thr, h) = (at.price, r.threshold, r.hysteresis);
    match r.condition {
        Condition::PriceAbove | Condition::CrossesAbove => {
            p <= Fixed::from_units(thr.units() - h.units())
        }
        Condition::PriceBelow | Condition::CrossesBelow => {
            p >= Fixed::from_units(thr.units() + h.units())
        }
        Condition::SmaCrossAbove | Condition::SmaCrossBelow => {
            let (n, sum, _, _, _, _) = at.windows[usize::from(r.window.unwrap())];
            let d = n * i128::from(p.units()) - sum; // (price - sma) * n
            if r.condition == Condition::SmaCrossAbove {
                d <= -(i128::from(h.units()) * n)
            } else {
                d >= i128::from(h.units()) * n
            }
        }
        Condition::ChangePctAbove | Condition::ChangePctBelow => {
            let first = at.windows[usize::from(r.window.unwrap())].3;
            let lowered = Fixed::from_units(thr.units() - h.units());
            let (rise, x) = change(first, p, lowered);
            if r.condition == Condition::ChangePctAbove {
                rise <= x
            } else {
                -rise <= x
            }
        }
        Condition::VolumeAbove => {
            let volume = at.windows[usize::from(r.window.unwrap())].4;
            volume <= i128::from(thr.units()) - i128::from(h.units())
        }
        Condition::VwapCrossAbove | Condition::VwapCrossBelow => {
            let (_, _, _, _, q, pq) = at.windows[usize::from(r.window.unwrap())];
            if q == 0 {
                return false;
            }
            let d = i128::from(p.units()) * q - pq; // (price - vwap) · Σq
            if r.condition == Condition::VwapCrossAbove {
                d <= -(i128::from(h.units()) * q)
            } else {
                d >= i128::from(h.units()) * q
            }
        }
        // Outside the channel by the hysteresis.
        Condition::Inside | Condition::EntersChannel => {
            let upper = r.upper.unwrap();
            p < Fixed::from_units(thr.units() - h.units())
                || p > Fixed::from_units(upper.units() + h.units())
        }
        // Inside the channel by the hysteresis from both edges.
        Condition::Outside | Condition::ExitsChannel => {
            let upper = r.upper.unwrap();
            Fixed::from_units(thr.units() + h.units()) <= p
                && p <= Fixed::from_units(upper.units() - h.units())
        }
        Condition::VolatilityAbove => match at.windows[usize::from(r.window.unwrap())].2 {
            None => true,
            Some(v) => v <= Fixed::from_units(thr.units() - h.units()).to_f64(),
        },
        // Judged on quotes (see `spread_alert_events`).
        Condition::SpreadAbove => false,
    }
}

/// The alert events of `rules` over `trades`, from scratch: each rule's state machine run over
/// its symbol's ticks in `(t, seq)` order, with each window's sums recomputed at every tick.
/// A rule `(rule, from, until)` sees the ticks of grid times in `[from, until)` with
/// `t >= created_ns`. Returns `(alert id, time_ns, seq)` in `(time, seq, id)` order (a pause
/// is listed as the event it replaced: see [`alert_events_with_kind`]).
pub fn alert_events(
    trades: &[Trade],
    rules: &[(AlertRule, u64, u64)],
    cfg: &AnalyticsConfig,
) -> Vec<(String, u64, u64)> {
    alert_events_with_kind(trades, rules, cfg)
        .into_iter()
        .map(|(id, t, seq, _)| (id, t, seq))
        .collect()
}

/// [`alert_events`] with each event's kind: a firing, or the pause of a storm guard.
///
/// A `once_per_bar_close` rule judges each bar `[kB, (k+1)B)` of its size on the bar's last
/// tick `c`: it fires, at time `(k+1)B` with `c`'s seq, when it sees `c`, is still alive at the
/// bar's end (`(k+1)B < until`) and its condition holds at `c`. Then each rule's events, in
/// time order, pass its storm guard: an event at `τ` that follows `max_events` events at times
/// in `(τ - within, τ]` becomes a pause, and the rule's later events are dropped.
pub fn alert_events_with_kind(
    trades: &[Trade],
    rules: &[(AlertRule, u64, u64)],
    cfg: &AnalyticsConfig,
) -> Vec<(String, u64, u64, EventKind)> {
    let windows: Vec<u64> = cfg.windows.iter().map(crate::span::Span::ns).collect();
    let res = cfg.resolution.ns();
    let mut events = Vec::new();
    let symbols: std::collections::BTreeSet<Symbol> = trades.iter().map(|t| t.symbol).collect();
    for s in symbols {
        let line = timeline(trades, s, &windows);
        let points: Vec<(u64, u64)> = line.iter().map(|(t, _)| (t.time_ns, t.seq)).collect();
        for (r, from, until) in rules.iter().filter(|(r, ..)| r.symbol == s) {
            let holds = |i: usize| holds(r, &line[i].1).is_some();
            let reset = |i: usize| reset(r, &line[i].1);
            rule_events(r, (*from, *until), res, &points, holds, reset, &mut events);
        }
    }
    events.sort_by(|a, b| (a.1, a.2, &a.0).cmp(&(b.1, b.2, &b.0)));
    events
}

/// One rule's events over its symbol's timeline `points` (`(t, seq)` in that order), its
/// condition holding at point `i` when `holds(i)` and false by the hysteresis when `reset(i)`:
/// the modes first, then the storm guard (see [`alert_events_with_kind`]).
fn rule_events(
    r: &AlertRule,
    (from, until): (u64, u64),
    res: u64,
    points: &[(u64, u64)],
    holds: impl Fn(usize) -> bool,
    reset: impl Fn(usize) -> bool,
    events: &mut Vec<(String, u64, u64, EventKind)>,
) {
    let sees = |(t, _): (u64, u64)| {
        let g = grid_ceil(t, res);
        g >= from && g < until && t >= r.created_ns
    };
    // Every event the mode alone gives, (time, seq), in time order.
    let mut fired: Vec<(u64, u64)> = Vec::new();
    if r.mode == Mode::OncePerBarClose {
        let b = r.bar_ns.expect("a bar mode has a bar");
        let mut i = 0;
        while i < points.len() {
            let k = points[i].0 / b;
            let mut j = i;
            while j < points.len() && points[j].0 / b == k {
                j += 1;
            }
            let close = points[j - 1];
            let end = (k + 1) * b;
            if sees(close) && end < until && holds(j - 1) {
                fired.push((end, close.1));
            }
            i = j;
        }
    } else {
        #[derive(PartialEq)]
        enum St {
            Armed,
            Disarmed(u64),
            Cooling(u64),
            Done,
        }
        let mut st = St::Armed;
        for (i, &(t, seq)) in points.iter().enumerate() {
            if !sees((t, seq)) {
                continue;
            }
            if let St::Cooling(ready) = st
                && t >= ready
            {
                st = St::Armed;
            }
            if let St::Disarmed(fired) = st
                && reset(i)
            {
                let ready = fired + r.cooldown_ns;
                st = if t >= ready {
                    St::Armed
                } else {
                    St::Cooling(ready)
                };
            }
            if st == St::Armed && holds(i) {
                fired.push((t, seq));
                st = match r.mode {
                    Mode::Once => St::Done,
                    Mode::Rearm => St::Disarmed(t),
                    Mode::OncePerBar => {
                        let b = r.bar_ns.expect("a bar mode has a bar");
                        St::Cooling((t / b + 1) * b)
                    }
                    Mode::OncePerInterval => St::Cooling(t + r.cooldown_ns),
                    Mode::OncePerBarClose => unreachable!("judged per bar above"),
                };
            }
        }
    }
    // The storm guard: counts what was emitted, from scratch at every event.
    let mut emitted: Vec<u64> = Vec::new();
    for (t, seq) in fired {
        if let Some(g) = r.storm {
            let recent = emitted.iter().filter(|&&x| x + g.within_ns > t).count();
            if recent >= g.max_events as usize {
                let paused = EventKind::Paused {
                    reason: PauseReason::Storm,
                };
                events.push((r.id.clone(), t, seq, paused));
                break;
            }
        }
        emitted.push(t);
        events.push((r.id.clone(), t, seq, EventKind::Fired));
    }
}

/// The events of the alerts judged on quotes (`spread_above`), from scratch: each rule's state
/// machine over its symbol's quotes in `(t, seq)` order, the spread in bps compared as a
/// fraction: `spread_bps > x` exactly when `(ask - bid) × 2 × 10⁴ > x × (ask + bid)`. Rules
/// and the result are as in [`alert_events_with_kind`].
pub fn spread_alert_events(
    quotes: &[crate::quotes::Quote],
    rules: &[(AlertRule, u64, u64)],
    cfg: &AnalyticsConfig,
) -> Vec<(String, u64, u64, EventKind)> {
    let res = cfg.resolution.ns();
    let mut events = Vec::new();
    for (symbol, line) in quotes_by_symbol(quotes) {
        let points: Vec<(u64, u64)> = line.iter().map(|q| (q.time_ns, q.seq)).collect();
        // (ask - bid) × 2 × 10⁴ against x × (ask + bid), in 10⁻⁸ units, for a two-sided quote.
        let above = |i: usize, x: i128| -> Option<bool> {
            let q = &line[i];
            if q.bid_size.units() <= 0 || q.ask_size.units() <= 0 {
                return None;
            }
            let (bid, ask) = (i128::from(q.bid.units()), i128::from(q.ask.units()));
            Some((ask - bid) * 20_000 * 100_000_000 > x * (ask + bid))
        };
        for (r, from, until) in rules.iter().filter(|(r, ..)| r.symbol == symbol) {
            if r.condition != Condition::SpreadAbove {
                continue;
            }
            let thr = i128::from(r.threshold.units());
            let lowered = thr - i128::from(r.hysteresis.units());
            let holds = |i: usize| above(i, thr) == Some(true);
            let reset = |i: usize| above(i, lowered) == Some(false);
            rule_events(r, (*from, *until), res, &points, holds, reset, &mut events);
        }
    }
    events.sort_by(|a, b| (a.1, a.2, &a.0).cmp(&(b.1, b.2, &b.0)));
    events
}

/// The quote statistics the contract of [`crate::quotes`] defines, in `(time, symbol, window)`
/// order: for every grid time, every quote's interval clipped to the window and summed.
pub fn quote_stats(
    quotes: &[crate::quotes::Quote],
    config: &AnalyticsConfig,
) -> Vec<crate::quotes::QuoteStatsRow> {
    use crate::quotes::{QuoteStatsRow, QuoteSums};
    let res = config.resolution.ns();
    let mut rows = Vec::new();
    for (_, book) in quotes_by_symbol(quotes) {
        for (w, span) in config.windows.iter().enumerate() {
            let len = span.ns();
            let first = grid_ceil(book[0].time_ns, res);
            let last = grid_ceil(book[book.len() - 1].time_ns, res) + len;
            for g in (first..=last).step_by(res as usize) {
                let from = g.saturating_sub(len);
                let mut sums = QuoteSums::default();
                for (i, q) in book.iter().enumerate() {
                    if (g < len || q.time_ns > from) && q.time_ns <= g {
                        sums.quotes += 1;
                    }
                    // In force from its time to the next quote's.
                    let end = book.get(i + 1).map_or(u64::MAX, |n| n.time_ns);
                    let (a, b) = (q.time_ns.max(from), end.min(g));
                    let (Some(spread), Some(mid2)) = (q.spread_units(), q.mid2_units()) else {
                        continue;
                    };
                    if b <= a {
                        continue;
                    }
                    let dt = b - a;
                    sums.two_sided_ns += dt;
                    sums.spread_ns += i128::from(spread) * i128::from(dt);
                    sums.mid2_ns += u128::from(mid2) * u128::from(dt);
                    if spread < 0 {
                        sums.crossed_ns += dt;
                    }
                    if spread == 0 {
                        sums.locked_ns += dt;
                    }
                }
                if sums.quotes == 0 {
                    continue;
                }
                let last = *book.iter().rev().find(|q| q.time_ns <= g).expect("quote");
                rows.push(QuoteStatsRow {
                    time_ns: g,
                    symbol: last.symbol,
                    window: w as u8,
                    sums,
                    last,
                });
            }
        }
    }
    rows.sort_by_key(|r| (r.time_ns, r.symbol, r.window));
    rows
}

/// The mid bars of [`crate::quotes`], in `(symbol, bar, start)` order.
pub fn mid_bars(
    quotes: &[crate::quotes::Quote],
    config: &AnalyticsConfig,
) -> Vec<crate::quotes::MidBarRow> {
    use crate::quotes::MidBarRow;
    let mut rows = Vec::new();
    for (symbol, book) in quotes_by_symbol(quotes) {
        let mids: Vec<(u64, u64)> = book
            .iter()
            .filter_map(|q| q.mid2_units().map(|m| (q.time_ns, m)))
            .collect();
        for (b, span) in config.bars.iter().enumerate() {
            let mut starts: Vec<u64> = mids
                .iter()
                .map(|(t, _)| t / span.ns() * span.ns())
                .collect();
            starts.dedup();
            for start in starts {
                let bar: Vec<u64> = mids
                    .iter()
                    .filter(|(t, _)| t / span.ns() * span.ns() == start)
                    .map(|&(_, m)| m)
                    .collect();
                rows.push(MidBarRow {
                    symbol,
                    bar: b as u8,
                    start_ns: start,
                    open2: bar[0],
                    high2: *bar.iter().max().expect("a mid"),
                    low2: *bar.iter().min().expect("a mid"),
                    close2: bar[bar.len() - 1],
                    quotes: bar.len() as u64,
                });
            }
        }
    }
    rows.sort();
    rows
}

/// The quotes of each symbol in `(t, seq)` order.
fn quotes_by_symbol(
    quotes: &[crate::quotes::Quote],
) -> BTreeMap<Symbol, Vec<crate::quotes::Quote>> {
    let mut map: BTreeMap<Symbol, Vec<crate::quotes::Quote>> = BTreeMap::new();
    for q in quotes {
        map.entry(q.symbol).or_default().push(*q);
    }
    for v in map.values_mut() {
        v.sort_by_key(|q| (q.time_ns, q.seq, *q));
    }
    map
}
