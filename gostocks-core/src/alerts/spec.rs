use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

use super::rule::{AlertRule, Condition, Mode, RuleError, StormGuard};
use crate::decimal::Fixed;
use crate::span::Span;
use crate::symbol::{Symbol, excerpt};

/// An alert as users write it (`analyze --alerts` files, `POST /alerts` bodies):
/// `{"id","symbol","condition","threshold","upper","mode","hysteresis","cooldown","window","bar","storm"}`.
/// Decimals are read from their JSON text (number or string), never through a binary float.
///
/// Trigger frequency (`mode`): `once` (default), `rearm` (with `hysteresis` and `cooldown`),
/// `once_per_bar` and `once_per_bar_close` (with `bar`, one of the configured bars, required:
/// no default, a bar size matters too much to guess), `once_per_interval` (with `cooldown`, the
/// interval, required). The storm guard (`storm`) is on by default,
/// [`StormGuard::DEFAULT`] (15 events within 3 minutes); `"storm": {"max_events": 5,
/// "within": "1m"}` sets it (a field left out keeps its default) and `"storm": "off"` turns it
/// off.
///
/// ```
/// use gostocks_core::alerts::{AlertSpec, Condition};
/// use gostocks_core::Span;
/// let specs: Vec<AlertSpec> = serde_json::from_str(r#"[
///     {"id": "a1", "symbol": "AAPL", "condition": "price_above", "threshold": 585.12345678},
///     {"id": "v", "symbol": "AAPL", "condition": "volatility_above", "threshold": 0.0001,
///      "mode": "rearm", "hysteresis": 0.00005, "cooldown": "30s", "window": "60s"}
/// ]"#).unwrap();
/// let windows = ["60s".parse::<Span>().unwrap()];
/// let rule = specs[0].to_rule("a1", 0, &windows).unwrap();
/// // Exact: eight decimals survive (a binary float would not keep them).
/// assert_eq!(rule.threshold.to_string(), "585.12345678");
/// let vol = specs[1].to_rule("v", 0, &windows).unwrap();
/// assert_eq!((vol.condition, vol.window, vol.cooldown_ns), (Condition::VolatilityAbove, Some(0), 30_000_000_000));
/// // A window the analytics do not compute is refused, naming the configured ones.
/// let bad: AlertSpec = serde_json::from_str(
///     r#"{"symbol": "AAPL", "condition": "volatility_above", "threshold": 1, "window": "5m"}"#).unwrap();
/// assert!(bad.to_rule("b", 0, &windows).unwrap_err().to_string().contains("configured: 60s"));
///
/// // Once per 1-minute bar, with a tighter storm guard.
/// let bars = ["1s".parse::<Span>().unwrap(), "1m".parse::<Span>().unwrap()];
/// let spec: AlertSpec = serde_json::from_str(r#"{"symbol": "AAPL", "condition": "price_above",
///     "threshold": 200, "mode": "once_per_bar", "bar": "1m", "storm": {"max_events": 5}}"#).unwrap();
/// let rule = spec.to_rule_core("b1", 0, &windows, &bars).unwrap();
/// assert_eq!(rule.bar_ns, Some(60_000_000_000));
/// assert_eq!(rule.storm.map(|g| (g.max_events, g.within_ns)), Some((5, 180_000_000_000)));
/// // Errors name the field.
/// let spec: AlertSpec = serde_json::from_str(r#"{"symbol": "AAPL", "condition": "price_above",
///     "threshold": 200, "mode": "once_per_bar_close", "bar": "5m"}"#).unwrap();
/// let err = spec.to_rule_core("b2", 0, &windows, &bars).unwrap_err().to_string();
/// assert_eq!(err, "bar: `5m` is not a configured bar (configured: 1s, 1m)");
/// ```
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct AlertSpec {
    /// The alert's id (required in files; assigned by the service over the API).
    #[serde(default)]
    pub id: Option<String>,
    /// The symbol.
    pub symbol: String,
    /// One of the [`Condition`] names.
    pub condition: String,
    /// The level, an exact decimal.
    #[serde(deserialize_with = "exact")]
    pub threshold: Fixed,
    /// `once` (default) or `rearm`.
    #[serde(default)]
    pub mode: Option<String>,
    /// Default 0.
    #[serde(default, deserialize_with = "exact_opt")]
    pub hysteresis: Option<Fixed>,
    /// A duration such as `"30s"`; default 0.
    #[serde(default)]
    pub cooldown: Option<String>,
    /// One of the configured windows, for sma crosses and volatility.
    #[serde(default)]
    pub window: Option<String>,
    /// One of the configured bars (e.g. `"1m"`), for `once_per_bar` and `once_per_bar_close`.
    #[serde(default)]
    pub bar: Option<String>,
    /// The storm guard: left out, the default; `"off"`; or `{"max_events", "within"}`.
    #[serde(default)]
    pub storm: Option<StormSpec>,
    /// The channel conditions' upper edge, an exact decimal above `threshold` (the lower edge).
    #[serde(default, deserialize_with = "exact_opt")]
    pub upper: Option<Fixed>,
}

