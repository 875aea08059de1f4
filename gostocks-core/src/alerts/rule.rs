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
    /// The price has risen by more than threshold % over the window: `(price - first) / first
    /// × 100 > threshold`, `first` the price of the window's earliest tick.
    ChangePctAbove,
    /// The price has fallen by more than threshold % over the window: `(price - first) / first
    /// × 100 < -threshold`.
    ChangePctBelow,
    /// The window's volume (the sum of its ticks' sizes) > threshold.
    VolumeAbove,
    /// previous price <= the window's vwap at the previous tick, and price > the vwap now.
    VwapCrossAbove,
    /// previous price >= the window's vwap at the previous tick, and price < the vwap now.
    VwapCrossBelow,
    /// The price came into the channel `[threshold, upper]`: the previous price was outside it
    /// (below `threshold` or above `upper`) and the price is inside it.
    EntersChannel,
    /// The price left the channel `[threshold, upper]`: the previous price was inside it and the
    /// price is outside it.
    ExitsChannel,
    /// threshold <= price <= upper.
    Inside,
    /// price < threshold or price > upper.
    Outside,
    /// The quoted spread, in basis points of the mid, is above threshold: `10⁴ × (ask - bid) /
    /// ((ask + bid) / 2) > threshold`, compared exactly. Judged quote by quote on a two-sided
    /// book (see [`crate::quotes`]), never on trades; a one-sided quote neither fires nor
    /// resets.
    SpreadAbove,
}

impl Condition {
    /// Every condition, in declaration order.
    pub const ALL: [Condition; 17] = [
        Condition::PriceAbove,
        Condition::PriceBelow,
        Condition::CrossesAbove,
        Condition::CrossesBelow,
        Condition::SmaCrossAbove,
        Condition::SmaCrossBelow,
        Condition::VolatilityAbove,
        Condition::ChangePctAbove,
        Condition::ChangePctBelow,
        Condition::VolumeAbove,
        Condition::VwapCrossAbove,
        Condition::VwapCrossBelow,
        Condition::EntersChannel,
        Condition::ExitsChannel,
        Condition::Inside,
        Condition::Outside,
        Condition::SpreadAbove,
    ];

    /// The conditions judged on trades: all but [`Condition::SpreadAbove`], which is judged on
    /// quotes.
    pub const ON_TRADES: &[Condition] = Condition::ALL.split_at(16).0;

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
            Condition::ChangePctAbove => "change_pct_above",
            Condition::ChangePctBelow => "change_pct_below",
            Condition::VolumeAbove => "volume_above",
            Condition::VwapCrossAbove => "vwap_cross_above",
            Condition::VwapCrossBelow => "vwap_cross_below",
            Condition::EntersChannel => "enters_channel",
            Condition::ExitsChannel => "exits_channel",
            Condition::Inside => "inside",
            Condition::Outside => "outside",
            Condition::SpreadAbove => "spread_above",
        }
    }

    /// Whether the condition is judged on quotes (top of book) rather than on trades.
    pub fn on_quotes(self) -> bool {
        self == Condition::SpreadAbove
    }

    /// Whether the condition reads a channel `[threshold, upper]` (and so needs `upper`).
    pub fn needs_upper(self) -> bool {
        matches!(
            self,
            Condition::EntersChannel
                | Condition::ExitsChannel
                | Condition::Inside
                | Condition::Outside
        )
    }

    /// Whether the condition reads a window's stats (and so needs `window`).
    pub fn needs_window(self) -> bool {
        matches!(
            self,
            Condition::SmaCrossAbove
                | Condition::SmaCrossBelow
                | Condition::VolatilityAbove
                | Condition::ChangePctAbove
                | Condition::ChangePctBelow
                | Condition::VolumeAbove
                | Condition::VwapCrossAbove
                | Condition::VwapCrossBelow
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

/// How often an alert may fire (its trigger frequency).
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
    /// Fires at most once per bar of [`AlertRule::bar_ns`] (bars `[kB, (k+1)B)` aligned to
    /// the epoch, as the analytics' bars): on the first tick of the bar, in `(t, seq)` order,
    /// that satisfies the condition; then waits for the next bar.
    OncePerBar,
    /// Evaluates the condition on each bar's close (its last trade in `(t, seq)` order) and
    /// fires when the bar is final; the event's `time_ns` is the bar's end `(k+1)B`, its
    /// `seq`, `price` and `value` those of the close.
    OncePerBarClose,
    /// Fires on a tick that satisfies the condition, then not before `t + cooldown`: the
    /// cooldown of [`Mode::Rearm`] (`t >= fired + cooldown`), without its reset.
    OncePerInterval,
}

impl Mode {
    /// Every mode, in declaration order.
    pub const ALL: [Mode; 5] = [
        Mode::Once,
        Mode::Rearm,
        Mode::OncePerBar,
        Mode::OncePerBarClose,
        Mode::OncePerInterval,
    ];

    /// The name used in JSON, SQL and the REST API.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Once => "once",
            Mode::Rearm => "rearm",
            Mode::OncePerBar => "once_per_bar",
            Mode::OncePerBarClose => "once_per_bar_close",
            Mode::OncePerInterval => "once_per_interval",
        }
    }

    /// Whether the mode cuts time into bars (and so needs [`AlertRule::bar_ns`]).
    pub fn needs_bar(self) -> bool {
        matches!(self, Mode::OncePerBar | Mode::OncePerBarClose)
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Mode {
    type Err = RuleError;
    fn from_str(s: &str) -> Result<Mode, RuleError> {
        Mode::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| RuleError::Mode(crate::symbol::excerpt(s)))
    }
}

