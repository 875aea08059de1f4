//! The analytics contract: configuration, and the rows the dataflow emits (window stats, bars,
//! late ticks) with their one-JSON-object-per-line form.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::decimal::Fixed;
use crate::indicators::Agg;
use crate::span::Span;
use crate::symbol::Symbol;

/// What to compute.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnalyticsConfig {
    /// Sliding windows (default 60s and 300s).
    pub windows: Vec<Span>,
    /// The result grid (default 1s); divides every window and bar.
    pub resolution: Span,
    /// Tumbling bar sizes (default 1s and 1m).
    pub bars: Vec<Span>,
    /// EMA span over bar closes (default 20).
    pub ema_span: u32,
    /// Allowed lateness per input (default 0).
    pub lateness: u64,
}

impl Default for AnalyticsConfig {
    fn default() -> Self {
        let span = |ns, label: &str| Span::new(ns, label);
        AnalyticsConfig {
            windows: vec![span(60_000_000_000, "60s"), span(300_000_000_000, "300s")],
            resolution: span(1_000_000_000, "1s"),
            bars: vec![span(1_000_000_000, "1s"), span(60_000_000_000, "1m")],
            ema_span: 20,
            lateness: 0,
        }
    }
}

/// A configuration that cannot be computed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A window or bar is not a whole number of resolutions.
    #[error(
        "{what} {span} is not a multiple of the resolution {resolution}: pick a resolution that divides every window and bar"
    )]
    NotOnGrid {
        /// `window` or `bar`.
        what: &'static str,
        /// The offending span.
        span: String,
        /// The resolution.
        resolution: String,
    },
    /// Too many windows or bars (each is indexed by a byte).
    #[error("at most 255 windows and 255 bars")]
    TooMany,
    /// The EMA span is zero.
    #[error("--ema-span must be at least 1")]
    EmaSpan,
}

impl AnalyticsConfig {
    /// Checks that the grid divides every window and bar.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let res = self.resolution.ns();
        for (what, spans) in [("window", &self.windows), ("bar", &self.bars)] {
            if spans.len() > 255 {
                return Err(ConfigError::TooMany);
            }
            if let Some(s) = spans.iter().find(|s| !s.ns().is_multiple_of(res)) {
                return Err(ConfigError::NotOnGrid {
                    what,
                    span: s.to_string(),
                    resolution: self.resolution.to_string(),
                });
            }
        }
        if self.ema_span == 0 {
            return Err(ConfigError::EmaSpan);
        }
        Ok(())
    }
}

/// The content of one window at one grid time: exact sums plus the extremes.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct WindowCore {
    /// Exact sums over the ticks in the window.
    pub agg: Agg,
    /// Least price.
    pub min: Fixed,
    /// Greatest price.
    pub max: Fixed,
}

/// One line of the stats changelog: `(symbol, window)` at grid time `time_ns`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct StatsRow {
    /// Grid time.
    pub time_ns: u64,
    /// Symbol.
    pub symbol: Symbol,
    /// Index into [`AnalyticsConfig::windows`].
    pub window: u8,
    /// The window's content; `None` when it has just emptied.
    pub core: Option<WindowCore>,
    /// Price of the greatest `(t, seq)` in the window.
    pub last: Option<Fixed>,
}

/// One final tumbling bar.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct BarCore {
    /// Price of the least `(t, seq)`.
    pub open: Fixed,
    /// Greatest price.
    pub high: Fixed,
    /// Least price.
    pub low: Fixed,
    /// Price of the greatest `(t, seq)`.
    pub close: Fixed,
    /// Exact sums over the bar's ticks.
    pub agg: Agg,
}

/// A final bar with its EMA. Ordered by `(symbol, bar, start_ns)`: within one end time, the
/// order of the bars output.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct BarRow {
    /// Symbol.
    pub symbol: Symbol,
    /// Index into [`AnalyticsConfig::bars`].
    pub bar: u8,
    /// Bar start, ns since the epoch (a multiple of the bar size).
    pub start_ns: u64,
    /// Open, high, low, close and sums.
    pub core: BarCore,
    /// EMA of closes up to and including this bar.
    pub ema: f64,
}

