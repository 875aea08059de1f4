use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::decimal::Fixed;
use crate::symbol::Symbol;

/// What an alert watches, evaluated tick by tick in `(t, seq)` order per symbol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    /// price > threshold.
    PriceAbove,
    /// price < threshold.
    PriceBelow,
    /// previous price <= threshold and price > threshold.
    CrossesAbove,
    /// previous price >= threshold and price < threshold.
    CrossesBelow,
    /// previous price <= the window's sma at the previous tick, and price > the sma now.
    SmaCrossAbove,
    /// previous price >= the window's sma at the previous tick, and price < the sma now.
    SmaCrossBelow,
    /// the window's volatility > threshold.
    VolatilityAbove,
}

impl Condition {
    /// Every condition, in declaration order.
    pub const ALL: [Condition; 7] = [
        Condition::PriceAbove,
        Condition::PriceBelow,
        Condition::CrossesAbove,
        Condition::CrossesBelow,
        Condition::SmaCrossAbove,
        Condition::SmaCrossBelow,
        Condition::VolatilityAbove,
    ];

    /// The name used in JSON, SQL and the REST API.
    pub fn as_str(self) -> &'static str {
        match self {
            Condition::PriceAbove => "price_above",
            Condition::PriceBelow => "price_below",
            Condition::CrossesAbove => "crosses_above",
            Condition::CrossesBelow => "crosses_below",
            Condition::SmaCrossAbove => "sma_cross_above",
            Condition::SmaCrossBelow => "sma_cross_below",
            Condition::VolatilityAbove => "volatility_above",
        }
    }

    /// Whether the condition reads a window's stats (and so needs `window`).
    pub fn needs_window(self) -> bool {
        matches!(
            self,
            Condition::SmaCrossAbove | Condition::SmaCrossBelow | Condition::VolatilityAbove
        )
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Condition {
    type Err = RuleError;
    fn from_str(s: &str) -> Result<Condition, RuleError> {
        Condition::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| RuleError::Condition(crate::symbol::excerpt(s)))
    }
}

/// How often an alert may fire.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Fires at most once; the alert is then `triggered`.
    #[default]
    Once,
    /// Fires, then disarms until the condition has been false by the hysteresis and the
    /// cooldown has passed.
    Rearm,
}

impl Mode {
    /// The name used in JSON, SQL and the REST API.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Once => "once",
            Mode::Rearm => "rearm",
        }
    }
}

impl FromStr for Mode {
    type Err = RuleError;
    fn from_str(s: &str) -> Result<Mode, RuleError> {
        match s {
            "once" => Ok(Mode::Once),
            "rearm" => Ok(Mode::Rearm),
            other => Err(RuleError::Mode(crate::symbol::excerpt(other))),
        }
    }
}

/// An alert rule as the dataflow matches it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AlertRule {
    /// The alert's id (unique across users).
    pub id: String,
    /// The symbol it watches.
    pub symbol: Symbol,
    /// What it watches.
    pub condition: Condition,
    /// The level (unused by the sma crosses, which compare price with the sma).
    pub threshold: Fixed,
    /// Once or rearming.
    pub mode: Mode,
    /// How far the condition must have been false before a rearming alert may fire again.
    pub hysteresis: Fixed,
    /// Event time that must pass after a firing before a rearming alert may fire again.
    pub cooldown_ns: u64,
    /// For sma crosses and volatility: the index of the window in the analytics config.
    pub window: Option<u8>,
    /// The alert applies to ticks with `t >= created_ns`.
    pub created_ns: u64,
}

impl AlertRule {
    /// Checks what a user can get wrong; the message names the field and the fix.
    pub fn validate(&self) -> Result<(), RuleError> {
        if !self.threshold.is_positive() {
            return Err(RuleError::Threshold(self.threshold));
        }
        if self.hysteresis.units() < 0 {
            return Err(RuleError::Hysteresis(self.hysteresis));
        }
        match (self.condition.needs_window(), self.window.is_some()) {
            (true, false) => Err(RuleError::WindowMissing(self.condition)),
            (false, true) => Err(RuleError::WindowUnused(self.condition)),
            _ => Ok(()),
        }
    }
}

/// Why an alert rule is not acceptable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RuleError {
    /// An unknown condition name (a short excerpt of it).
    #[error(
        "condition: {0} is not a condition; use price_above, price_below, crosses_above, crosses_below, sma_cross_above, sma_cross_below or volatility_above"
    )]
    Condition(String),
    /// An unknown mode name (a short excerpt of it).
    #[error("mode: {0} is not a mode; use once or rearm")]
    Mode(String),
    /// The threshold is zero or negative.
    #[error("threshold: {0} is not positive; give a finite number above 0")]
    Threshold(Fixed),
    /// The hysteresis is negative.
    #[error("hysteresis: {0} is negative; give 0 or more")]
    Hysteresis(Fixed),
    /// A windowed condition without a window.
    #[error("window: {0} reads a window's stats; give one of the configured windows, e.g. \"60s\"")]
    WindowMissing(Condition),
    /// A window on a condition that does not read one.
    #[error("window: {0} does not read a window; leave window out")]
    WindowUnused(Condition),
    /// A symbol that is not acceptable (why, quoting a short excerpt of it).
    #[error("symbol: {0}")]
    Symbol(String),
    /// A cooldown that is not a duration.
    #[error("cooldown: {0}")]
    Cooldown(String),
    /// A window that the analytics do not compute (a short excerpt of it, then the windows).
    #[error("window: {0} is not a configured window (configured: {1})")]
    WindowUnknown(String, String),
}

/// One firing of an alert: its identity is `(alert_id, time_ns, seq)`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AlertEvent {
    /// The alert that fired.
    pub alert_id: String,
    /// Its symbol.
    pub symbol: Symbol,
    /// The firing tick's event time.
    pub time_ns: u64,
    /// The firing tick's sequence number.
    pub seq: u64,
    /// The firing tick's price.
    pub price: Fixed,
    /// The condition's value at that tick: the price, the sma, or the volatility.
    pub value: f64,
}

impl AlertEvent {
    fn key(&self) -> (u64, Symbol, u64, &str) {
        (self.time_ns, self.symbol, self.seq, &self.alert_id)
    }

    /// The JSON line of `analyze --events-out`.
    ///
    /// ```
    /// use gostocks_core::alerts::AlertEvent;
    /// let e = AlertEvent { alert_id: "a1".into(), symbol: gostocks_core::Symbol::new("X").unwrap(),
    ///     time_ns: 5, seq: 2, price: "10.5".parse().unwrap(), value: 10.5 };
    /// assert_eq!(e.to_json(), r#"{"alert_id":"a1","symbol":"X","time_ns":5,"seq":2,"price":10.5,"value":10.5}"#);
    /// ```
    pub fn to_json(&self) -> String {
        format!(
            r#"{{"alert_id":{},"symbol":"{}","time_ns":{},"seq":{},"price":{},"value":{}}}"#,
            serde_json::Value::from(self.alert_id.as_str()),
            self.symbol,
            self.time_ns,
            self.seq,
            self.price,
            if self.value.is_finite() {
                self.value.to_string()
            } else {
                "null".into()
            }
        )
    }
}

impl PartialEq for AlertEvent {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == std::cmp::Ordering::Equal
    }
}

impl Eq for AlertEvent {}

impl PartialOrd for AlertEvent {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for AlertEvent {
    /// Tick order, then alert id; the value breaks no real tie but keeps `Ord` total.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key()
            .cmp(&other.key())
            .then(self.price.cmp(&other.price))
            .then(self.value.total_cmp(&other.value))
    }
}
