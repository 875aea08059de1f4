//! Quotes (the top of the book) and their time-weighted statistics.
//!
//! A [`Quote`] is the best bid and ask of a symbol from its event time on, until the next
//! quote. The book is a step function of time, so its statistics weight each quote by how long
//! it was in force:
//!
//! - the statistics "at grid time `g`" for a window `W` cover `[g - W, g]`, and the book carried
//!   into that span from the last quote before it counts from `g - W`;
//! - a row exists at every grid time `g` at which some quote lies in `g - W < t <= g` (as the
//!   trade stats exist while their window holds a trade);
//! - quotes are ordered by `(t, seq)`; of several at the same time the greatest is in force;
//! - time-weighted sums are exact integers ([`QuoteSums`]): the spread and twice the mid in
//!   units of 10⁻⁸ times ns, and the ns the book was two-sided, crossed (bid > ask) or locked
//!   (bid = ask). The means derived from them are doubles, as VWAP is;
//! - the mean spread in basis points is that of the time-weighted mean mid:
//!   `10⁴ × ∫ spread dt / ∫ mid dt`, a ratio of the two exact sums (not a mean of per-quote
//!   ratios, which would not add and retract exactly).
//!
//! Results depend on the set of quotes, not their arrival order within the lateness:
//! [`QuoteEngine`] holds quotes back until the watermark of every input has passed their grid
//! time, then sweeps them in `(t, seq)` order. [`crate::reference::quote_stats`] states the same
//! contract as plain loops.
//!
//! ```
//! use gostocks_core::quotes::{Quote, QuoteEngine};
//! use gostocks_core::stats::AnalyticsConfig;
//! use gostocks_core::{Fixed, Symbol};
//! let p = |s: &str| s.parse::<Fixed>().unwrap();
//! let s = Symbol::new("X").unwrap();
//! let mut engine = QuoteEngine::new(AnalyticsConfig::default(), 1);
//! // 10.00 / 10.02 for 0.5 s, then 10.00 / 10.01.
//! engine.push(0, Quote::new(s, 500_000_000, 1, p("10"), p("3"), p("10.02"), p("1")).unwrap()).unwrap();
//! engine.push(0, Quote::new(s, 1_000_000_000, 2, p("10"), p("3"), p("10.01"), p("1")).unwrap()).unwrap();
//! let (rows, _bars) = engine.finish();
//! let at_1s = rows.iter().find(|r| r.time_ns == 1_000_000_000 && r.window == 0).unwrap();
//! assert_eq!(at_1s.sums.quotes, 2);
//! assert_eq!(at_1s.sums.mean_spread(), Some(0.02)); // only 10.02 was in force before 1 s
//! ```

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::alerts::{AlertEvent, AlertRule, SpreadBook};
use crate::decimal::Fixed;
use crate::stats::{
    AnalyticsConfig, JsonDecimals, open_row, opt_f64, opt_fixed, push_fixed, push_int,
};
use crate::symbol::Symbol;
use crate::tick::Rejection;
use crate::watermark::{Late, Watermark, grid_ceil};

/// The best bid and ask of a symbol. A side with size 0 is empty (its price is then 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Quote {
    /// Instrument symbol.
    pub symbol: Symbol,
    /// Event time, ns since the Unix epoch.
    pub time_ns: u64,
    /// Sequence number within its source (Binance's update id, a LOBSTER row).
    pub seq: u64,
    /// Best bid price (0 when the bid side is empty).
    pub bid: Fixed,
    /// Size at the best bid (0: no bid).
    pub bid_size: Fixed,
    /// Best ask price (0 when the ask side is empty).
    pub ask: Fixed,
    /// Size at the best ask (0: no ask).
    pub ask_size: Fixed,
}