/// The storm guard: an alert that would fire more than `max_events` times within `within_ns`
/// of event time is paused instead.
///
/// The events counted are the alert's own, at their `time_ns`: when an event at `τ` would be
/// the `(max_events + 1)`-th at times in `(τ - within_ns, τ]` (the window convention of the
/// analytics), it is not emitted; an [`EventKind::Paused`] event with reason
/// [`PauseReason::Storm`] is emitted in its place (same tick, same fields), and the alert fires
/// nothing more until it is retracted and inserted again (re-enabled).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StormGuard {
    /// The most events allowed within the span (at least 1).
    pub max_events: u32,
    /// The sliding span, in ns of event time (above 0).
    pub within_ns: u64,
}

impl StormGuard {
    /// At most `max_events` events within `within_ns` of event time ([`AlertRule::validate`]
    /// wants both above 0).
    pub const fn new(max_events: u32, within_ns: u64) -> StormGuard {
        StormGuard {
            max_events,
            within_ns,
        }
    }

    /// The largest `max_events` a spec may give: the guard keeps one event time per event it
    /// counts, so this bounds its memory per alert.
    pub const MAX_EVENTS: u32 = 10_000;

    /// The default guard: 15 events within 3 minutes. A price oscillating around a level can
    /// fire a `rearm` alert on every tick; 15 in 3 minutes is more than any person reads, and
    /// still lets a `once_per_bar` alert on 1-minute bars fire on every bar.
    pub const DEFAULT: StormGuard = StormGuard {
        max_events: 15,
        within_ns: 180_000_000_000,
    };
}

impl Default for StormGuard {
    fn default() -> StormGuard {
        StormGuard::DEFAULT
    }
}

