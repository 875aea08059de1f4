//! Price alerts: rules, their semantics, and the matching engine the dataflow runs per symbol.
//!
//! Conditions are evaluated tick by tick in `(t, seq)` order per symbol (see [`Condition`]). A
//! window's sma and volatility "at the tick's time" are those of the symbol's ticks `t'` with
//! `t - W < t'`, up to and including the tick (a [`crate::indicators::TickWindow`]). An alert
//! applies to ticks with `t >= created_ns`. A [`Mode::Once`] alert fires at most once; a
//! [`Mode::Rearm`] alert fires, then disarms until a tick on which its condition is false by at
//! least the hysteresis (`price_above`, `crosses_above`: `price <= threshold - hysteresis`;
//! `price_below`, `crosses_below`: `price >= threshold + hysteresis`; `sma_cross_above`:
//! `price <= sma - hysteresis`; `sma_cross_below`: `price >= sma + hysteresis`;
//! `volatility_above`: `volatility <= threshold - hysteresis`, or no volatility) and until the
//! cooldown has passed since the firing (`t >= fired + cooldown`); then it may fire again.

mod book;
mod rule;
mod spec;

pub use book::SymbolBook;
pub use rule::{
    AlertEvent, AlertRule, Condition, EventKind, Mode, PauseReason, RuleError, StormGuard,
};
pub use spec::{AlertSpec, MAX_COOLDOWN_NS, StormSpec, window_index};
