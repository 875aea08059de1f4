//! Ticks: the canonical trade record, and its validated dataflow form.
//!
//! A [`Tick`] is what travels between systems (JSON lines, protobuf, Kafka records), decimals
//! as exact text. [`Tick::validate`] checks it once, at the edge, and gives the [`Trade`] the
//! dataflow carries (a fixed-size `Copy` record), or a [`Rejection`] that says what is wrong.

use serde::{Deserialize, Serialize};

use crate::decimal::Fixed;
use crate::symbol::Symbol;

/// The aggressor of a trade.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// The buyer took liquidity (lifted an offer).
    Buy,
    /// The seller took liquidity (hit a bid).
    Sell,
}

/// A trade as it travels between systems: the canonical JSON form (one object per line) and the
/// `gostocks.v1.Tick` protobuf message carry exactly these fields.
///
/// ```
/// use gostocks_core::Tick;
/// let line = r#"{"symbol":"AAPL","price":"585.33","size":"100","time_ns":1340285400000000000,"seq":7,"source":"lobster"}"#;
/// let tick: Tick = serde_json::from_str(line).unwrap();
/// assert_eq!(tick.price.to_string(), "585.33");
/// assert_eq!(serde_json::to_string(&tick).unwrap(), line);
/// ```
///
/// The struct may gain fields: make one with [`Tick::new`] and the `with_` methods.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Tick {
    /// Instrument symbol, e.g. `AAPL` or `BTCUSDT`.
    pub symbol: String,
    /// Trade price, an exact decimal.
    pub price: Fixed,
    /// Trade size (shares, coins), an exact decimal.
    pub size: Fixed,
    /// Event time in nanoseconds since the Unix epoch (UTC).
    pub time_ns: i64,
    /// Sequence number within its source; orders ticks with equal `time_ns`.
    pub seq: u64,
    /// Where the tick came from (`lobster`, `binance`, `finnhub`, `simulate`, ...).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source: String,
    /// The aggressor side, where the venue reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub side: Option<Side>,
    /// The venue's trade id, where it gives one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trade_id: Option<u64>,
    /// Venue trade-condition codes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<String>,
}

/// A validated trade as the dataflow carries it: `Copy`, 56 bytes, no allocation. Make one
/// with [`Tick::validate`] or, when its parts are known to be valid, [`Trade::new`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Trade {
    /// Instrument symbol.
    pub symbol: Symbol,
    /// Event time, ns since the Unix epoch.
    pub time_ns: u64,
    /// Sequence number within its source.
    pub seq: u64,
    /// Price (> 0).
    pub price: Fixed,
    /// Size (> 0).
    pub size: Fixed,
}

/// Why a tick was rejected into the error output.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Rejection {
    /// The symbol is empty, too long or has whitespace.
    #[error("bad symbol: {0}")]
    Symbol(String),
    /// The price is zero or negative.
    #[error("price must be > 0, got {0}")]
    Price(String),
    /// The size is zero or negative.
    #[error("size must be > 0, got {0}")]
    Size(String),
    /// The event time is before the Unix epoch.
    #[error("time_ns must be >= 0, got {0}")]
    Time(i64),
    /// The record could not be decoded at all (bad JSON, bad number, missing field).
    #[error("undecodable record: {0}")]
    Decode(String),
}

impl Tick {
    /// A tick with the required fields; no source, side, trade id or conditions (add them with
    /// the `with_` methods). Nothing is checked until [`Tick::validate`].
    ///
    /// ```
    /// use gostocks_core::{Side, Tick};
    /// let tick = Tick::new("AAPL", "585.33".parse().unwrap(), "100".parse().unwrap(), 1_000, 7)
    ///     .with_source("lobster")
    ///     .with_side(Some(Side::Buy));
    /// assert_eq!(
    ///     serde_json::to_string(&tick).unwrap(),
    ///     r#"{"symbol":"AAPL","price":"585.33","size":"100","time_ns":1000,"seq":7,"source":"lobster","side":"buy"}"#
    /// );
    /// ```
    pub fn new(
        symbol: impl Into<String>,
        price: Fixed,
        size: Fixed,
        time_ns: i64,
        seq: u64,
    ) -> Tick {
        Tick {
            symbol: symbol.into(),
            price,
            size,
            time_ns,
            seq,
            source: String::new(),
            side: None,
            trade_id: None,
            conditions: Vec::new(),
        }
    }