/// An alert rule as the dataflow matches it. Users write an [`crate::alerts::AlertSpec`] and
/// turn it into a checked rule; in code, [`AlertRule::new`] and the `with_` methods build one.
///
/// ```
/// use gostocks_core::alerts::{AlertRule, Condition, Mode};
/// use gostocks_core::Symbol;
/// let rule = AlertRule::new("a1", Symbol::new("AAPL").unwrap(), Condition::PriceAbove, "200".parse().unwrap())
///     .with_mode(Mode::Rearm)
///     .with_hysteresis("0.5".parse().unwrap());
/// assert_eq!(rule.validate(), Ok(()));
/// assert_eq!(rule.storm_warning(), None, "the hysteresis keeps it from firing on every tick");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[non_exhaustive]
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
    /// For [`Mode::OncePerBar`] and [`Mode::OncePerBarClose`]: the bar size in ns, a multiple
    /// of the analytics' resolution (one of the configured bars); `None` for the other modes.
    #[serde(default)]
    pub bar_ns: Option<u64>,
    /// The storm guard; `None` turns it off.
    #[serde(default)]
    pub storm: Option<StormGuard>,
    /// For the channel conditions: the channel's upper edge (`threshold` is its lower edge);
    /// `None` for the others.
    #[serde(default)]
    pub upper: Option<Fixed>,
}

impl AlertRule {
    /// A [`Mode::Once`] rule with no hysteresis, cooldown, window or bar, applying from time 0,
    /// with the default storm guard; not yet checked ([`AlertRule::validate`]).
    pub fn new(
        id: impl Into<String>,
        symbol: Symbol,
        condition: Condition,
        threshold: Fixed,
    ) -> AlertRule {
        AlertRule {
            id: id.into(),
            symbol,
            condition,
            threshold,
            mode: Mode::Once,
            hysteresis: Fixed::ZERO,
            cooldown_ns: 0,
            window: None,
            created_ns: 0,
            bar_ns: None,
            storm: Some(StormGuard::DEFAULT),
            upper: None,
        }
    }

    /// This rule with its channel's upper edge set (the channel conditions).
    pub fn with_upper(mut self, upper: Option<Fixed>) -> AlertRule {
        self.upper = upper;
        self
    }

    /// This rule with its threshold set.
    pub fn with_threshold(mut self, threshold: Fixed) -> AlertRule {
        self.threshold = threshold;
        self
    }

    /// This rule with its trigger frequency set.
    pub fn with_mode(mut self, mode: Mode) -> AlertRule {
        self.mode = mode;
        self
    }

    /// This rule with its hysteresis set.
    pub fn with_hysteresis(mut self, hysteresis: Fixed) -> AlertRule {
        self.hysteresis = hysteresis;
        self
    }

    /// This rule with its cooldown (or interval) set, ns of event time.
    pub fn with_cooldown_ns(mut self, cooldown_ns: u64) -> AlertRule {
        self.cooldown_ns = cooldown_ns;
        self
    }

    /// This rule with its window set (an index into the analytics' windows).
    pub fn with_window(mut self, window: Option<u8>) -> AlertRule {
        self.window = window;
        self
    }

    /// This rule applying to ticks with `t >= created_ns`.
    pub fn with_created_ns(mut self, created_ns: u64) -> AlertRule {
        self.created_ns = created_ns;
        self
    }

    /// This rule with its bar size set, ns.
    pub fn with_bar_ns(mut self, bar_ns: Option<u64>) -> AlertRule {
        self.bar_ns = bar_ns;
        self
    }

    /// This rule with its storm guard set (`None` turns it off).
    pub fn with_storm(mut self, storm: Option<StormGuard>) -> AlertRule {
        self.storm = storm;
        self
    }

