//! The analytics contract: configuration, and the rows the dataflow emits (window stats, bars,
//! late ticks) with their one-JSON-object-per-line form.
//!
//! [`AnalyticsConfig`] says what to compute: sliding windows, the result grid, tumbling bars
//! and the EMA span. The stats changelog is one [`StatsRow`] per `(symbol, window)` at each grid
//! time where the window's content changed (its sums, extremes and last price, or `None` once
//! it emptied); bars are final [`BarRow`]s with their EMA. Exact values (volume, prices) are
//! [`Fixed`]; derived ones (SMA, VWAP, standard deviation, volatility) are computed from the
//! exact sums only when read. `write_json` gives each row's JSON line, decimals exact.

use serde::{Deserialize, Serialize};

use crate::decimal::Fixed;
use crate::indicators::Agg;
use crate::span::Span;
use crate::symbol::Symbol;

/// What to compute. Start from [`AnalyticsConfig::default`] and change what differs with the
/// `with_` methods; [`AnalyticsConfig::validate`] says what cannot be computed.
///
/// ```
/// use gostocks_core::stats::AnalyticsConfig;
/// use gostocks_core::Span;
/// let config = AnalyticsConfig::default()
///     .with_windows(vec!["10s".parse::<Span>().unwrap()])
///     .with_ema_span(5);
/// assert_eq!(config.validate(), Ok(()));
/// let bad = config.with_resolution("3s".parse().unwrap());
/// assert!(bad.validate().unwrap_err().to_string().contains("not a multiple of the resolution"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
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
    /// This config with these sliding windows.
    pub fn with_windows(mut self, windows: Vec<Span>) -> AnalyticsConfig {
        self.windows = windows;
        self
    }

    /// This config on this result grid.
    pub fn with_resolution(mut self, resolution: Span) -> AnalyticsConfig {
        self.resolution = resolution;
        self
    }

    /// This config with these tumbling bar sizes.
    pub fn with_bars(mut self, bars: Vec<Span>) -> AnalyticsConfig {
        self.bars = bars;
        self
    }

    /// This config with this EMA span over bar closes.
    pub fn with_ema_span(mut self, ema_span: u32) -> AnalyticsConfig {
        self.ema_span = ema_span;
        self
    }

    /// This config allowing this lateness per input, ns.
    pub fn with_lateness(mut self, lateness: u64) -> AnalyticsConfig {
        self.lateness = lateness;
        self
    }

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
#[non_exhaustive]
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
#[non_exhaustive]
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
#[non_exhaustive]
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
#[non_exhaustive]
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

impl WindowCore {
    /// A window's content from its sums and extremes.
    pub fn new(agg: Agg, min: Fixed, max: Fixed) -> WindowCore {
        WindowCore { agg, min, max }
    }
}

impl StatsRow {
    /// The row of `(symbol, window)` at grid time `time_ns`.
    pub fn new(
        time_ns: u64,
        symbol: Symbol,
        window: u8,
        core: Option<WindowCore>,
        last: Option<Fixed>,
    ) -> StatsRow {
        StatsRow {
            time_ns,
            symbol,
            window,
            core,
            last,
        }
    }
}

impl BarCore {
    /// A bar's prices and sums.
    pub fn new(open: Fixed, high: Fixed, low: Fixed, close: Fixed, agg: Agg) -> BarCore {
        BarCore {
            open,
            high,
            low,
            close,
            agg,
        }
    }
}