// The EMA is a function of the bar's history, never NaN (closes are finite), so the derived
// equality is an equivalence and the order below is total.
impl Eq for BarRow {}

impl Ord for BarRow {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.symbol, self.bar, self.start_ns, self.core)
            .cmp(&(other.symbol, other.bar, other.start_ns, other.core))
            .then(self.ema.total_cmp(&other.ema))
    }
}

impl PartialOrd for BarRow {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

fn opt_f64(out: &mut String, v: Option<f64>) {
    match v {
        Some(x) if x.is_finite() => {
            let _ = write!(out, "{x}");
        }
        _ => out.push_str("null"),
    }
}

fn opt_fixed(out: &mut String, v: Option<Fixed>) {
    match v {
        Some(x) => {
            let _ = write!(out, "{x}");
        }
        None => out.push_str("null"),
    }
}

impl StatsRow {
    /// Appends the JSON line (without newline): decimals exact, derived values as shortest
    /// round-trip floats, `null` where undefined.
    ///
    /// ```
    /// use gostocks_core::stats::{StatsRow, WindowCore};
    /// use gostocks_core::indicators::Agg;
    /// use gostocks_core::{Fixed, Symbol};
    /// let p = |s: &str| s.parse::<Fixed>().unwrap();
    /// let agg = Agg::tick(p("10"), p("2"), 5, None);
    /// let row = StatsRow { time_ns: 1_000, symbol: Symbol::new("X").unwrap(), window: 0,
    ///     core: Some(WindowCore { agg, min: p("10"), max: p("10") }), last: Some(p("10")) };
    /// let mut line = String::new();
    /// row.write_json(&mut line, "60s");
    /// assert_eq!(line, r#"{"symbol":"X","window":"60s","time_ns":1000,"count":1,"volume":2,"last":10,"min":10,"max":10,"sma":10,"vwap":10,"stddev":null,"volatility":null}"#);
    /// ```
    pub fn write_json(&self, out: &mut String, window_label: &str) {
        let _ = write!(
            out,
            r#"{{"symbol":"{}","window":"{}","time_ns":{},"#,
            self.symbol, window_label, self.time_ns
        );
        match &self.core {
            Some(c) => {
                let _ = write!(out, r#""count":{},"volume":{},"last":"#, c.agg.count, c.agg.volume_fixed());
                opt_fixed(out, self.last);
                let _ = write!(out, r#","min":{},"max":{},"sma":"#, c.min, c.max);
                opt_f64(out, c.agg.sma());
                out.push_str(r#","vwap":"#);
                opt_f64(out, c.agg.vwap());
                out.push_str(r#","stddev":"#);
                opt_f64(out, c.agg.stddev());
                out.push_str(r#","volatility":"#);
                opt_f64(out, c.agg.volatility());
                out.push('}');
            }
            None => out.push_str(
                r#""count":0,"volume":0,"last":null,"min":null,"max":null,"sma":null,"vwap":null,"stddev":null,"volatility":null}"#,
            ),
        }
    }
}

impl BarRow {
    /// Appends the JSON line (without newline).
    pub fn write_json(&self, out: &mut String, bar_label: &str) {
        let c = &self.core;
        let _ = write!(
            out,
            r#"{{"symbol":"{}","bar":"{}","start_ns":{},"open":{},"high":{},"low":{},"close":{},"volume":{},"count":{},"vwap":"#,
            self.symbol,
            bar_label,
            self.start_ns,
            c.open,
            c.high,
            c.low,
            c.close,
            c.agg.volume_fixed(),
            c.agg.count
        );
        opt_f64(out, c.agg.vwap());
        out.push_str(r#","ema":"#);
        opt_f64(out, Some(self.ema));
        out.push('}');
    }
}