impl Quote {
    /// A quote, validated: sizes are `>= 0`, and a side with a size has a price `> 0`. The
    /// rejection names the field.
    pub fn new(
        symbol: Symbol,
        time_ns: u64,
        seq: u64,
        bid: Fixed,
        bid_size: Fixed,
        ask: Fixed,
        ask_size: Fixed,
    ) -> Result<Quote, Rejection> {
        let side = |name: &str, price: Fixed, size: Fixed| -> Result<Fixed, Rejection> {
            if size.units() < 0 {
                return Err(Rejection::Decode(format!(
                    "{name}_size: must be >= 0, got {size}"
                )));
            }
            if size.units() > 0 && !price.is_positive() {
                return Err(Rejection::Decode(format!(
                    "{name}: must be > 0 when {name}_size is, got {price}"
                )));
            }
            Ok(if size.units() == 0 {
                Fixed::ZERO
            } else {
                price
            })
        };
        Ok(Quote {
            symbol,
            time_ns,
            seq,
            bid: side("bid", bid, bid_size)?,
            bid_size,
            ask: side("ask", ask, ask_size)?,
            ask_size,
        })
    }

    /// Both sides have a price.
    pub fn two_sided(&self) -> bool {
        self.bid_size.units() > 0 && self.ask_size.units() > 0
    }

    /// `ask - bid` in units of 10⁻⁸ (negative when crossed), if two-sided.
    pub fn spread_units(&self) -> Option<i64> {
        // Both prices are positive i64s: the difference fits.
        self.two_sided()
            .then(|| self.ask.units() - self.bid.units())
    }

    /// `bid + ask` (twice the mid) in units of 10⁻⁸, if two-sided.
    pub fn mid2_units(&self) -> Option<u64> {
        // Two positive i64s: the sum fits a u64.
        self.two_sided()
            .then(|| self.bid.units() as u64 + self.ask.units() as u64)
    }
}

/// Exact time-weighted sums over a span, and the number of quotes in it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub struct QuoteSums {
    /// Quotes with `g - W < t <= g`.
    pub quotes: u64,
    /// ns during which the book was two-sided.
    pub two_sided_ns: u64,
    /// ∫ (ask - bid) dt over the two-sided time, units of 10⁻⁸ × ns.
    pub spread_ns: i128,
    /// ∫ (bid + ask) dt over the two-sided time, units of 10⁻⁸ × ns.
    pub mid2_ns: u128,
    /// ns during which bid > ask.
    pub crossed_ns: u64,
    /// ns during which bid = ask.
    pub locked_ns: u64,
}

impl QuoteSums {
    /// The time-weighted mean spread (`ask - bid`), if the book was two-sided for some time.
    pub fn mean_spread(&self) -> Option<f64> {
        (self.two_sided_ns > 0).then(|| ratio(self.spread_ns, self.two_sided_ns as u128) / 1e8)
    }

    /// The time-weighted mean mid.
    pub fn mean_mid(&self) -> Option<f64> {
        (self.two_sided_ns > 0)
            .then(|| ratio(self.mid2_ns as i128, self.two_sided_ns as u128) / 2e8)
    }

    /// The mean spread in basis points of the mean mid: `2 × 10⁴ × spread_ns / mid2_ns`.
    pub fn mean_spread_bps(&self) -> Option<f64> {
        (self.mid2_ns > 0).then(|| 2e4 * ratio(self.spread_ns, self.mid2_ns))
    }

    /// The share of the two-sided time the book was crossed.
    pub fn crossed_share(&self) -> Option<f64> {
        (self.two_sided_ns > 0).then(|| self.crossed_ns as f64 / self.two_sided_ns as f64)
    }

    /// The share of the two-sided time the book was locked.
    pub fn locked_share(&self) -> Option<f64> {
        (self.two_sided_ns > 0).then(|| self.locked_ns as f64 / self.two_sided_ns as f64)
    }
}

/// `n / d` as the nearest double to within one rounding: the integer part exactly, then the
/// remainder (a cast of the whole of a 128-bit numerator would lose its low digits first).
fn ratio(n: i128, d: u128) -> f64 {
    let d = d as i128;
    // d is a duration or a sum of positive terms: > 0 and < 2^127 here.
    let (q, r) = (n.div_euclid(d), n.rem_euclid(d));
    q as f64 + r as f64 / d as f64
}