    /// Checks what a user can get wrong; the message names the field and the fix.
    pub fn validate(&self) -> Result<(), RuleError> {
        if !self.threshold.is_positive() {
            return Err(RuleError::Threshold(self.threshold));
        }
        if self.hysteresis.units() < 0 {
            return Err(RuleError::Hysteresis(self.hysteresis));
        }
        match (self.condition.needs_window(), self.window.is_some()) {
            (true, false) => return Err(RuleError::WindowMissing(self.condition)),
            (false, true) => return Err(RuleError::WindowUnused(self.condition)),
            _ => {}
        }
        match (self.condition.needs_upper(), self.upper) {
            (true, None) => return Err(RuleError::UpperMissing(self.condition)),
            (false, Some(_)) => return Err(RuleError::UpperUnused(self.condition)),
            (true, Some(upper)) if upper <= self.threshold => {
                return Err(RuleError::UpperNotAbove(upper, self.threshold));
            }
            (true, Some(upper))
                if matches!(self.condition, Condition::Outside | Condition::ExitsChannel)
                    && i128::from(self.hysteresis.units()) * 2
                        > i128::from(upper.units()) - i128::from(self.threshold.units()) =>
            {
                // It rearms once the price is inside by the hysteresis from both edges.
                return Err(RuleError::HysteresisOverChannel(self.hysteresis));
            }
            _ => {}
        }
        match (self.mode.needs_bar(), self.bar_ns) {
            (true, None | Some(0)) => return Err(RuleError::BarMissing(self.mode)),
            (false, Some(_)) => return Err(RuleError::BarUnused(self.mode)),
            _ => {}
        }
        // `once` has always ignored them; the new modes say so instead.
        let new_mode = !matches!(self.mode, Mode::Once | Mode::Rearm);
        if new_mode && self.hysteresis.units() != 0 {
            return Err(RuleError::HysteresisUnused(self.mode));
        }
        match self.mode {
            Mode::OncePerInterval if self.cooldown_ns == 0 => {
                return Err(RuleError::IntervalMissing);
            }
            Mode::OncePerBar | Mode::OncePerBarClose if self.cooldown_ns != 0 => {
                return Err(RuleError::CooldownUnused(self.mode));
            }
            _ => {}
        }
        if let Some(g) = self.storm
            && (g.max_events == 0 || g.within_ns == 0)
        {
            return Err(RuleError::Storm(
                "max_events and within must be above 0; or write \"storm\": \"off\"".into(),
            ));
        }
        Ok(())
    }

    /// A warning for a rule prone to alert storms (`rearm` with no hysteresis and no
    /// cooldown), for the service to answer a creation with; `None` otherwise.
    ///
    /// ```
    /// use gostocks_core::alerts::{AlertSpec, Mode};
    /// let spec: AlertSpec = serde_json::from_str(
    ///     r#"{"symbol": "X", "condition": "price_above", "threshold": 10, "mode": "rearm"}"#).unwrap();
    /// let mut rule = spec.to_rule("a", 0, &[]).unwrap();
    /// assert!(rule.storm_warning().unwrap().contains("hysteresis"));
    /// rule.cooldown_ns = 60_000_000_000;
    /// assert_eq!(rule.storm_warning(), None);
    /// ```
    pub fn storm_warning(&self) -> Option<String> {
        if self.mode != Mode::Rearm || self.hysteresis.units() != 0 || self.cooldown_ns != 0 {
            return None;
        }
        let guard = match self.storm {
            Some(g) => format!(
                "the storm guard pauses it after {} events within {}",
                g.max_events,
                duration_label(g.within_ns)
            ),
            None => "the storm guard is off: nothing bounds it".to_owned(),
        };
        Some(format!(
            "rearm with no hysteresis and no cooldown fires again every time the condition turns true: a price oscillating around the threshold fires on almost every tick ({guard}); give a hysteresis or a cooldown, or use mode once_per_bar or once_per_interval"
        ))
    }
}