/// The storm guard as users write it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StormSpec {
    /// `"off"`: no guard.
    Off,
    /// `{"max_events": 15, "within": "3m"}`; a field left out keeps its default.
    Guard {
        /// At most this many events...
        max_events: Option<u32>,
        /// ...within this span of event time (a duration such as `"3m"`).
        within: Option<String>,
    },
}

impl<'de> Deserialize<'de> for StormSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<StormSpec, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Guard {
            #[serde(default)]
            max_events: Option<u32>,
            #[serde(default)]
            within: Option<String>,
        }
        let value = serde_json::Value::deserialize(d)?;
        if value.as_str() == Some("off") {
            return Ok(StormSpec::Off);
        }
        if value.is_object() {
            let g: Guard = serde_json::from_value(value)
                .map_err(|e| serde::de::Error::custom(format!("storm: {e}")))?;
            return Ok(StormSpec::Guard {
                max_events: g.max_events,
                within: g.within,
            });
        }
        Err(serde::de::Error::custom(
            r#"storm: give "off" or {"max_events": 15, "within": "3m"}"#,
        ))
    }
}

impl StormSpec {
    /// The guard this describes (`None` when off).
    pub fn to_guard(&self) -> Result<Option<StormGuard>, RuleError> {
        let StormSpec::Guard { max_events, within } = self else {
            return Ok(None);
        };
        let within_ns = match within {
            Some(w) => w
                .parse::<Span>()
                .map_err(|e| RuleError::Storm(format!("within: {e}")))?
                .ns(),
            None => StormGuard::DEFAULT.within_ns,
        };
        let max_events = max_events.unwrap_or(StormGuard::DEFAULT.max_events);
        if max_events == 0 {
            return Err(RuleError::Storm(
                r#"max_events: 0 would pause the alert at its first event; give 1 or more, or "storm": "off""#.into(),
            ));
        }
        // The guard keeps one time per event it counts: bounded, whatever a user asks.
        if max_events > StormGuard::MAX_EVENTS {
            return Err(RuleError::Storm(format!(
                r#"max_events: {max_events} is above the limit of {}; give fewer, or "storm": "off""#,
                StormGuard::MAX_EVENTS
            )));
        }
        Ok(Some(StormGuard {
            max_events,
            within_ns,
        }))
    }
}

fn parse_raw<E: serde::de::Error>(raw: &RawValue) -> Result<Fixed, E> {
    let text = raw.get().trim();
    let text = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(text);
    text.parse::<Fixed>().map_err(E::custom)
}

fn exact<'de, D: Deserializer<'de>>(d: D) -> Result<Fixed, D::Error> {
    let raw: Box<RawValue> = Deserialize::deserialize(d)?;
    parse_raw(&raw)
}

fn exact_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Fixed>, D::Error> {
    let raw: Option<Box<RawValue>> = Deserialize::deserialize(d)?;
    match raw {
        Some(r) if r.get().trim() != "null" => parse_raw(&r).map(Some),
        _ => Ok(None),
    }
}

impl AlertSpec {
    /// A spec with the required fields (the optional ones are `None`: their defaults); set
    /// the others as fields.
    ///
    /// ```
    /// use gostocks_core::alerts::AlertSpec;
    /// let mut spec = AlertSpec::new("AAPL", "price_above", "200".parse().unwrap());
    /// spec.mode = Some("rearm".into());
    /// spec.cooldown = Some("30s".into());
    /// assert_eq!(spec.to_rule("a1", 0, &[]).unwrap().cooldown_ns, 30_000_000_000);
    /// ```
    pub fn new(
        symbol: impl Into<String>,
        condition: impl Into<String>,
        threshold: Fixed,
    ) -> AlertSpec {
        AlertSpec {
            id: None,
            symbol: symbol.into(),
            condition: condition.into(),
            threshold,
            mode: None,
            hysteresis: None,
            cooldown: None,
            window: None,
            bar: None,
            storm: None,
            upper: None,
        }
    }