/// Integrals of the book from the first quote of a symbol to a time, kept modulo 2^128: a
/// window's value is a difference of two of them, exact whenever it fits (it always does: a
/// spread is below 2^63 units and a mid2 below 2^64, over windows below 2^64 ns).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Integral {
    two_sided_ns: u64,
    spread_ns: i128,
    mid2_ns: u128,
    crossed_ns: u64,
    locked_ns: u64,
}

impl Integral {
    /// The integral extended by `dt` ns of `quote` in force.
    fn extended(self, quote: &Quote, dt: u64) -> Integral {
        let (Some(spread), Some(mid2)) = (quote.spread_units(), quote.mid2_units()) else {
            return self;
        };
        Integral {
            two_sided_ns: self.two_sided_ns.wrapping_add(dt),
            spread_ns: self
                .spread_ns
                .wrapping_add(i128::from(spread).wrapping_mul(i128::from(dt))),
            mid2_ns: self
                .mid2_ns
                .wrapping_add(u128::from(mid2).wrapping_mul(u128::from(dt))),
            crossed_ns: self
                .crossed_ns
                .wrapping_add(if spread < 0 { dt } else { 0 }),
            locked_ns: self
                .locked_ns
                .wrapping_add(if spread == 0 { dt } else { 0 }),
        }
    }

    fn minus(self, earlier: Integral, quotes: u64) -> QuoteSums {
        QuoteSums {
            quotes,
            two_sided_ns: self.two_sided_ns.wrapping_sub(earlier.two_sided_ns),
            spread_ns: self.spread_ns.wrapping_sub(earlier.spread_ns),
            mid2_ns: self.mid2_ns.wrapping_sub(earlier.mid2_ns),
            crossed_ns: self.crossed_ns.wrapping_sub(earlier.crossed_ns),
            locked_ns: self.locked_ns.wrapping_sub(earlier.locked_ns),
        }
    }
}

/// The quote statistics of a symbol and window at a grid time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub struct QuoteStatsRow {
    /// Grid time.
    pub time_ns: u64,
    /// Symbol.
    pub symbol: Symbol,
    /// Index into [`AnalyticsConfig::windows`].
    pub window: u8,
    /// Time-weighted sums over `[g - W, g]` and the quote count of `(g - W, g]`.
    pub sums: QuoteSums,
    /// The quote in force at `g` (the greatest `(t, seq)` at or before it).
    pub last: Quote,
}

impl QuoteStatsRow {
    /// Appends the JSON line (without newline): prices exact, means as shortest round-trip
    /// doubles, `null` where undefined (an empty side, no two-sided time).
    ///
    /// ```
    /// use gostocks_core::quotes::{Quote, QuoteEngine};
    /// use gostocks_core::stats::AnalyticsConfig;
    /// use gostocks_core::{Fixed, Symbol};
    /// let p = |s: &str| s.parse::<Fixed>().unwrap();
    /// let q = Quote::new(Symbol::new("X").unwrap(), 1_000_000_000, 7, p("9.99"), p("2"), p("10.01"), p("5")).unwrap();
    /// let mut engine = QuoteEngine::new(AnalyticsConfig::default(), 1);
    /// engine.push(0, q).unwrap();
    /// let (rows, _) = engine.finish();
    /// let mut line = String::new();
    /// rows[0].write_json(&mut line, "60s");
    /// assert_eq!(line, r#"{"symbol":"X","window":"60s","time_ns":1000000000,"quotes":1,"bid":9.99,"bid_size":2,"ask":10.01,"ask_size":5,"mid":10,"spread":0.02,"mean_spread":null,"mean_spread_bps":null,"mean_mid":null,"two_sided_ns":0,"crossed_share":null,"locked_share":null}"#);
    /// ```
    pub fn write_json(&self, out: &mut String, window_label: &str) {
        self.write_json_as(out, window_label, JsonDecimals::Numbers);
    }