    /// This tick with its source set.
    pub fn with_source(mut self, source: impl Into<String>) -> Tick {
        self.source = source.into();
        self
    }

    /// This tick with its aggressor side set.
    pub fn with_side(mut self, side: Option<Side>) -> Tick {
        self.side = side;
        self
    }

    /// This tick with the venue's trade id set.
    pub fn with_trade_id(mut self, trade_id: Option<u64>) -> Tick {
        self.trade_id = trade_id;
        self
    }

    /// This tick with its venue condition codes set.
    pub fn with_conditions(mut self, conditions: Vec<String>) -> Tick {
        self.conditions = conditions;
        self
    }

    /// Checks the contract (non-empty symbol, price > 0, size > 0, time >= 0) and returns the
    /// dataflow form.
    pub fn validate(&self) -> Result<Trade, Rejection> {
        let symbol = Symbol::new(&self.symbol).map_err(|e| Rejection::Symbol(e.to_string()))?;
        if !self.price.is_positive() {
            return Err(Rejection::Price(self.price.to_string()));
        }
        if !self.size.is_positive() {
            return Err(Rejection::Size(self.size.to_string()));
        }
        let time_ns = u64::try_from(self.time_ns).map_err(|_| Rejection::Time(self.time_ns))?;
        Ok(Trade {
            symbol,
            time_ns,
            seq: self.seq,
            price: self.price,
            size: self.size,
        })
    }
}

impl Trade {
    /// A trade from parts already known to be valid (price and size > 0); untrusted input goes
    /// through [`Tick::validate`] instead.
    ///
    /// ```
    /// use gostocks_core::{Symbol, Trade};
    /// let p = |s: &str| s.parse().unwrap();
    /// let trade = Trade::new(Symbol::new("AAPL").unwrap(), 1_000, 0, p("585.33"), p("100"));
    /// assert_eq!(trade.to_tick("docs").price.to_string(), "585.33");
    /// ```
    pub fn new(symbol: Symbol, time_ns: u64, seq: u64, price: Fixed, size: Fixed) -> Trade {
        Trade {
            symbol,
            time_ns,
            seq,
            price,
            size,
        }
    }

    /// The canonical form of this trade, with `source` set.
    pub fn to_tick(&self, source: &str) -> Tick {
        Tick {
            symbol: self.symbol.to_string(),
            price: self.price,
            size: self.size,
            time_ns: self.time_ns as i64,
            seq: self.seq,
            source: source.to_owned(),
            side: None,
            trade_id: None,
            conditions: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tick(symbol: &str, price: &str, size: &str) -> Tick {
        Tick {
            symbol: symbol.into(),
            price: price.parse().unwrap(),
            size: size.parse().unwrap(),
            time_ns: 1,
            seq: 0,
            source: String::new(),
            side: Some(Side::Buy),
            trade_id: Some(9),
            conditions: vec!["@".into()],
        }
    }

    #[test]
    fn validation_names_the_field() {
        assert!(tick("AAPL", "1", "1").validate().is_ok());
        assert_eq!(
            tick("", "1", "1").validate(),
            Err(Rejection::Symbol("must not be empty".into()))
        );
        assert_eq!(
            tick("A", "0", "1").validate(),
            Err(Rejection::Price("0".into()))
        );
        assert_eq!(
            tick("A", "1", "-2").validate(),
            Err(Rejection::Size("-2".into()))
        );
    }

    #[test]
    fn optional_fields_round_trip_through_json() {
        let t = tick("BTCUSDT", "29000.12", "0.001");
        let line = serde_json::to_string(&t).unwrap();
        assert_eq!(serde_json::from_str::<Tick>(&line).unwrap(), t);
        assert!(line.contains(r#""side":"buy""#));
    }
}