/// Why an alert rule is not acceptable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RuleError {
    /// An unknown condition name (a short excerpt of it).
    #[error(
        "condition: {0} is not a condition; use price_above, price_below, crosses_above, crosses_below, sma_cross_above, sma_cross_below, volatility_above, change_pct_above, change_pct_below, volume_above, vwap_cross_above, vwap_cross_below, enters_channel, exits_channel, inside, outside or spread_above"
    )]
    Condition(String),
    /// An unknown mode name (a short excerpt of it).
    #[error(
        "mode: {0} is not a mode; use once, rearm, once_per_bar, once_per_bar_close or once_per_interval"
    )]
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
    /// A bar mode without a bar.
    #[error("bar: {0} cuts time into bars; give one of the configured bars, e.g. \"1m\"")]
    BarMissing(Mode),
    /// A bar on a mode that does not use one.
    #[error("bar: {0} does not use a bar (once_per_bar and once_per_bar_close do); leave bar out")]
    BarUnused(Mode),
    /// A bar that the analytics do not compute (a short excerpt of it, then the bars).
    #[error("bar: {0} is not a configured bar (configured: {1})")]
    BarUnknown(String, String),
    /// A hysteresis on a mode that does not use one.
    #[error("hysteresis: {0} does not use a hysteresis (only rearm does); leave it out")]
    HysteresisUnused(Mode),
    /// A cooldown on a bar mode.
    #[error("cooldown: {0} fires at most once per bar already; leave cooldown out")]
    CooldownUnused(Mode),
    /// `once_per_interval` without its interval.
    #[error(
        "cooldown: once_per_interval fires at most once per cooldown; give one above 0, e.g. \"1m\""
    )]
    IntervalMissing,
    /// A storm guard that is not acceptable (why).
    #[error("storm: {0}")]
    Storm(String),
    /// A channel condition without its upper edge.
    #[error(
        "upper: {0} reads the channel [threshold, upper]; give upper, a decimal above threshold"
    )]
    UpperMissing(Condition),
    /// An upper edge on a condition without a channel.
    #[error(
        "upper: {0} has no channel (enters_channel, exits_channel, inside and outside do); leave upper out"
    )]
    UpperUnused(Condition),
    /// An upper edge at or below the threshold.
    #[error("upper: {0} is not above threshold {1}; the channel is [threshold, upper]")]
    UpperNotAbove(Fixed, Fixed),
    /// A hysteresis that an `outside` or `exits_channel` alert could never rearm by.
    #[error(
        "hysteresis: {0} is over half the channel's width; such an alert rearms when the price is inside by the hysteresis from both edges, so give at most half of upper - threshold"
    )]
    HysteresisOverChannel(Fixed),
}

/// `ns` in the largest unit that writes it whole, as [`Span`](crate::Span) reads it: `180s` is
/// `3m`.
pub(crate) fn duration_label(ns: u64) -> String {
    const UNITS: [(u64, &str); 6] = [
        (86_400_000_000_000, "d"),
        (3_600_000_000_000, "h"),
        (60_000_000_000, "m"),
        (1_000_000_000, "s"),
        (1_000_000, "ms"),
        (1_000, "us"),
    ];
    UNITS
        .iter()
        .find(|(u, _)| ns > 0 && ns.is_multiple_of(*u))
        .map_or_else(
            || format!("{ns}ns"),
            |(u, name)| format!("{}{name}", ns / u),
        )
}

/// What an [`AlertEvent`] says.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// The alert fired.
    #[default]
    Fired,
    /// The alert was paused instead of firing, and fires nothing more until re-enabled.
    Paused {
        /// Why.
        reason: PauseReason,
    },
}

/// Why an alert was paused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PauseReason {
    /// It would have exceeded its [`StormGuard`].
    Storm,
}

impl PauseReason {
    /// The name used in JSON, SQL and the REST API.
    pub fn as_str(self) -> &'static str {
        match self {
            PauseReason::Storm => "storm",
        }
    }
}

/// One firing of an alert, or its pause: its identity is `(alert_id, time_ns, seq)`.
///
/// For [`Mode::OncePerBarClose`], `time_ns` is the end of the bar (when it closed), and `seq`,
/// `price` and `value` are those of its close; for every other mode they are the firing tick's.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AlertEvent {
    /// The alert that fired: inline up to 23 bytes, else shared with its rule (an event
    /// costs no allocation, and an inline id no count shared between threads).
    pub alert_id: smol_str::SmolStr,
    /// Its symbol.
    pub symbol: Symbol,
    /// The firing tick's event time (for a bar close: the bar's end).
    pub time_ns: u64,
    /// The firing tick's sequence number.
    pub seq: u64,
    /// The firing tick's price.
    pub price: Fixed,
    /// The condition's value at that tick: the price, the sma, or the volatility.
    pub value: f64,
    /// A firing, or the pause that took its place.
    #[serde(default)]
    pub kind: EventKind,
}