    /// [`write_json`](Self::write_json) with the prices and sizes in the form asked for.
    pub fn write_json_as(&self, out: &mut String, window_label: &str, form: JsonDecimals) {
        let q = &self.last;
        open_row(
            out,
            &self.symbol,
            ("window", window_label),
            ("time_ns", self.time_ns),
        );
        out.push_str(r#","quotes":"#);
        push_int(out, self.sums.quotes);
        out.push_str(r#","bid":"#);
        opt_fixed(out, (q.bid_size.units() > 0).then_some(q.bid), form);
        out.push_str(r#","bid_size":"#);
        push_fixed(out, q.bid_size, form);
        out.push_str(r#","ask":"#);
        opt_fixed(out, (q.ask_size.units() > 0).then_some(q.ask), form);
        out.push_str(r#","ask_size":"#);
        push_fixed(out, q.ask_size, form);
        out.push_str(r#","mid":"#);
        match q.mid2_units() {
            Some(m) => push_half_units(out, m, form),
            None => out.push_str("null"),
        }
        out.push_str(r#","spread":"#);
        opt_fixed(out, q.spread_units().map(Fixed::from_units), form);
        out.push_str(r#","mean_spread":"#);
        opt_f64(out, self.sums.mean_spread());
        out.push_str(r#","mean_spread_bps":"#);
        opt_f64(out, self.sums.mean_spread_bps());
        out.push_str(r#","mean_mid":"#);
        opt_f64(out, self.sums.mean_mid());
        out.push_str(r#","two_sided_ns":"#);
        push_int(out, self.sums.two_sided_ns);
        out.push_str(r#","crossed_share":"#);
        opt_f64(out, self.sums.crossed_share());
        out.push_str(r#","locked_share":"#);
        opt_f64(out, self.sums.locked_share());
        out.push('}');
    }
}

/// Appends `v / 2` units of 10⁻⁸ exactly: a mid may need a ninth decimal.
fn push_half_units(out: &mut String, v: u64, form: JsonDecimals) {
    if v.is_multiple_of(2) && v / 2 <= i64::MAX as u64 {
        return push_fixed(out, Fixed::from_units((v / 2) as i64), form);
    }
    let quoted = form == JsonDecimals::Strings;
    if quoted {
        out.push('"');
    }
    // v × 5 in units of 10⁻⁹: integer part and nine decimals, trailing zeros dropped.
    let nanos = u128::from(v) * 5;
    push_int(out, nanos / 1_000_000_000);
    let frac = format!("{:09}", nanos % 1_000_000_000);
    let frac = frac.trim_end_matches('0');
    if !frac.is_empty() {
        out.push('.');
        out.push_str(frac);
    }
    if quoted {
        out.push('"');
    }
}

/// A tumbling bar of mid prices: the two-sided quotes with `start <= t < start + size`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub struct MidBarRow {
    /// Symbol.
    pub symbol: Symbol,
    /// Index into [`AnalyticsConfig::bars`].
    pub bar: u8,
    /// Start of the bar.
    pub start_ns: u64,
    /// Twice the mid of the least `(t, seq)`, in units of 10⁻⁸.
    pub open2: u64,
    /// Twice the greatest mid.
    pub high2: u64,
    /// Twice the least mid.
    pub low2: u64,
    /// Twice the mid of the greatest `(t, seq)`.
    pub close2: u64,
    /// Two-sided quotes in the bar.
    pub quotes: u64,
}

impl MidBarRow {
    /// Appends the JSON line (without newline): mids exact (a ninth decimal where needed).
    ///
    /// ```
    /// use gostocks_core::quotes::{Quote, QuoteEngine};
    /// use gostocks_core::stats::AnalyticsConfig;
    /// use gostocks_core::{Fixed, Symbol};
    /// let p = |s: &str| s.parse::<Fixed>().unwrap();
    /// let q = Quote::new(Symbol::new("X").unwrap(), 1, 0, p("0.00000001"), p("1"), p("0.00000002"), p("1")).unwrap();
    /// let mut engine = QuoteEngine::new(AnalyticsConfig::default(), 1);
    /// engine.push(0, q).unwrap();
    /// let (_, bars) = engine.finish();
    /// let mut line = String::new();
    /// bars[0].write_json(&mut line, "1s");
    /// assert_eq!(line, r#"{"symbol":"X","bar":"1s","start_ns":0,"open":0.000000015,"high":0.000000015,"low":0.000000015,"close":0.000000015,"quotes":1}"#);
    /// ```
    pub fn write_json(&self, out: &mut String, bar_label: &str) {
        self.write_json_as(out, bar_label, JsonDecimals::Numbers);
    }

    /// [`write_json`](Self::write_json) with the mids in the form asked for.
    pub fn write_json_as(&self, out: &mut String, bar_label: &str, form: JsonDecimals) {
        open_row(
            out,
            &self.symbol,
            ("bar", bar_label),
            ("start_ns", self.start_ns),
        );
        for (name, v) in [
            ("open", self.open2),
            ("high", self.high2),
            ("low", self.low2),
            ("close", self.close2),
        ] {
            out.push_str(",\"");
            out.push_str(name);
            out.push_str("\":");
            push_half_units(out, v, form);
        }
        out.push_str(r#","quotes":"#);
        push_int(out, self.quotes);
        out.push('}');
    }
}

/// A released quote with the integral of the book from the symbol's first quote to its time.
#[derive(Clone, Copy, Debug)]
struct Seg {
    quote: Quote,
    at: Integral,
}

/// One symbol's quotes: those held back until final, and the released ones still needed.
#[derive(Debug, Default)]
struct Book {
    pending: Vec<Quote>,
    segs: VecDeque<Seg>,
    /// Released quotes dropped from the front of `segs`.
    dropped: u64,
    /// Per window, the next grid time to look at.
    next: Vec<Option<u64>>,
    /// Per bar size, the bar being filled.
    bars: Vec<Option<MidBarRow>>,
}

impl Book {
    /// Index of the last released quote at or before `x`, if any.
    fn at_or_before(&self, x: u64) -> Option<usize> {
        self.segs
            .partition_point(|s| s.quote.time_ns <= x)
            .checked_sub(1)
    }

    /// Released quotes at or before `x`, ever.
    fn count_to(&self, x: u64) -> u64 {
        self.dropped + self.segs.partition_point(|s| s.quote.time_ns <= x) as u64
    }

    /// The integral up to `x` (0 before the first quote).
    fn integral(&self, x: u64) -> Integral {
        match self.at_or_before(x) {
            Some(i) => {
                let s = &self.segs[i];
                s.at.extended(&s.quote, x - s.quote.time_ns)
            }
            None => self.segs.front().map(|s| s.at).unwrap_or_default(),
        }
    }

    fn release(&mut self, quote: Quote, config: &AnalyticsConfig, bars_out: &mut Vec<MidBarRow>) {
        let at = match self.segs.back() {
            Some(prev) => prev
                .at
                .extended(&prev.quote, quote.time_ns - prev.quote.time_ns),
            None => Integral::default(),
        };
        if self.segs.is_empty() && self.dropped == 0 {
            let first = grid_ceil(quote.time_ns, config.resolution.ns());
            self.next = vec![Some(first); config.windows.len()];
            self.bars = vec![None; config.bars.len()];
        }
        self.segs.push_back(Seg { quote, at });
        let Some(mid2) = quote.mid2_units() else {
            return;
        };
        for (b, span) in config.bars.iter().enumerate() {
            let start = quote.time_ns / span.ns() * span.ns();
            let slot = &mut self.bars[b];
            match slot {
                Some(bar) if bar.start_ns == start => {
                    bar.high2 = bar.high2.max(mid2);
                    bar.low2 = bar.low2.min(mid2);
                    bar.close2 = mid2;
                    bar.quotes += 1;
                }
                _ => {
                    if let Some(done) = slot.take() {
                        bars_out.push(done);
                    }
                    *slot = Some(MidBarRow {
                        symbol: quote.symbol,
                        bar: b as u8,
                        start_ns: start,
                        open2: mid2,
                        high2: mid2,
                        low2: mid2,
                        close2: mid2,
                        quotes: 1,
                    });
                }
            }
        }
    }

    /// Releases the quotes whose grid time is below `limit`, then writes every row and bar
    /// below it.
    fn finalize(
        &mut self,
        limit: u64,
        config: &AnalyticsConfig,
        rows: &mut Vec<QuoteStatsRow>,
        bars: &mut Vec<MidBarRow>,
        mut judge: impl FnMut(&Quote),
    ) {
        let res = config.resolution.ns();
        if !self.pending.is_empty() {
            self.pending
                .sort_unstable_by_key(|q| (q.time_ns, q.seq, *q));
            let ready = self
                .pending
                .partition_point(|q| grid_ceil(q.time_ns, res) < limit);
            let later = self.pending.split_off(ready);
            for q in std::mem::replace(&mut self.pending, later) {
                judge(&q);
                self.release(q, config, bars);
            }
        }
        if self.segs.is_empty() {
            return;
        }
        for (w, span) in config.windows.iter().enumerate() {
            let len = span.ns();
            let Some(mut g) = self.next[w] else { continue };
            while g < limit {
                let from = g.saturating_sub(len);
                let quotes = self.count_to(g) - if g >= len { self.count_to(from) } else { 0 };
                if quotes > 0 {
                    let i = self.at_or_before(g).expect("a quote at or before g");
                    let from_integral = if g >= len {
                        self.integral(from)
                    } else {
                        self.integral(0)
                    };
                    rows.push(QuoteStatsRow {
                        time_ns: g,
                        symbol: self.segs[i].quote.symbol,
                        window: w as u8,
                        sums: self.integral(g).minus(from_integral, quotes),
                        last: self.segs[i].quote,
                    });
                    g += res;
                } else {
                    // The window is empty: on to the grid time of the next quote, if released.
                    let after = self.segs.partition_point(|s| s.quote.time_ns <= g);
                    match self.segs.get(after) {
                        Some(s) => g = grid_ceil(s.quote.time_ns, res),
                        None => break,
                    }
                }
            }
            self.next[w] = Some(g);
        }
        for (b, span) in config.bars.iter().enumerate() {
            if let Some(bar) = self.bars[b]
                && bar.start_ns.saturating_add(span.ns()) < limit
            {
                bars.push(bar);
                self.bars[b] = None;
            }
        }
        // Keep the quote in force at the earliest span still to be asked about, and the rest.
        let longest = config.windows.iter().map(|s| s.ns()).max().unwrap_or(0);
        let earliest = self.next.iter().flatten().min().copied().unwrap_or(0);
        let keep_from = earliest.saturating_sub(longest);
        while self.segs.len() >= 2 && self.segs[1].quote.time_ns <= keep_from {
            self.segs.pop_front();
            self.dropped += 1;
        }
    }
}

/// Applies the changes of `symbol`'s alerts at times `<= upto` (the bars that end before a
/// change are closed without it).
fn apply_due(
    alerts: &mut BTreeMap<Symbol, SpreadBook>,
    symbol: Symbol,
    due: &mut VecDeque<(u64, isize, AlertRule)>,
    upto: u64,
    events: &mut Vec<AlertEvent>,
) {
    while due.front().is_some_and(|c| c.0 <= upto) {
        let Some((at, diff, rule)) = due.pop_front() else {
            break;
        };
        let book = alerts.entry(symbol).or_default();
        book.close_bars(at, events);
        if diff < 0 {
            book.remove(&rule.id);
        } else {
            book.insert(rule);
        }
        if book.is_empty() {
            alerts.remove(&symbol);
        }
    }
}

/// Quote statistics and mid bars, computed incrementally and independently of the arrival
/// order within each input's lateness.
///
/// Push quotes with [`push`](Self::push) (one watermark per input, as for trades), take the
/// final rows with [`advance`](Self::advance) as often as convenient, and the rest with
/// [`finish`](Self::finish). Memory is the quotes not yet final plus, per symbol, those of the
/// longest window.
#[derive(Debug)]
pub struct QuoteEngine {
    config: AnalyticsConfig,
    inputs: Vec<Option<Watermark>>,
    books: BTreeMap<Symbol, Book>,
    /// Every grid time below this is written: a quote there is late, whatever its input says.
    final_below: u64,
    /// The alerts judged on quotes, per symbol.
    alerts: BTreeMap<Symbol, SpreadBook>,
    /// Rule changes not yet applied, `(time, diff, rule)`, sorted.
    changes: Vec<(u64, isize, AlertRule)>,
    /// Alert events not yet taken.
    events: Vec<AlertEvent>,
}

impl QuoteEngine {
    /// An engine for `inputs` inputs with the windows, bars, resolution and lateness of
    /// `config`.
    pub fn new(config: AnalyticsConfig, inputs: usize) -> QuoteEngine {
        let wm = Watermark::new(config.lateness, config.resolution.ns());
        QuoteEngine {
            inputs: vec![Some(wm); inputs.max(1)],
            config,
            books: BTreeMap::new(),
            final_below: 0,
            alerts: BTreeMap::new(),
            changes: Vec::new(),
            events: Vec::new(),
        }
    }

    /// Inserts (`diff > 0`) or retracts (`diff < 0`) an alert rule judged on quotes
    /// ([`Condition::on_quotes`](crate::alerts::Condition::on_quotes); others are ignored),
    /// applying to the quotes of grid times `>= at` (or, when `at` is already final, to those
    /// not yet final). At one time, retractions come before insertions: an update replaces
    /// the rule. Its events come out of [`take_events`](Self::take_events) as the quotes they
    /// fire on become final, with the same semantics as on trades (see [`crate::alerts`]):
    /// the same events for any arrival order within the lateness.
    pub fn change_rule(&mut self, rule: AlertRule, at: u64, diff: isize) {
        if !rule.condition.on_quotes() || diff == 0 {
            return;
        }
        let at = at.max(self.final_below);
        let diff = diff.signum();
        // An insertion and a retraction of the same rule at one time cancel out.
        if let Some(i) = self
            .changes
            .iter()
            .position(|c| c.0 == at && c.1 == -diff && c.2 == rule)
        {
            self.changes.remove(i);
            return;
        }
        let key = |c: &(u64, isize, AlertRule)| (c.0, c.1, c.2.id.clone());
        let change = (at, diff, rule);
        let i = self.changes.partition_point(|c| key(c) <= key(&change));
        self.changes.insert(i, change);
    }

    /// The alert events of the quotes made final so far, in `(time, symbol, seq, alert id)`
    /// order per call of [`advance`](Self::advance) or [`advance_to`](Self::advance_to).
    pub fn take_events(&mut self) -> Vec<AlertEvent> {
        std::mem::take(&mut self.events)
    }

    /// The grid time below which everything is final (and a quote is late).
    pub fn final_below(&self) -> u64 {
        self.final_below
    }

    /// Takes a quote from `input` (an index below the `inputs` of [`new`](Self::new)), or
    /// says why it is late. A quote from an input already [`close`](Self::close)d is late.
    pub fn push(&mut self, input: usize, quote: Quote) -> Result<(), Late> {
        match self.inputs.get_mut(input) {
            Some(Some(wm)) => {
                wm.admit(quote.time_ns)?;
                self.push_admitted(quote)
            }
            _ => Err(Late {
                time_ns: quote.time_ns,
                max_seen_ns: u64::MAX,
                behind_ns: u64::MAX - quote.time_ns,
                lateness_ns: self.config.lateness,
            }),
        }
    }

    /// Takes a quote admitted by the caller's own event-time rule (a live source's watermark,
    /// with [`advance_to`](Self::advance_to)), unless its grid time is already written: then it
    /// is late.
    pub fn push_admitted(&mut self, quote: Quote) -> Result<(), Late> {
        let res = self.config.resolution.ns();
        if grid_ceil(quote.time_ns, res) < self.final_below {
            return Err(Late {
                time_ns: quote.time_ns,
                max_seen_ns: self.final_below,
                behind_ns: self.final_below - quote.time_ns,
                lateness_ns: self.config.lateness,
            });
        }
        self.books
            .entry(quote.symbol)
            .or_default()
            .pending
            .push(quote);
        Ok(())
    }

    /// Marks `input` as ended: it no longer holds event time back.
    pub fn close(&mut self, input: usize) {
        if let Some(slot) = self.inputs.get_mut(input) {
            *slot = None;
        }
    }

    /// The grid time below which every result is final: the least input time of the open
    /// inputs.
    pub fn frontier(&self) -> u64 {
        self.inputs
            .iter()
            .map(|w| w.map_or(u64::MAX, |w| w.input_time()))
            .min()
            .unwrap_or(u64::MAX)
    }

    /// The rows and bars that have become final, rows in `(time, symbol, window)` order and
    /// bars in `(symbol, bar, start)` order.
    pub fn advance(&mut self) -> (Vec<QuoteStatsRow>, Vec<MidBarRow>) {
        self.advance_to(self.frontier())
    }

    /// The rows and bars below `limit` (or below an earlier, greater limit: time only moves
    /// on), as [`advance`](Self::advance) gives them below the inputs' frontier.
    pub fn advance_to(&mut self, limit: u64) -> (Vec<QuoteStatsRow>, Vec<MidBarRow>) {
        let limit = limit.max(self.final_below);
        self.final_below = limit;
        let res = self.config.resolution.ns();
        // The rule changes that are due, per symbol, in order.
        let due = self.changes.partition_point(|c| c.0 < limit);
        let mut due_by_symbol: BTreeMap<Symbol, VecDeque<(u64, isize, AlertRule)>> =
            BTreeMap::new();
        for change in self.changes.drain(..due) {
            due_by_symbol
                .entry(change.2.symbol)
                .or_default()
                .push_back(change);
        }
        let (mut rows, mut bars) = (Vec::new(), Vec::new());
        let first_event = self.events.len();
        for (symbol, book) in &mut self.books {
            let mut due = due_by_symbol.remove(symbol).unwrap_or_default();
            let alerts = &mut self.alerts;
            let events = &mut self.events;
            if due.is_empty() && !alerts.contains_key(symbol) {
                book.finalize(limit, &self.config, &mut rows, &mut bars, |_| {});
                continue;
            }
            book.finalize(limit, &self.config, &mut rows, &mut bars, |q| {
                let g = grid_ceil(q.time_ns, res);
                apply_due(alerts, *symbol, &mut due, g, events);
                if let Some(spread) = alerts.get_mut(symbol) {
                    spread.on_quote(q, events);
                }
            });
            apply_due(alerts, *symbol, &mut due, u64::MAX, events);
            if let Some(spread) = alerts.get_mut(symbol) {
                spread.close_bars(limit, events);
            }
        }
        // Symbols with rules and no quote yet.
        for (symbol, mut due) in due_by_symbol {
            apply_due(
                &mut self.alerts,
                symbol,
                &mut due,
                u64::MAX,
                &mut self.events,
            );
        }
        rows.sort_unstable_by_key(|r| (r.time_ns, r.symbol, r.window));
        bars.sort_unstable();
        self.events[first_event..].sort_unstable_by(|a, b| {
            (a.time_ns, a.symbol, a.seq, &a.alert_id).cmp(&(
                b.time_ns,
                b.symbol,
                b.seq,
                &b.alert_id,
            ))
        });
        (rows, bars)
    }

    /// Closes every input and returns the remaining rows and bars.
    pub fn finish(mut self) -> (Vec<QuoteStatsRow>, Vec<MidBarRow>) {
        for i in 0..self.inputs.len() {
            self.close(i);
        }
        self.advance()
    }
}