impl BarRow {
    /// The bar of `symbol` of size index `bar` starting at `start_ns`, with its EMA.
    pub fn new(symbol: Symbol, bar: u8, start_ns: u64, core: BarCore, ema: f64) -> BarRow {
        BarRow {
            symbol,
            bar,
            start_ns,
            core,
            ema,
        }
    }
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

/// Appends `x` in plain decimal notation (never an exponent) with the fewest digits that
/// round-trip, by way of ryu, which is about twice as fast as the formatting machinery. It is
/// the text `Display` writes, except that an exact tie between two shortest forms rounds to even
/// (`Display` rounds it up): both read back as the same `f64`.
pub(crate) fn push_f64(out: &mut String, x: f64) {
    let mut buf = ryu::Buffer::new();
    let text = buf.format_finite(x);
    let text = match text.strip_prefix('-') {
        Some(rest) => {
            out.push('-');
            rest
        }
        None => text,
    };
    let Some((mantissa, exp)) = text.split_once('e') else {
        out.push_str(text.strip_suffix(".0").unwrap_or(text));
        return;
    };
    // `d.ddde±x`: the digits, with the decimal point `x` places after the first one.
    let exp: i64 = exp.parse().unwrap_or(0);
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = int.len() + frac.len();
    let point = int.len() as i64 + exp;
    if point <= 0 {
        out.push_str("0.");
        (0..-point).for_each(|_| out.push('0'));
        out.push_str(int);
        out.push_str(frac);
    } else if point as usize >= digits {
        out.push_str(int);
        out.push_str(frac);
        (digits..point as usize).for_each(|_| out.push('0'));
    } else {
        let mut all = String::with_capacity(digits);
        all.push_str(int);
        all.push_str(frac);
        out.push_str(&all[..point as usize]);
        out.push('.');
        out.push_str(&all[point as usize..]);
    }
}

pub(crate) fn opt_f64(out: &mut String, v: Option<f64>) {
    match v {
        Some(x) if x.is_finite() => push_f64(out, x),
        _ => out.push_str("null"),
    }
}

/// How a JSON row writes its decimals.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum JsonDecimals {
    /// As JSON numbers holding the exact decimal text (`585.33`): the output files' and topics'
    /// form.
    #[default]
    Numbers,
    /// As JSON strings (`"585.33"`), as in the canonical tick form: what the REST API answers,
    /// so that a client whose JSON numbers are doubles keeps every digit.
    Strings,
}

pub(crate) fn push_fixed(out: &mut String, v: Fixed, form: JsonDecimals) {
    match form {
        JsonDecimals::Numbers => v.push_to(out),
        JsonDecimals::Strings => {
            out.push('"');
            v.push_to(out);
            out.push('"');
        }
    }
}

pub(crate) fn opt_fixed(out: &mut String, v: Option<Fixed>, form: JsonDecimals) {
    match v {
        Some(x) => push_fixed(out, x, form),
        None => out.push_str("null"),
    }
}

/// Appends `s` as a JSON string (symbols may hold quotes and backslashes; never controls).
fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    if s.contains(['"', '\\']) {
        for c in s.chars() {
            if c == '"' || c == '\\' {
                out.push('\\');
            }
            out.push(c);
        }
    } else {
        out.push_str(s);
    }
    out.push('"');
}

