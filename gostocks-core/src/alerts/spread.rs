//! The alerts judged on quotes ([`Condition::on_quotes`]): `spread_above`, one symbol's rules
//! run quote by quote in `(t, seq)` order by the [`crate::quotes::QuoteEngine`].
//!
//! A symbol has few such rules, so each quote looks at each of them (no level index, as the
//! trade book has): the spread in basis points of a quote is compared with every threshold in
//! integers.

use std::collections::VecDeque;

use super::book::guarded;
use super::rule::{AlertEvent, AlertRule, Condition, EventKind, Mode};
use crate::decimal::{Fixed, SCALE};
use crate::quotes::Quote;

/// `spread_above`'s comparison of a two-sided quote with a level `x` (in 10⁻⁸ bps): the sign
/// of `spread_bps - x`, exactly. `spread_bps = 10⁴ × (ask - bid) / ((ask + bid) / 2)`, so
/// with prices in 10⁻⁸ units it compares `2 × 10⁴ × 10⁸ × (ask - bid)` with `x × (ask + bid)`.
/// `None` for a one-sided quote.
pub fn spread_cmp(quote: &Quote, x: i64) -> Option<std::cmp::Ordering> {
    let spread = i128::from(quote.spread_units()?);
    let mid2 = i128::from(quote.mid2_units()?);
    // |spread| < 2^63 and 2 × 10¹² < 2^41: the left side is below 2^104. `x` is below 2^63
    // and `mid2` below 2^64: their product is below 2^127. Both fit an i128.
    let left = spread * 2 * 10_000 * i128::from(SCALE);
    Some(left.cmp(&(i128::from(x) * mid2)))
}

/// The spread of a two-sided quote in basis points of its mid, as a double (the event's
/// value); `None` for a one-sided quote or a zero mid.
pub fn spread_bps(quote: &Quote) -> Option<f64> {
    let spread = quote.spread_units()? as f64;
    let mid2 = quote.mid2_units()? as f64;
    (mid2 > 0.0).then(|| 2e4 * spread / mid2)
}

/// The mid of a two-sided quote at 10⁻⁸ (half a unit rounded away from zero), or the price of
/// its one side: the price of a quote's event.
pub fn quote_price(quote: &Quote) -> Fixed {
    match quote.mid2_units() {
        Some(mid2) => Fixed::from_units(mid2.div_ceil(2) as i64),
        None if quote.bid_size.units() > 0 => quote.bid,
        None => quote.ask,
    }
}

/// Whether the condition holds at `quote`, and its value.
fn holds(rule: &AlertRule, quote: &Quote) -> Option<f64> {
    match rule.condition {
        Condition::SpreadAbove => {
            let above = spread_cmp(quote, rule.threshold.units())?.is_gt();
            above.then(|| spread_bps(quote)).flatten()
        }
        _ => None,
    }
}