    /// The rule this spec describes, checked: `windows` are the configured analytics windows.
    /// It knows no bars: `once_per_bar` and `once_per_bar_close` need
    /// [`AlertSpec::to_rule_core`].
    pub fn to_rule(
        &self,
        id: &str,
        created_ns: u64,
        windows: &[Span],
    ) -> Result<AlertRule, RuleError> {
        self.to_rule_core(id, created_ns, windows, &[])
    }

    /// The rule this spec describes, checked: `windows` and `bars` are the configured
    /// analytics windows and bars.
    pub fn to_rule_core(
        &self,
        id: &str,
        created_ns: u64,
        windows: &[Span],
        bars: &[Span],
    ) -> Result<AlertRule, RuleError> {
        // The one canonical rule of every entry: an alert can only name a symbol that ticks can
        // carry, in the form they carry it.
        let symbol = Symbol::new(&self.symbol).map_err(|e| RuleError::Symbol(e.to_string()))?;
        let condition: Condition = self.condition.parse()?;
        let mode = match &self.mode {
            Some(m) => m.parse()?,
            None => Mode::Once,
        };
        let cooldown_ns = match &self.cooldown {
            Some(c) => {
                let ns = c
                    .parse::<Span>()
                    .map_err(|e| RuleError::Cooldown(e.to_string()))?
                    .ns();
                // Cooldowns travel as signed nanoseconds (gRPC `cooldown_ns`, Postgres bigint).
                if i64::try_from(ns).is_err() {
                    return Err(RuleError::Cooldown(format!(
                        "{} is longer than the longest cooldown, {MAX_COOLDOWN_NS} ns (about 106751d)",
                        excerpt(c)
                    )));
                }
                ns
            }
            None => 0,
        };
        let window = match &self.window {
            Some(w) => Some(window_index(w, windows)?),
            None => None,
        };
        let bar_ns = match &self.bar {
            Some(b) => Some(bar_ns(b, bars)?),
            None => None,
        };
        let storm = match &self.storm {
            Some(s) => s.to_guard()?,
            None => Some(StormGuard::DEFAULT),
        };
        let rule = AlertRule {
            id: id.to_owned(),
            symbol,
            condition,
            threshold: self.threshold,
            mode,
            hysteresis: self.hysteresis.unwrap_or_default(),
            cooldown_ns,
            window,
            created_ns,
            bar_ns,
            storm,
            upper: self.upper,
        };
        rule.validate()?;
        Ok(rule)
    }
}

/// The longest cooldown, in nanoseconds: `i64::MAX` (about 106,751 days), what the wire forms
/// (gRPC `cooldown_ns`, Postgres `bigint`) hold.
pub const MAX_COOLDOWN_NS: u64 = i64::MAX as u64;

