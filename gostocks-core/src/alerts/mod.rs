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
//! `volatility_above`: `volatility <= threshold - hysteresis`, or no volatility;
//! `change_pct_above`: `change <= threshold - hysteresis`; `change_pct_below`:
//! `change >= -(threshold - hysteresis)`, `change` the move in percent from the window's first
//! price, compared exactly; `volume_above`: `volume <= threshold - hysteresis`; `vwap_cross_above`, `vwap_cross_below`: as
//! the sma crosses with the window's vwap) and until the
//! cooldown has passed since the firing (`t >= fired + cooldown`); then it may fire again.
//!
//! The other trigger frequencies ([`Mode`]) cut event time into bars of the rule's `bar_ns`
//! `B`, aligned to the epoch as the analytics' bars are: a tick at `t` is in the bar
//! `[kB, (k+1)B)` with `k = t / B` (a tick on a boundary opens the next bar).
//! - [`Mode::OncePerBar`] fires on the first tick of a bar, in `(t, seq)` order, that
//!   satisfies the condition, then not before the next bar (`t >= (k+1)B`).
//! - [`Mode::OncePerBarClose`] evaluates the condition on the bar's close, its last tick in
//!   `(t, seq)` order, exactly as on any tick (a cross compares the close with the tick before
//!   it, a window's stats are those up to and including the close). It fires when the bar is
//!   final, once the grid time `(k+1)B` is complete: the event's `time_ns` is the bar's end
//!   `(k+1)B`, its `seq`, `price` and `value` those of the close. The alert must see the close
//!   (be in the rules from a grid time at or before the close's, with `created_ns <= t`) and
//!   still be there at `(k+1)B` (a retraction at `(k+1)B` or before comes first).
//! - [`Mode::OncePerInterval`] is the cooldown of `rearm` without its reset: it fires on a
//!   tick that satisfies the condition, then not before `t + cooldown` (the rule's
//!   `cooldown_ns`, the interval).
//!
//! Every mode passes its events through the alert's storm guard ([`StormGuard`], 15 events
//! within 3 minutes unless the rule says otherwise or turns it off): the event that would be
//! the `(max_events + 1)`-th at times in `(τ - within, τ]` becomes an [`EventKind::Paused`]
//! event (reason [`PauseReason::Storm`]) and the alert fires nothing more until it is
//! retracted and inserted again. All of it is in event time: the same events for any arrival
//! order within the lateness and any number of workers.

mod book;
mod rule;
mod spec;
mod spread;

pub use book::SymbolBook;
pub use rule::{
    AlertEvent, AlertRule, Condition, EventKind, Mode, PauseReason, RuleError, StormGuard,
};
pub use spec::{AlertSpec, MAX_COOLDOWN_NS, StormSpec, window_index};
pub use spread::{SpreadBook, quote_price, spread_bps, spread_cmp};
