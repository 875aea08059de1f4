use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

use super::rule::{AlertRule, Condition, Mode, RuleError};
use crate::decimal::Fixed;
use crate::span::Span;
use crate::symbol::{Symbol, excerpt};

/// An alert as users write it (`analyze --alerts` files, `POST /alerts` bodies):
/// `{"id","symbol","condition","threshold","mode","hysteresis","cooldown","window"}`.
/// Decimals are read from their JSON text (number or string), never through a binary float.
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
/// ```
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
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
    /// The rule this spec describes, checked: `windows` are the configured analytics windows.
    pub fn to_rule(
        &self,
        id: &str,
        created_ns: u64,
        windows: &[Span],
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