/// Whether the condition is false by at least the hysteresis at `quote` (a one-sided quote
/// resets nothing).
fn resets(rule: &AlertRule, quote: &Quote) -> bool {
    match rule.condition {
        Condition::SpreadAbove => {
            let level = rule
                .threshold
                .units()
                .saturating_sub(rule.hysteresis.units());
            spread_cmp(quote, level).is_some_and(|o| o.is_le())
        }
        _ => false,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Armed,
    /// Fired at the time; waits for the condition to be false by the hysteresis.
    Disarmed(u64),
    /// Waits until the time (a cooldown, a bar's or an interval's end).
    Cooling(u64),
    /// A `once` alert that fired, or an alert its storm guard paused.
    Done,
}

#[derive(Debug)]
struct Slot {
    rule: AlertRule,
    state: State,
    recent: VecDeque<u64>,
    /// `once_per_bar_close`: the last quote seen in the current bar, and whether the
    /// condition held there (with its value).
    close: Option<(Quote, Option<f64>)>,
}

impl Slot {
    fn event(&self, quote: &Quote, time_ns: u64, value: f64) -> AlertEvent {
        AlertEvent {
            alert_id: self.rule.id.as_str().into(),
            symbol: quote.symbol,
            time_ns,
            seq: quote.seq,
            price: quote_price(quote),
            value,
            kind: EventKind::Fired,
        }
    }

    /// Emits through the storm guard; a pause ends the alert.
    fn emit(&mut self, event: AlertEvent, events: &mut Vec<AlertEvent>) {
        if guarded(self.rule.storm, &mut self.recent, event, events) {
            self.state = State::Done;
        }
    }
}

/// One symbol's alerts judged on quotes, with the modes, hysteresis, cooldown and storm guard
/// of the trade alerts (see [`crate::alerts`]), a quote taking the place of a tick.
///
/// Feed it the symbol's quotes in `(t, seq)` order with [`on_quote`](Self::on_quote), and
/// close the `once_per_bar_close` bars with [`close_bars`](Self::close_bars) once every quote
/// and rule change up to their end is in.
///
/// ```
/// use gostocks_core::alerts::{AlertRule, Condition, SpreadBook};
/// use gostocks_core::quotes::Quote;
/// use gostocks_core::{Fixed, Symbol};
/// let p = |s: &str| s.parse::<Fixed>().unwrap();
/// let s = Symbol::new("X").unwrap();
/// let mut book = SpreadBook::default();
/// book.insert(AlertRule::new("wide", s, Condition::SpreadAbove, p("15")));
/// let mut events = Vec::new();
/// // 10.00 / 10.01 is 9.995 bps; 10.00 / 10.02 is 19.98 bps.
/// book.on_quote(&Quote::new(s, 1, 1, p("10"), p("1"), p("10.01"), p("1")).unwrap(), &mut events);
/// book.on_quote(&Quote::new(s, 2, 2, p("10"), p("1"), p("10.02"), p("1")).unwrap(), &mut events);
/// assert_eq!(events.len(), 1);
/// assert_eq!((events[0].seq, events[0].price), (2, p("10.01")));
/// ```
#[derive(Debug, Default)]
pub struct SpreadBook {
    slots: Vec<Slot>,
}

impl SpreadBook {
    /// Whether the book holds no alert.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Adds a rule judged on quotes (replacing one with the same id); others are ignored.
    pub fn insert(&mut self, rule: AlertRule) {
        self.remove(&rule.id);
        if !rule.condition.on_quotes() {
            return;
        }
        self.slots.push(Slot {
            rule,
            state: State::Armed,
            recent: VecDeque::new(),
            close: None,
        });
    }

    /// Removes the rule with `id` (and the bar close it waited for).
    pub fn remove(&mut self, id: &str) -> Option<AlertRule> {
        let i = self.slots.iter().position(|s| s.rule.id == id)?;
        Some(self.slots.swap_remove(i).rule)
    }

    /// The earliest end of a bar that a `once_per_bar_close` alert waits to see closed.
    pub fn next_close(&self) -> Option<u64> {
        self.slots
            .iter()
            .filter_map(|s| Some(bar_end(s.close?.0.time_ns, s.rule.bar_ns?)))
            .min()
    }

    /// Judges the bars that end before `before`: a `once_per_bar_close` alert fires at the
    /// bar's end if its condition held at the bar's last quote.
    pub fn close_bars(&mut self, before: u64, events: &mut Vec<AlertEvent>) {
        for slot in &mut self.slots {
            let (Some((quote, value)), Some(bar)) = (slot.close, slot.rule.bar_ns) else {
                continue;
            };
            let end = bar_end(quote.time_ns, bar);
            if end >= before {
                continue;
            }
            slot.close = None;
            if let (Some(v), false) = (value, slot.state == State::Done) {
                let event = slot.event(&quote, end, v);
                slot.emit(event, events);
            }
        }
    }

    /// Judges every alert on the symbol's next quote.
    /// The bars that end at or before the quote's time are closed first.
    pub fn on_quote(&mut self, quote: &Quote, events: &mut Vec<AlertEvent>) {
        let t = quote.time_ns;
        self.close_bars(t.saturating_add(1), events);
        for slot in &mut self.slots {
            if t < slot.rule.created_ns || slot.state == State::Done {
                continue;
            }
            if slot.rule.mode == Mode::OncePerBarClose {
                slot.close = Some((*quote, holds(&slot.rule, quote)));
                continue;
            }
            if let State::Cooling(ready) = slot.state
                && t >= ready
            {
                slot.state = State::Armed;
            }
            if let State::Disarmed(fired) = slot.state
                && resets(&slot.rule, quote)
            {
                let ready = fired.saturating_add(slot.rule.cooldown_ns);
                slot.state = if t >= ready {
                    State::Armed
                } else {
                    State::Cooling(ready)
                };
            }
            if slot.state != State::Armed {
                continue;
            }
            let Some(value) = holds(&slot.rule, quote) else {
                continue;
            };
            slot.state = match slot.rule.mode {
                Mode::Once => State::Done,
                Mode::Rearm => State::Disarmed(t),
                Mode::OncePerBar => State::Cooling(bar_end(t, slot.rule.bar_ns.unwrap_or(1))),
                Mode::OncePerInterval => State::Cooling(t.saturating_add(slot.rule.cooldown_ns)),
                Mode::OncePerBarClose => unreachable!("judged at the bar's close"),
            };
            let event = slot.event(quote, t, value);
            slot.emit(event, events);
        }
    }
}

/// The end of the bar of size `bar` holding `t`.
fn bar_end(t: u64, bar: u64) -> u64 {
    (t / bar.max(1))
        .saturating_add(1)
        .saturating_mul(bar.max(1))
}