/// The index of the window written `w` (e.g. `"60s"` or `"1m"`) among `windows`, by length.
pub fn window_index(w: &str, windows: &[Span]) -> Result<u8, RuleError> {
    let configured = || {
        windows
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let span: Span = w
        .parse()
        .map_err(|_| RuleError::WindowUnknown(excerpt(w), configured()))?;
    windows
        .iter()
        .position(|x| x.ns() == span.ns())
        .and_then(|i| u8::try_from(i).ok())
        .ok_or_else(|| RuleError::WindowUnknown(excerpt(w), configured()))
}

/// The size in ns of the bar written `b` (e.g. `"1m"` or `"60s"`), one of `bars`.
fn bar_ns(b: &str, bars: &[Span]) -> Result<u64, RuleError> {
    let configured = || {
        if bars.is_empty() {
            return "none".to_owned();
        }
        bars.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let span: Span = b
        .parse()
        .map_err(|_| RuleError::BarUnknown(excerpt(b), configured()))?;
    bars.iter()
        .find(|x| x.ns() == span.ns())
        .map(Span::ns)
        .ok_or_else(|| RuleError::BarUnknown(excerpt(b), configured()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> AlertSpec {
        serde_json::from_str(json).unwrap()
    }

    fn err(json: &str) -> String {
        let bars = ["1s".parse::<Span>().unwrap(), "1m".parse::<Span>().unwrap()];
        spec(json)
            .to_rule_core("a", 0, &[], &bars)
            .unwrap_err()
            .to_string()
    }

    const BASE: &str = r#""symbol": "X", "condition": "price_above", "threshold": 1"#;

    #[test]
    fn modes_parse_by_name_and_the_storm_guard_defaults_on() {
        let bars = ["1m".parse::<Span>().unwrap()];
        for (mode, extra) in [
            ("once", ""),
            ("rearm", ""),
            ("once_per_bar", r#", "bar": "60s""#),
            ("once_per_bar_close", r#", "bar": "1m""#),
            ("once_per_interval", r#", "cooldown": "1m""#),
        ] {
            let r = spec(&format!(r#"{{{BASE}, "mode": "{mode}"{extra}}}"#))
                .to_rule_core("a", 0, &[], &bars)
                .unwrap();
            assert_eq!(r.mode.as_str(), mode);
            assert_eq!(r.mode, mode.parse().unwrap());
            assert_eq!(r.storm, Some(StormGuard::DEFAULT));
        }
        let r = spec(&format!(r#"{{{BASE}, "storm": "off"}}"#))
            .to_rule("a", 0, &[])
            .unwrap();
        assert_eq!(r.storm, None);
        let r = spec(&format!(
            r#"{{{BASE}, "storm": {{"max_events": 3, "within": "10s"}}}}"#
        ))
        .to_rule("a", 0, &[])
        .unwrap();
        assert_eq!(
            r.storm,
            Some(StormGuard {
                max_events: 3,
                within_ns: 10_000_000_000
            })
        );
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (r#""mode": "once_per_bar""#, "bar: once_per_bar cuts time"),
            (
                r#""mode": "rearm", "bar": "1m""#,
                "bar: rearm does not use a bar",
            ),
            (
                r#""mode": "once_per_bar", "bar": "2m""#,
                "bar: `2m` is not a configured bar (configured: 1s, 1m)",
            ),
            (
                r#""mode": "once_per_bar", "bar": "soon""#,
                "bar: `soon` is not a configured bar",
            ),
            (
                r#""mode": "once_per_interval""#,
                "cooldown: once_per_interval fires at most once per cooldown",
            ),
            (
                r#""mode": "once_per_bar", "bar": "1s", "cooldown": "1s""#,
                "cooldown: once_per_bar fires",
            ),
            (
                r#""mode": "once_per_bar_close", "bar": "1s", "hysteresis": 1"#,
                "hysteresis: once_per_bar_close does not",
            ),
            (
                r#""mode": "every_tick""#,
                "mode: `every_tick` is not a mode",
            ),
            (r#""storm": {"max_events": 0}"#, "storm: max_events: 0"),
            (
                r#""storm": {"max_events": 4294967295}"#,
                "storm: max_events: 4294967295 is above the limit of 10000",
            ),
            (
                r#""storm": {"within": "soon"}"#,
                "storm: within: `soon` is not a duration",
            ),
        ];
        for (fields, want) in cases {
            let got = err(&format!("{{{BASE}, {fields}}}"));
            assert!(got.starts_with(want), "{fields}: {got}");
        }
        for bad in [
            r#""storm": "on""#,
            r#""storm": {"max": 3}"#,
            r#""storm": 5"#,
        ] {
            let got = serde_json::from_str::<AlertSpec>(&format!("{{{BASE}, {bad}}}"))
                .unwrap_err()
                .to_string();
            assert!(got.starts_with("storm: "), "{bad}: {got}");
        }
        // Without bars (to_rule), a bar mode is refused, saying none are configured.
        let got = spec(&format!(
            r#"{{{BASE}, "mode": "once_per_bar", "bar": "1m"}}"#
        ))
        .to_rule("a", 0, &[])
        .unwrap_err()
        .to_string();
        assert_eq!(got, "bar: `1m` is not a configured bar (configured: none)");
    }

    #[test]
    fn the_storm_warning_is_for_rearm_without_hysteresis_or_cooldown() {
        let warn = |fields: &str| {
            spec(&format!("{{{BASE}, {fields}}}"))
                .to_rule("a", 0, &[])
                .unwrap()
                .storm_warning()
        };
        let w = warn(r#""mode": "rearm""#).unwrap();
        assert!(w.contains("15 events within 3m"), "{w}");
        assert!(
            warn(r#""mode": "rearm", "storm": "off""#)
                .unwrap()
                .contains("the storm guard is off")
        );
        assert_eq!(warn(r#""mode": "rearm", "hysteresis": 0.5"#), None);
        assert_eq!(warn(r#""mode": "rearm", "cooldown": "1s""#), None);
        assert_eq!(warn(r#""mode": "once""#), None);
    }
}