impl AlertEvent {
    /// An event of `kind` for alert `alert_id` on the tick `(symbol, time_ns, seq, price)`,
    /// whose condition's value was `value`.
    pub fn new(
        alert_id: impl Into<smol_str::SmolStr>,
        symbol: Symbol,
        time_ns: u64,
        seq: u64,
        price: Fixed,
        value: f64,
        kind: EventKind,
    ) -> AlertEvent {
        AlertEvent {
            alert_id: alert_id.into(),
            symbol,
            time_ns,
            seq,
            price,
            value,
            kind,
        }
    }

    /// The JSON line of `analyze --events-out`. A firing has the fields it always had, in
    /// their order; a pause has two more at the end, `"kind":"paused","reason":"storm"`.
    ///
    /// ```
    /// use gostocks_core::alerts::{AlertEvent, EventKind, PauseReason};
    /// let symbol = gostocks_core::Symbol::new("X").unwrap();
    /// let mut e = AlertEvent::new("a1", symbol, 5, 2, "10.5".parse().unwrap(), 10.5, EventKind::Fired);
    /// assert_eq!(e.to_json(), r#"{"alert_id":"a1","symbol":"X","time_ns":5,"seq":2,"price":10.5,"value":10.5}"#);
    /// e.kind = EventKind::Paused { reason: PauseReason::Storm };
    /// assert_eq!(e.to_json(), r#"{"alert_id":"a1","symbol":"X","time_ns":5,"seq":2,"price":10.5,"value":10.5,"kind":"paused","reason":"storm"}"#);
    /// ```
    pub fn to_json(&self) -> String {
        let mut out = String::with_capacity(128);
        self.write_json(&mut out);
        out
    }

    /// Appends [`AlertEvent::to_json`]'s line to `out`, without allocating (the event path of
    /// `analyze` writes millions of them).
    pub fn write_json(&self, out: &mut String) {
        out.push_str(r#"{"alert_id":"#);
        // Ids are almost always plain; anything a JSON string must escape goes through serde.
        if self
            .alert_id
            .bytes()
            .all(|b| b >= 0x20 && b != b'"' && b != b'\\' && b < 0x7f)
        {
            out.push('"');
            out.push_str(&self.alert_id);
            out.push('"');
        } else {
            out.push_str(&serde_json::Value::from(&*self.alert_id).to_string());
        }
        out.push_str(r#","symbol":""#);
        out.push_str(self.symbol.as_str());
        out.push_str(r#"","time_ns":"#);
        out.push_str(itoa::Buffer::new().format(self.time_ns));
        out.push_str(r#","seq":"#);
        out.push_str(itoa::Buffer::new().format(self.seq));
        out.push_str(r#","price":"#);
        self.price.push_to(out);
        out.push_str(r#","value":"#);
        if self.value.is_finite() {
            crate::stats::push_f64(out, self.value);
        } else {
            out.push_str("null");
        }
        if let EventKind::Paused { reason } = self.kind {
            out.push_str(r#","kind":"paused","reason":""#);
            out.push_str(reason.as_str());
            out.push('"');
        }
        out.push('}');
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
        // Field by field, as far as needed (a tuple of the fields would copy them first).
        self.time_ns
            .cmp(&other.time_ns)
            .then_with(|| self.symbol.cmp(&other.symbol))
            .then_with(|| self.seq.cmp(&other.seq))
            .then_with(|| self.alert_id.as_str().cmp(other.alert_id.as_str()))
            .then_with(|| self.price.cmp(&other.price))
            .then_with(|| self.value.total_cmp(&other.value))
            .then_with(|| self.kind.cmp(&other.kind))
    }
}