/// Opens a row: `{"symbol":…,"<label field>":…,"<time field>":…` (fields follow, then `}`).
pub(crate) fn open_row(out: &mut String, symbol: &Symbol, label: (&str, &str), time: (&str, u64)) {
    out.push_str(r#"{"symbol":"#);
    push_json_str(out, symbol.as_str());
    out.push_str(",\"");
    out.push_str(label.0);
    out.push_str("\":");
    push_json_str(out, label.1);
    out.push_str(",\"");
    out.push_str(time.0);
    out.push_str("\":");
    push_int(out, time.1);
}

pub(crate) fn push_int(out: &mut String, v: impl itoa::Integer) {
    out.push_str(itoa::Buffer::new().format(v));
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
    /// let core = WindowCore::new(agg, p("10"), p("10"));
    /// let row = StatsRow::new(1_000, Symbol::new("X").unwrap(), 0, Some(core), Some(p("10")));
    /// let mut line = String::new();
    /// row.write_json(&mut line, "60s");
    /// assert_eq!(line, r#"{"symbol":"X","window":"60s","time_ns":1000,"count":1,"volume":2,"last":10,"min":10,"max":10,"sma":10,"vwap":10,"stddev":null,"volatility":null}"#);
    /// ```
    pub fn write_json(&self, out: &mut String, window_label: &str) {
        self.write_json_as(out, window_label, JsonDecimals::Numbers);
    }

    /// [`write_json`](Self::write_json) with the decimals (volume, last, min, max) in the form
    /// asked for.
    ///
    /// ```
    /// use gostocks_core::stats::{JsonDecimals, StatsRow, WindowCore};
    /// use gostocks_core::indicators::Agg;
    /// use gostocks_core::{Fixed, Symbol};
    /// let p = |s: &str| s.parse::<Fixed>().unwrap();
    /// let top = p("99999999.99999999");
    /// let agg = Agg::tick(top, p("2"), 5, None);
    /// let core = WindowCore::new(agg, top, top);
    /// let row = StatsRow::new(1_000, Symbol::new("X").unwrap(), 0, Some(core), None);
    /// let mut line = String::new();
    /// row.write_json_as(&mut line, "60s", JsonDecimals::Strings);
    /// assert!(line.contains(r#""min":"99999999.99999999""#), "{line}");
    /// ```
    pub fn write_json_as(&self, out: &mut String, window_label: &str, form: JsonDecimals) {
        open_row(
            out,
            &self.symbol,
            ("window", window_label),
            ("time_ns", self.time_ns),
        );
        match &self.core {
            Some(c) => {
                out.push_str(r#","count":"#);
                push_int(out, c.agg.count);
                out.push_str(r#","volume":"#);
                push_fixed(out, c.agg.volume_fixed(), form);
                out.push_str(r#","last":"#);
                opt_fixed(out, self.last, form);
                out.push_str(r#","min":"#);
                push_fixed(out, c.min, form);
                out.push_str(r#","max":"#);
                push_fixed(out, c.max, form);
                out.push_str(r#","sma":"#);
                opt_f64(out, c.agg.sma());
                out.push_str(r#","vwap":"#);
                opt_f64(out, c.agg.vwap());
                out.push_str(r#","stddev":"#);
                opt_f64(out, c.agg.stddev());
                out.push_str(r#","volatility":"#);
                opt_f64(out, c.agg.volatility());
                out.push('}');
            }
            None => {
                out.push_str(r#","count":0,"volume":"#);
                push_fixed(out, Fixed::ZERO, form);
                out.push_str(
                    r#","last":null,"min":null,"max":null,"sma":null,"vwap":null,"stddev":null,"volatility":null}"#,
                );
            }
        }
    }
}

impl BarRow {
    /// Appends the JSON line (without newline).
    pub fn write_json(&self, out: &mut String, bar_label: &str) {
        self.write_json_as(out, bar_label, JsonDecimals::Numbers);
    }

    /// [`write_json`](Self::write_json) with the decimals (open, high, low, close, volume) in
    /// the form asked for.
    pub fn write_json_as(&self, out: &mut String, bar_label: &str, form: JsonDecimals) {
        let c = &self.core;
        open_row(
            out,
            &self.symbol,
            ("bar", bar_label),
            ("start_ns", self.start_ns),
        );
        for (name, v) in [
            ("open", c.open),
            ("high", c.high),
            ("low", c.low),
            ("close", c.close),
        ] {
            out.push_str(",\"");
            out.push_str(name);
            out.push_str("\":");
            push_fixed(out, v, form);
        }
        out.push_str(r#","volume":"#);
        push_fixed(out, c.agg.volume_fixed(), form);
        out.push_str(r#","count":"#);
        push_int(out, c.agg.count);
        out.push_str(r#","vwap":"#);
        opt_f64(out, c.agg.vwap());
        out.push_str(r#","ema":"#);
        opt_f64(out, Some(self.ema));
        out.push('}');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn floats_are_written_shortest_plain_and_read_back_exactly() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let mut values = vec![
            0.0, -0.0, 1.0, 100.0, 0.1, 1e-7, 1.5e-12, 1e15, 1e16, 1e21, 1e300,
        ];
        values.extend((0..300).map(|e| 10f64.powi(e - 150)));
        // Any bit pattern, and the magnitudes the stats produce.
        values.extend((0..200_000).map(|_| f64::from_bits(rng.random())));
        values.extend((0..200_000).map(|_| rng.random_range(-1e6..1e6)));
        values.extend((0..100_000).map(|_| rng.random_range(0.0..1e-3)));
        let mut out = String::new();
        for x in values.into_iter().filter(|x| x.is_finite()) {
            out.clear();
            push_f64(&mut out, x);
            assert_eq!(out.parse::<f64>().unwrap().to_bits(), x.to_bits(), "{out}");
            assert!(!out.contains(['e', 'E']), "{out}");
            // As short as Display's form (which differs only on ties between two shortest).
            let digits = |s: &str| {
                s.trim_start_matches(['-', '0', '.'])
                    .replace('.', "")
                    .trim_end_matches('0')
                    .len()
            };
            let display = format!("{x}");
            assert_eq!(digits(&out), digits(&display), "{out} vs {display}");
        }
    }

    #[test]
    fn a_symbol_with_quotes_still_gives_valid_json() {
        let p = |s: &str| s.parse::<Fixed>().unwrap();
        let row = StatsRow {
            time_ns: 1,
            symbol: Symbol::new(r#"A"B\C"#).unwrap(),
            window: 0,
            core: Some(WindowCore {
                agg: Agg::tick(p("1.5"), p("2"), 1, None),
                min: p("1.5"),
                max: p("1.5"),
            }),
            last: Some(p("1.5")),
        };
        let mut line = String::new();
        row.write_json(&mut line, "60s");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["symbol"], r#"A"B\C"#);
        assert_eq!(v["vwap"], 1.5);
    }
}
