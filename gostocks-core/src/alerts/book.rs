use std::cmp::Ordering;
use std::collections::{BTreeSet, VecDeque};
use std::ops::Bound;

use rustc_hash::FxHashMap as HashMap;

use super::rule::{AlertEvent, AlertRule, Condition, EventKind, Mode, PauseReason};
use crate::decimal::{Fixed, SCALE};
use crate::indicators::{TickWindows, VolatilitySquares, WindowView};
use crate::tick::Trade;

/// A range of an [`Index`].
type Range = (Bound<(i64, u32)>, Bound<(i64, u32)>);

/// An index of alerts by a level: `(level in 10⁻⁸ units, slot)`, with its least and greatest
/// levels at hand. On most ticks nothing fires or resets, and comparing the tick's range with
/// the two levels settles that without walking the tree's edges, let alone searching it.
#[derive(Clone)]
struct Index {
    set: BTreeSet<(i64, u32)>,
    /// The least and the greatest level, while the index is not empty.
    lo: i64,
    hi: i64,
}

impl Default for Index {
    fn default() -> Index {
        Index {
            set: BTreeSet::new(),
            lo: i64::MAX,
            hi: i64::MIN,
        }
    }
}

impl Index {
    fn insert(&mut self, entry: (i64, u32)) -> bool {
        let new = self.set.insert(entry);
        if new {
            self.lo = self.lo.min(entry.0);
            self.hi = self.hi.max(entry.0);
        }
        new
    }

    fn remove(&mut self, entry: &(i64, u32)) -> bool {
        let had = self.set.remove(entry);
        if had && (entry.0 == self.lo || entry.0 == self.hi) {
            let first = self.set.first().map_or(i64::MAX, |e| e.0);
            let last = self.set.last().map_or(i64::MIN, |e| e.0);
            (self.lo, self.hi) = (first, last);
        }
        had
    }

    /// The least and the greatest level, `None` when empty.
    fn bounds(&self) -> Option<(i64, i64)> {
        (!self.set.is_empty()).then_some((self.lo, self.hi))
    }

    fn range(&self, range: Range) -> std::collections::btree_set::Range<'_, (i64, u32)> {
        self.set.range(range)
    }

    /// Whether the index can hold anything in `range`, judged from its least and greatest
    /// levels (a slot at either may be anything: where the range's end is at that level, the
    /// answer is yes).
    fn may_hold(&self, range: &Range) -> bool {
        if self.set.is_empty() {
            return false;
        }
        let starts_in_time = match range.0 {
            Bound::Included((level, _)) => level <= self.hi,
            Bound::Excluded((level, slot)) => {
                level < self.hi || (level == self.hi && slot < u32::MAX)
            }
            Bound::Unbounded => true,
        };
        let ends_in_time = match range.1 {
            Bound::Included((level, _)) => level >= self.lo,
            Bound::Excluded((level, slot)) => level > self.lo || (level == self.lo && slot > 0),
            Bound::Unbounded => true,
        };
        starts_in_time && ends_in_time
    }
}

/// One [`Index`] per family, and which of the first 64 are not empty: the set a tick starts
/// from (see [`SymbolBook::scan`]), kept as entries come and go rather than found per tick.
#[derive(Clone)]
struct Indexes {
    list: Vec<Index>,
    /// Bit `f` set when family `f` (below 64) holds an alert.
    held: u64,
}

impl Indexes {
    fn new(families: usize) -> Indexes {
        Indexes {
            list: vec![Index::default(); families],
            held: 0,
        }
    }

    fn len(&self) -> usize {
        self.list.len()
    }

    fn insert(&mut self, f: usize, entry: (i64, u32)) -> bool {
        let new = self.list[f].insert(entry);
        self.note(f);
        new
    }

    fn remove(&mut self, f: usize, entry: &(i64, u32)) -> bool {
        let had = self.list[f].remove(entry);
        self.note(f);
        had
    }

    /// Keeps `held`'s bit of family `f` in step with its index.
    fn note(&mut self, f: usize) {
        if f < 64 {
            let bit = 1u64 << f;
            if self.list[f].set.is_empty() {
                self.held &= !bit;
            } else {
                self.held |= bit;
            }
        }
    }
}

impl std::ops::Index<usize> for Indexes {
    type Output = Index;

    fn index(&self, f: usize) -> &Index {
        &self.list[f]
    }
}

/// Where an alert is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Created after the ticks seen so far (`t < created_ns`).
    Pending,
    /// May fire on the next tick that satisfies it.
    Armed,
    /// Fired at `fired`; waits for the condition to be false by the hysteresis.
    Disarmed { fired: u64 },
    /// Reset, but its cooldown runs until `ready` (or, for `once_per_bar`, the bar's end; for
    /// `once_per_interval`, the interval's).
    Cooling { ready: u64 },
    /// A `once_per_bar_close` alert: judged at each bar's close, never indexed by level.
    AtClose,
    /// Paused by its storm guard: fires nothing more.
    Paused,
    /// A `rearm` alert with no hysteresis and no cooldown that has fired once: from then on it
    /// fires exactly when the tick crosses its level (see [`sweeps`]), and stays put in its
    /// family's swept index instead of moving between the armed and disarmed ones.
    Swept,
}

/// Whether `rule` is judged by a sweep once it has fired. A `rearm` alert with no hysteresis
/// and no cooldown resets on the first tick where its condition is false and fires on the next
/// one where it is true again, so after its first firing it fires on tick `i` exactly when the
/// condition is true at `i` and false at `i - 1`: for a price level, when the move from the
/// previous price to this one crosses it; for an sma cross, at each cross. That is a query over
/// a tree that does not change, where the general path would move the alert between two trees
/// twice per firing (a storm of such alerts spent most of its time there).
fn sweeps(rule: &AlertRule) -> bool {
    rule.mode == Mode::Rearm
        && rule.hysteresis.units() == 0
        && rule.cooldown_ns == 0
        && !matches!(
            rule.condition,
            Condition::VolatilityAbove
                | Condition::ChangePctAbove
                | Condition::ChangePctBelow
                | Condition::VolumeAbove
        )
        && !rule.condition.needs_upper()
}

struct Slot {
    rule: AlertRule,
    /// The rule's id, copied into its events (inline up to 23 bytes).
    id: smol_str::SmolStr,
    state: State,
    family: usize,
    /// The book's tick count when the rule came in: it sees the ticks from that index on.
    first_tick: u64,
    /// The storm guard's ring: the times of its latest events, at most `max_events` of them
    /// (empty, unallocated, without a guard).
    recent: VecDeque<u64>,
}

/// The `once_per_bar_close` alerts of one bar size.
struct CloseGroup {
    bar_ns: u64,
    /// The end of the bar of the last tick seen, until that bar is closed.
    end: Option<u64>,
    slots: Vec<u32>,
}

/// What the conditions need of a tick to be judged later, once it is known to be a bar's
/// close: kept for the last tick while `once_per_bar_close` alerts wait, in place (no
/// allocation per tick).
#[derive(Default)]
struct CloseTick {
    /// The tick's index in the book (what [`Slot::first_tick`] compares with).
    index: u64,
    trade: Option<Trade>,
    prev: Option<Fixed>,
    /// Per window: the sign of `price - sma` and the sma, after the tick.
    sma: Vec<Option<(Ordering, f64)>>,
    /// Per window: the sign of `price - sma` at the tick before.
    prev_sign: PerWindow<Option<Ordering>>,
    /// Per window: the sign of `price - vwap` and the vwap, after the tick.
    vwap: Vec<Option<(Ordering, f64)>>,
    /// Per window: the sign of `price - vwap` at the tick before.
    prev_vwap_sign: PerWindow<Option<Ordering>>,
    /// Per window: the volatility after the tick.
    volatility: Vec<Option<f64>>,
    /// Per window: the price of its earliest tick, after the tick.
    first: Vec<Option<Fixed>>,
    /// Per window: its volume after the tick, in 10⁻⁸ units.
    volume: Vec<i128>,
}

/// Pushes `event` of the alert in `slot` through its storm guard: either the event, or, when
/// it would be the `(max_events + 1)`-th at times in `(τ - within, τ]`, the pause in its place.
/// Returns whether the alert is now paused.
fn emit(slot: &mut Slot, event: AlertEvent, events: &mut Vec<AlertEvent>) -> bool {
    guarded(slot.rule.storm, &mut slot.recent, event, events)
}

/// [`emit`] for any alert: `recent` holds the times of its latest events (at most the guard's
/// `max_events`).
pub(super) fn guarded(
    storm: Option<super::StormGuard>,
    recent: &mut VecDeque<u64>,
    mut event: AlertEvent,
    events: &mut Vec<AlertEvent>,
) -> bool {
    let mut paused = false;
    if let Some(guard) = storm {
        let tau = event.time_ns;
        while recent
            .front()
            .is_some_and(|&x| x.saturating_add(guard.within_ns) <= tau)
        {
            recent.pop_front();
        }
        if recent.len() >= guard.max_events as usize {
            event.kind = EventKind::Paused {
                reason: PauseReason::Storm,
            };
            paused = true;
        } else {
            recent.push_back(tau);
        }
    }
    events.push(event);
    paused
}

/// The firing of the alert in `slot` on `trade`, the condition's value being `value`.
fn fired(slot: &Slot, trade: &Trade, value: f64) -> AlertEvent {
    fired_as(&slot.id, trade, value)
}

/// The firing of alert `id` on `trade`, the condition's value being `value`.
fn fired_as(id: &smol_str::SmolStr, trade: &Trade, value: f64) -> AlertEvent {
    AlertEvent {
        alert_id: id.clone(),
        symbol: trade.symbol,
        time_ns: trade.time_ns,
        seq: trade.seq,
        price: trade.price,
        value,
        kind: EventKind::Fired,
    }
}

/// Puts the entries of `index` in the range of `found` into `scratch`, and returns the
/// condition's value; `None` when the range holds nothing (or there is no range).
fn gather(
    index: &Index,
    found: Option<(Range, f64)>,
    scratch: &mut Vec<(i64, u32)>,
) -> Option<f64> {
    let (range, value) = found?;
    if !index.may_hold(&range) {
        return None;
    }
    scratch.clear();
    scratch.extend(index.range(range));
    Some(value)
}

/// One swept alert: its place in the order, and what an unguarded one's event needs (its id),
/// so that a storm's firings read one contiguous vector instead of each alert's slot.
#[derive(Clone)]
struct SweptAlert {
    key: (i64, u32),
    id: smol_str::SmolStr,
    /// Whether it has a storm guard (its firings go through its slot's ring).
    guarded: bool,
}

/// A family's swept alerts, sorted by `(level, slot)`. They change only when an alert joins
/// (its first firing) or leaves, and are searched on every tick of a storm: two binary
/// searches and a contiguous run cost less than a tree's edges, range search and leaf walk.
#[derive(Clone, Default)]
struct Swept(Vec<SweptAlert>);

impl Swept {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn insert(&mut self, alert: SweptAlert) -> bool {
        let found = self.0.binary_search_by_key(&alert.key, |a| a.key);
        if let Err(at) = found {
            self.0.insert(at, alert);
        }
        found.is_err()
    }

    fn remove(&mut self, key: &(i64, u32)) -> bool {
        let found = self.0.binary_search_by_key(key, |a| a.key);
        if let Ok(at) = found {
            self.0.remove(at);
        }
        found.is_ok()
    }

    /// The positions of the alerts in `range`.
    fn range(&self, range: &Range) -> std::ops::Range<usize> {
        let v = &self.0;
        let start = match range.0 {
            Bound::Included(s) => v.partition_point(|a| a.key < s),
            Bound::Excluded(s) => v.partition_point(|a| a.key <= s),
            Bound::Unbounded => 0,
        };
        let end = match range.1 {
            Bound::Included(e) => v.partition_point(|a| a.key <= e),
            Bound::Excluded(e) => v.partition_point(|a| a.key < e),
            Bound::Unbounded => v.len(),
        };
        start..end.max(start)
    }
}

/// The end of the bar of size `bar` (aligned to the epoch) that holds `t`.
fn bar_end(t: u64, bar: u64) -> u64 {
    (t / bar).saturating_add(1).saturating_mul(bar)
}

/// Whether `rule`'s condition holds at the tick `at`, and its value.
fn holds_at(rule: &AlertRule, at: &CloseTick) -> Option<f64> {
    let trade = at.trade.as_ref()?;
    let (p, thr) = (trade.price, rule.threshold);
    let price = p.to_f64();
    let yes = |c: bool, v: f64| c.then_some(v);
    let w = usize::from(rule.window.unwrap_or(0));
    match rule.condition {
        Condition::PriceAbove => yes(p > thr, price),
        Condition::PriceBelow => yes(p < thr, price),
        Condition::CrossesAbove => yes(at.prev.is_some_and(|q| q <= thr) && p > thr, price),
        Condition::CrossesBelow => yes(at.prev.is_some_and(|q| q >= thr) && p < thr, price),
        Condition::SmaCrossAbove => {
            let (now, sma) = at.sma.get(w).copied().flatten()?;
            let before = at.prev_sign.get(w).copied().flatten()?;
            yes(before.is_le() && now.is_gt(), sma)
        }
        Condition::SmaCrossBelow => {
            let (now, sma) = at.sma.get(w).copied().flatten()?;
            let before = at.prev_sign.get(w).copied().flatten()?;
            yes(before.is_ge() && now.is_lt(), sma)
        }
        Condition::VwapCrossAbove | Condition::VwapCrossBelow => {
            let (now, vwap) = at.vwap.get(w).copied().flatten()?;
            let before = at.prev_vwap_sign.get(w).copied().flatten()?;
            if rule.condition == Condition::VwapCrossAbove {
                yes(before.is_le() && now.is_gt(), vwap)
            } else {
                yes(before.is_ge() && now.is_lt(), vwap)
            }
        }
        Condition::VolatilityAbove => {
            let v = at.volatility.get(w).copied().flatten()?;
            yes(v > thr.to_f64(), v)
        }
        Condition::ChangePctAbove | Condition::ChangePctBelow => {
            let first = at.first.get(w).copied().flatten()?;
            let up = rule.condition == Condition::ChangePctAbove;
            let (boundary, value) = change_boundary(first, p, up)?;
            // threshold < the move, as a level below the boundary.
            yes(thr.units() < boundary, value)
        }
        Condition::VolumeAbove => {
            let v = at.volume.get(w).copied()?;
            yes(i128::from(thr.units()) < v, volume_value(v))
        }
        Condition::EntersChannel
        | Condition::ExitsChannel
        | Condition::Inside
        | Condition::Outside => yes(channel_holds(rule, p, at.prev), price),
        // Judged on quotes, never in a trade book (see `SymbolBook::insert`).
        Condition::SpreadAbove => None,
    }
}

/// Whether `price` is in `rule`'s channel `[threshold, upper]`.
fn in_channel(rule: &AlertRule, price: Fixed) -> bool {
    rule.threshold <= price && rule.upper.is_some_and(|u| price <= u)
}

/// Whether a channel condition holds at a tick of `price` after one of `prev`.
fn channel_holds(rule: &AlertRule, price: Fixed, prev: Option<Fixed>) -> bool {
    let now = in_channel(rule, price);
    match rule.condition {
        Condition::Inside => now,
        Condition::Outside => !now,
        Condition::EntersChannel => now && prev.is_some_and(|q| !in_channel(rule, q)),
        Condition::ExitsChannel => !now && prev.is_some_and(|q| in_channel(rule, q)),
        _ => false,
    }
}

/// Whether a channel condition is false by the hysteresis at `price`: outside the channel by
/// it for `inside` and `enters_channel`, inside by it from both edges for `outside` and
/// `exits_channel`. In 128 bits: the edges moved by the hysteresis may leave `i64`.
fn channel_reset(rule: &AlertRule, price: Fixed) -> bool {
    let (p, lo, h) = (
        i128::from(price.units()),
        i128::from(rule.threshold.units()),
        i128::from(rule.hysteresis.units()),
    );
    let hi = i128::from(rule.upper.unwrap_or(rule.threshold).units());
    match rule.condition {
        Condition::Inside | Condition::EntersChannel => p < lo - h || p > hi + h,
        _ => lo + h <= p && p <= hi - h,
    }
}

/// [`SymbolBook::reset_range`] for the later windowed kinds (changes, volume, vwap crosses):
/// apart, so that the common path stays small enough to inline.
#[inline(never)]
fn later_reset_range(w: &WindowView<'_>, kind: usize, price: Fixed) -> Option<Range> {
    Some(match kind {
        // the move <= threshold - hysteresis: levels from the move's boundary on
        3 | 4 => from(change_boundary(w.first_price()?, price, kind == 3)?.0),
        // volume <= threshold - hysteresis
        5 => from_wide(w.volume()),
        // price - vwap <= -hysteresis, i.e. hysteresis <= floor((Σpq - price·Σq) / Σq)
        6 => {
            let (d, q) = w.diff_from_vwap(price)?;
            (
                Bound::Unbounded,
                Bound::Included((floor_div(-d, q), u32::MAX)),
            )
        }
        // price - vwap >= hysteresis
        _ => {
            let (d, q) = w.diff_from_vwap(price)?;
            (
                Bound::Unbounded,
                Bound::Included((floor_div(d, q), u32::MAX)),
            )
        }
    })
}

/// [`SymbolBook::fire_range`] for the later windowed kinds, `before` the window's vwap sign at
/// the tick before (see [`later_reset_range`]).
#[inline(never)]
fn later_fire_range(
    w: &WindowView<'_>,
    kind: usize,
    price: Fixed,
    before: Option<Ordering>,
) -> Option<(Range, f64)> {
    Some(match kind {
        // threshold < the move
        3 | 4 => {
            let (boundary, value) = change_boundary(w.first_price()?, price, kind == 3)?;
            (below(boundary), value)
        }
        // threshold < volume
        5 => (below_wide(w.volume()), volume_value(w.volume())),
        // a cross of the vwap
        _ => {
            let (d, _) = w.diff_from_vwap(price)?;
            crossed(kind == 6, before?, d)?;
            ((Bound::Unbounded, Bound::Unbounded), w.vwap()?)
        }
    })
}

/// `Some` if `price - mean`, `d` now and of sign `before` at the tick before, crossed the
/// mean upwards (`up`: `before <= 0 < d`) or downwards (`before >= 0 > d`).
fn crossed(up: bool, before: Ordering, d: i128) -> Option<()> {
    let yes = if up {
        before.is_le() && d > 0
    } else {
        before.is_ge() && d < 0
    };
    yes.then_some(())
}

/// A window's volume (10⁻⁸ units) as the event's value.
fn volume_value(v: i128) -> f64 {
    v as f64 / SCALE as f64
}

/// The levels below `v` (an exact sum that may be beyond a level's range).
fn below_wide(v: i128) -> Range {
    match i64::try_from(v) {
        Ok(v) => below(v),
        Err(_) if v > 0 => (Bound::Unbounded, Bound::Unbounded),
        Err(_) => (Bound::Unbounded, Bound::Excluded((i64::MIN, 0))),
    }
}

/// The levels from `v` on (an exact sum that may be beyond a level's range).
fn from_wide(v: i128) -> Range {
    match i64::try_from(v) {
        Ok(v) => from(v),
        Err(_) if v > 0 => (Bound::Excluded((i64::MAX, u32::MAX)), Bound::Unbounded),
        Err(_) => (Bound::Unbounded, Bound::Unbounded),
    }
}

/// For a change over a window from `first` to `price`: the least level `m` (10⁻⁸ units of a
/// percent) with `m / 10⁸ >= the move`, the move being the rise (`up`) or the fall in percent,
/// `(price - first) / first × 100` or its negation; and the change in percent as a float (the
/// event's value). Exact: `m = ceil(a / b)` with `a = ±(price - first) × 100 × 10⁸` and
/// `b = first` in units, so a threshold `x` is below the move exactly when `x < m`. `None`
/// for a first price that is not positive.
fn change_boundary(first: Fixed, price: Fixed, up: bool) -> Option<(i64, f64)> {
    let b = i128::from(first.units());
    if b <= 0 {
        return None;
    }
    let diff = i128::from(price.units()) - b;
    let a = if up { diff } else { -diff } * 100 * i128::from(SCALE);
    let ceil = -(-a).div_euclid(b);
    let boundary = ceil.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64;
    Some((boundary, diff as f64 * 100.0 / b as f64))
}

/// The alerts of one symbol and what they need to see of its ticks: the matching engine.
///
/// Alerts are indexed by level per family (condition and window), armed ones by their firing
/// level and disarmed ones by their reset level, so a tick costs a few range queries whatever
/// the number of alerts, plus the alerts it actually fires or resets.
///
/// `once_per_bar_close` alerts are judged on the last tick seen, once a bar is known to be
/// over: when a tick of a later bar comes ([`SymbolBook::on_tick`]), or when the caller knows
/// that no tick of the bar can still come ([`SymbolBook::close_bars`]).
///
/// ```
/// use gostocks_core::alerts::{AlertRule, Condition, SymbolBook};
/// use gostocks_core::{Symbol, Trade};
/// let sym = Symbol::new("X").unwrap();
/// let mut book = SymbolBook::new(&[]);
/// book.insert(AlertRule::new("a", sym, Condition::PriceAbove, "10".parse().unwrap()).with_storm(None));
/// let tick = |t, p: &str| Trade::new(sym, t, 0, p.parse().unwrap(), "1".parse().unwrap());
/// let mut events = Vec::new();
/// book.on_tick(&tick(1, "10"), None, &mut events);        // equal: not above
/// book.on_tick(&tick(2, "10.01"), Some("10".parse().unwrap()), &mut events);
/// book.on_tick(&tick(3, "11"), Some("10.01".parse().unwrap()), &mut events); // once: done
/// assert_eq!(events.len(), 1);
/// assert_eq!((events[0].time_ns, events[0].price.to_string()), (2, "10.01".into()));
/// ```
pub struct SymbolBook {
    windows: TickWindows,
    /// Per window: the sign of `price - sma` at the previous tick.
    prev_sma_sign: PerWindow<Option<std::cmp::Ordering>>,
    /// Per window: the sign of `price - vwap` at the previous tick, kept once a vwap alert came
    /// (see [`SymbolBook::insert`]).
    prev_vwap_sign: PerWindow<Option<std::cmp::Ordering>>,
    vwap_used: bool,
    /// The previous tick's price.
    last_price: Option<Fixed>,
    /// The previous tick's time: a rule created at or before it is armed as it comes in (the
    /// next tick is at or after it), with no stop in `pending`.
    last_time: Option<u64>,
    slots: Vec<Option<Slot>>,
    free: Vec<u32>,
    ids: HashMap<smol_str::SmolStr, u32>,
    pending: BTreeSet<(u64, u32)>,
    cooling: BTreeSet<(u64, u32)>,
    armed: Indexes,
    disarmed: Indexes,
    /// Per family, the alerts in [`State::Swept`], by level.
    swept: Vec<Swept>,
    /// How many alerts the swept indexes hold, all families together: most books have none,
    /// and a tick then looks at none of them.
    swept_len: usize,
    /// Bit `f` set when family `f` (below 64) has swept alerts: the set a tick starts from,
    /// kept as alerts join and leave rather than found per tick (as [`Indexes::held`]).
    swept_held: u64,
    /// Past the greatest family any alert was ever inserted into: a tick looks at the indexes
    /// below it only (the later conditions' families come last, see [`windowed_family`]).
    used_end: usize,
    scratch: Vec<(i64, u32)>,
    /// Per window: its volatility after the current tick, as far as the volatility alerts
    /// need it (see [`Vol`]). Its float boundary (see [`float_boundary`]) is worked out only
    /// when an index's bounds show it can hold something: most ticks fire and reset nothing.
    volatility: PerWindow<Vol>,
    /// Per window: `price - sma` after the current tick, as [`Sums::diff_from_sma`](crate::indicators::Sums::diff_from_sma)
    /// gives it, worked out once for the resets, the firings and the signs kept for the next
    /// tick.
    sma_diff: PerWindow<Option<(i128, i128)>>,
    /// The channel alerts that are armed or disarmed, judged one by one on each tick.
    channels: Vec<u32>,
    /// Ticks seen so far.
    ticks: u64,
    /// The `once_per_bar_close` alerts, by bar size.
    groups: Vec<CloseGroup>,
    /// The last tick, while `groups` is not empty.
    last: CloseTick,
}

/// A value per window, held in the book itself up to two windows (the default configuration):
/// a tick reads every window's, and a separate allocation each is one more cache line to wait
/// for on every tick whose book the ticks before it have pushed out of the cache.
type PerWindow<T> = smallvec::SmallVec<[T; 2]>;

const PRICE_ABOVE: usize = 0;
const PRICE_BELOW: usize = 1;
const CROSSES_ABOVE: usize = 2;
const CROSSES_BELOW: usize = 3;
/// The first windowed family.
const VOL: usize = 4;
/// The windowed conditions, each a family per window: volatility, the sma crosses, the
/// changes, the volume and the vwap crosses.
const WINDOWED: usize = 8;
/// The windowed families of the first block: volatility and the sma crosses. Their indexes
/// come first, the block of the later conditions after them, so that a book without those
/// touches no more memory than before they came.
const FIRST_BLOCK: usize = 3;

/// A windowed condition's kind (`0..WINDOWED`): the volatility, the sma cross above and below,
/// the change above and below, the volume.
fn kind_of(condition: Condition) -> Option<usize> {
    Some(match condition {
        Condition::VolatilityAbove => 0,
        Condition::SmaCrossAbove => 1,
        Condition::SmaCrossBelow => 2,
        Condition::ChangePctAbove => 3,
        Condition::ChangePctBelow => 4,
        Condition::VolumeAbove => 5,
        Condition::VwapCrossAbove => 6,
        Condition::VwapCrossBelow => 7,
        _ => return None,
    })
}

/// The family of the windowed `kind` for window `wi`, in a book of `windows` windows.
fn windowed_family(wi: usize, kind: usize, windows: usize) -> usize {
    if kind < FIRST_BLOCK {
        VOL + FIRST_BLOCK * wi + kind
    } else {
        VOL + FIRST_BLOCK * windows + (WINDOWED - FIRST_BLOCK) * wi + (kind - FIRST_BLOCK)
    }
}

/// The window and kind of the windowed family `f` (see [`windowed_family`]).
fn window_kind(f: usize, windows: usize) -> (usize, usize) {
    let g = f - VOL;
    if g < FIRST_BLOCK * windows {
        (g / FIRST_BLOCK, g % FIRST_BLOCK)
    } else {
        let h = g - FIRST_BLOCK * windows;
        let later = WINDOWED - FIRST_BLOCK;
        (h / later, FIRST_BLOCK + h % later)
    }
}

/// A window's volatility after the current tick, as the volatility alerts need it.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Vol {
    /// Fewer than two returns: no volatility (every disarmed alert resets, none fires).
    Undefined,
    /// No volatility alert waits: not worked out.
    Settled,
    /// There is a volatility, worked out only where an index's bounds cannot settle the
    /// question without it, from its squares when they are at hand (see
    /// [`VolatilitySquares::against`]).
    Lazy(Option<VolatilitySquares>),
}

/// Whether the armed alerts of the price family `f` (`f < VOL`), whose levels run from `least`
/// to `greatest`, may hold one that fires at price `p` after `prev`: what
/// [`SymbolBook::fire_range`] and [`Index::may_hold`] decide, without building the range.
#[inline]
fn price_may_fire(f: usize, least: i64, greatest: i64, p: i64, prev: Option<i64>) -> bool {
    match f {
        PRICE_ABOVE => least < p,
        PRICE_BELOW => greatest > p,
        // prev <= level < p
        CROSSES_ABOVE => prev.is_some_and(|q| q < p && q <= greatest && least < p),
        // p < level <= prev
        _ => prev.is_some_and(|q| p < q && p < greatest && least <= q),
    }
}

/// `a >= level · n` for `n > 0`, by the signs alone where they settle it (a reset level is
/// mostly a hysteresis, at or over zero, and half the ticks are on the other side of the mean).
#[inline]
fn at_least(a: i128, level: i64, n: i128) -> bool {
    if level >= 0 && a < 0 {
        false
    } else if level <= 0 && a >= 0 {
        true
    } else {
        a >= i128::from(level) * n
    }
}

/// Whether the disarmed alerts of the price family `f` (`f < VOL`), whose reset levels run
/// from `least` to `greatest`, may hold one that resets at price `p` (see
/// [`SymbolBook::reset_range`]).
#[inline]
fn price_may_reset(f: usize, least: i64, greatest: i64, p: i64) -> bool {
    match f {
        PRICE_ABOVE | CROSSES_ABOVE => greatest >= p,
        _ => least <= p,
    }
}

/// A set of families a tick may concern, found in one tight pass over the indexes' bounds
/// and the windows' values of the tick, so that the work of building a range and searching an
/// index is done for those only: with a hundred thousand alerts, most families of most books
/// are not empty, and most ticks fire and reset nothing. The first 64 families are in the
/// set or not; any beyond (a book of more than 7 windows) are always in it.
#[derive(Clone, Copy)]
struct Families(u64);

impl Families {
    /// Every family: what a book of more than 64 families (more than 7 windows) takes.
    const ALL: Families = Families(u64::MAX);

    /// Puts `f` (below 64) in the set if `yes`.
    #[inline]
    fn mark(&mut self, f: usize, yes: bool) {
        self.0 |= u64::from(yes) << f;
    }

    /// The families of the set below `end`, in order.
    fn families(self, end: usize) -> FamilyIter {
        FamilyIter {
            bits: self.0,
            next: 64,
            end,
        }
    }
}

/// The families of a [`Families`] set below `end`: its bits, then every family from 64 on.
struct FamilyIter {
    bits: u64,
    next: usize,
    end: usize,
}

impl Iterator for FamilyIter {
    type Item = usize;

    #[inline]
    fn next(&mut self) -> Option<usize> {
        if self.bits != 0 {
            let f = self.bits.trailing_zeros() as usize;
            self.bits &= self.bits - 1;
            if f < self.end {
                return Some(f);
            }
            self.bits = 0;
        }
        (self.next < self.end).then(|| {
            self.next += 1;
            self.next - 1
        })
    }
}

/// The price families' bits in a [`Families`] set.
const PRICE_FAMILIES: u64 = (1 << VOL) - 1;

/// The family of the channel conditions: no level index, see [`SymbolBook::judge_channels`].
const CHANNEL: usize = usize::MAX;

fn family(rule: &AlertRule, windows: usize) -> usize {
    match rule.condition {
        Condition::EntersChannel
        | Condition::ExitsChannel
        | Condition::Inside
        | Condition::Outside => CHANNEL,
        Condition::PriceAbove => PRICE_ABOVE,
        Condition::PriceBelow => PRICE_BELOW,
        Condition::CrossesAbove => CROSSES_ABOVE,
        Condition::CrossesBelow => CROSSES_BELOW,
        c => windowed_family(
            usize::from(rule.window.unwrap_or(0)),
            kind_of(c).unwrap_or(0),
            windows,
        ),
    }
}

/// The level an armed alert is indexed by: where it fires.
fn fire_level(rule: &AlertRule) -> i64 {
    match rule.condition {
        Condition::SmaCrossAbove
        | Condition::SmaCrossBelow
        | Condition::VwapCrossAbove
        | Condition::VwapCrossBelow => 0,
        _ => rule.threshold.units(),
    }
}

/// The level a disarmed alert is indexed by: where it resets.
fn reset_level(rule: &AlertRule) -> i64 {
    let (t, h) = (rule.threshold.units(), rule.hysteresis.units());
    match rule.condition {
        Condition::PriceAbove
        | Condition::CrossesAbove
        | Condition::VolatilityAbove
        | Condition::ChangePctAbove
        | Condition::ChangePctBelow
        | Condition::VolumeAbove => t.saturating_sub(h),
        Condition::PriceBelow | Condition::CrossesBelow => t.saturating_add(h),
        // Never indexed by level.
        Condition::EntersChannel
        | Condition::ExitsChannel
        | Condition::Inside
        | Condition::Outside
        | Condition::SpreadAbove => 0,
        Condition::SmaCrossAbove
        | Condition::SmaCrossBelow
        | Condition::VwapCrossAbove
        | Condition::VwapCrossBelow => h,
    }
}

/// The least `m` with `m / 10⁸ >= v` (as the float comparison a reader would make): levels
/// below it are under `v`, levels from it on are at or over.
fn float_boundary(v: f64) -> i64 {
    let scale = SCALE as f64;
    let mut m = (v * scale).ceil().clamp(i64::MIN as f64, i64::MAX as f64) as i64;
    while m > i64::MIN && ((m - 1) as f64 / scale) >= v {
        m -= 1;
    }
    while m < i64::MAX && (m as f64 / scale) < v {
        m += 1;
    }
    m
}

fn below(level: i64) -> Range {
    (Bound::Unbounded, Bound::Excluded((level, 0)))
}

fn from(level: i64) -> Range {
    (Bound::Included((level, 0)), Bound::Unbounded)
}

fn between(lo: i64, hi_excluded: i64) -> Option<Range> {
    (lo < hi_excluded).then_some((Bound::Included((lo, 0)), Bound::Excluded((hi_excluded, 0))))
}

/// The levels up to `floor(a / n)` (`n > 0`), or `None` when `index` holds none of them: its
/// least level `L` is over the quotient exactly when `a < L·n`, which needs no division (most
/// ticks reset nothing).
fn up_to_floor_div(index: &Index, a: i128, n: i128) -> Option<Range> {
    let (least, _) = index.bounds()?;
    if a < i128::from(least) * n {
        return None;
    }
    Some((
        Bound::Unbounded,
        Bound::Included((floor_div(a, n), u32::MAX)),
    ))
}

fn floor_div(a: i128, b: i128) -> i64 {
    let q = a.div_euclid(b);
    q.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

impl SymbolBook {
    /// A book for the windows `windows` (ns), indexed as the rules' `window` fields are.
    pub fn new(windows: &[u64]) -> SymbolBook {
        let families = VOL + WINDOWED * windows.len().max(1);
        SymbolBook {
            windows: TickWindows::without_vwap(windows),
            prev_sma_sign: smallvec::smallvec![None; windows.len()],
            prev_vwap_sign: smallvec::smallvec![None; windows.len()],
            vwap_used: false,
            last_price: None,
            last_time: None,
            slots: Vec::new(),
            free: Vec::new(),
            ids: HashMap::default(),
            pending: BTreeSet::new(),
            cooling: BTreeSet::new(),
            armed: Indexes::new(families),
            disarmed: Indexes::new(families),
            swept: vec![Swept::default(); families],
            swept_len: 0,
            swept_held: 0,
            used_end: 0,
            scratch: Vec::new(),
            volatility: smallvec::smallvec![Vol::Settled; windows.len()],
            sma_diff: smallvec::smallvec![None; windows.len()],
            channels: Vec::new(),
            ticks: 0,
            groups: Vec::new(),
            last: CloseTick::default(),
        }
    }

    /// The end of the earliest bar that `once_per_bar_close` alerts wait to see closed: once no
    /// tick of the symbol before it can come, [`SymbolBook::close_bars`] judges them.
    pub fn next_close(&self) -> Option<u64> {
        self.groups.iter().filter_map(|g| g.end).min()
    }

    /// Closes the bars that end before `before` (no tick of them can still come): the
    /// `once_per_bar_close` alerts that saw the bar's close and whose condition holds on it
    /// fire (or pause), at the bar's end, in alert-id order per bar size.
    pub fn close_bars(&mut self, before: u64, events: &mut Vec<AlertEvent>) {
        for gi in 0..self.groups.len() {
            let Some(end) = self.groups[gi].end.filter(|&e| e < before) else {
                continue;
            };
            self.groups[gi].end = None;
            let Some(close) = self.last.trade else {
                continue;
            };
            let first = events.len();
            for &slot in &self.groups[gi].slots {
                let Some(s) = self.slots[slot as usize].as_mut() else {
                    continue;
                };
                if s.state != State::AtClose
                    || s.first_tick > self.last.index
                    || close.time_ns < s.rule.created_ns
                {
                    continue;
                }
                let Some(value) = holds_at(&s.rule, &self.last) else {
                    continue;
                };
                let event = AlertEvent {
                    alert_id: s.id.clone(),
                    symbol: close.symbol,
                    time_ns: end,
                    seq: close.seq,
                    price: close.price,
                    value,
                    kind: EventKind::Fired,
                };
                if emit(s, event, events) {
                    s.state = State::Paused;
                }
            }
            events[first..].sort_unstable_by(|a, b| a.alert_id.cmp(&b.alert_id));
        }
    }

    /// Keeps what the `once_per_bar_close` alerts need of this tick, and opens its bars.
    fn remember_close(&mut self, trade: &Trade, prev: Option<Fixed>) {
        let at = &mut self.last;
        at.index = self.ticks;
        at.trade = Some(*trade);
        at.prev = prev;
        at.prev_sign.clone_from(&self.prev_sma_sign);
        at.prev_vwap_sign.clone_from(&self.prev_vwap_sign);
        at.vwap.clear();
        at.sma.clear();
        at.volatility.clear();
        at.first.clear();
        at.volume.clear();
        for w in self.windows.iter() {
            at.first.push(w.first_price());
            at.volume.push(w.volume());
            at.sma.push(
                w.diff_from_sma(trade.price)
                    .and_then(|(d, _)| Some((d.cmp(&0), w.sma()?))),
            );
            at.volatility.push(w.volatility());
            at.vwap.push(
                w.diff_from_vwap(trade.price)
                    .and_then(|(d, _)| Some((d.cmp(&0), w.vwap()?))),
            );
        }
        for g in &mut self.groups {
            g.end = Some(bar_end(trade.time_ns, g.bar_ns));
        }
    }

    /// How many alerts the book holds (pending, armed or disarmed).
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether the book holds no alert.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Adds a rule (replacing one with the same id); it starts armed from its creation time.
    /// A rule judged on quotes ([`Condition::on_quotes`]) is left to the quote engine's
    /// [`SpreadBook`](super::SpreadBook): a trade never fires it.
    pub fn insert(&mut self, rule: AlertRule) {
        self.remove(&rule.id);
        if rule.condition.on_quotes()
            || rule
                .window
                .is_some_and(|w| usize::from(w) >= self.windows.len())
        {
            return;
        }
        let slot = self.free.pop().unwrap_or_else(|| {
            self.slots.push(None);
            (self.slots.len() - 1) as u32
        });
        // Inline up to 23 bytes: the map's key and the slot's copy for its events, made once.
        let id = smol_str::SmolStr::from(rule.id.as_str());
        self.ids.insert(id.clone(), slot);
        let f = family(&rule, self.windows.len());
        if f != CHANNEL {
            self.used_end = self.used_end.max(f + 1);
        }
        if matches!(
            rule.condition,
            Condition::VwapCrossAbove | Condition::VwapCrossBelow
        ) && !self.vwap_used
        {
            // From now on every tick keeps its vwap sign; the windows hold the previous
            // tick's state, so its sign is known too, as for the sma.
            self.vwap_used = true;
            self.windows.track_vwap();
            if let Some(p) = self.last_price {
                for (w, sign) in self.windows.iter().zip(&mut self.prev_vwap_sign) {
                    *sign = w.diff_from_vwap(p).map(|(d, _)| d.cmp(&0));
                }
            }
        }
        let state = if rule.mode == Mode::OncePerBarClose {
            let bar_ns = rule.bar_ns.unwrap_or(0).max(1);
            match self.groups.iter_mut().find(|g| g.bar_ns == bar_ns) {
                Some(g) => g.slots.push(slot),
                None => self.groups.push(CloseGroup {
                    bar_ns,
                    end: None,
                    slots: vec![slot],
                }),
            }
            State::AtClose
        } else if rule.created_ns <= self.last_time.unwrap_or(0) {
            // In force from the next tick on, which cannot be earlier: armed now. (Every
            // alert comes in this way when the dataflow starts, before a book's first tick.)
            State::Armed
        } else {
            self.pending.insert((rule.created_ns, slot));
            State::Pending
        };
        self.slots[slot as usize] = Some(Slot {
            family: f,
            id,
            rule,
            state,
            first_tick: self.ticks,
            recent: VecDeque::new(),
        });
        if state == State::Armed {
            self.arm(slot);
        }
    }

    /// Makes room for `additional` more rules, so that a large set of them (every alert, when
    /// the dataflow starts) is inserted without growing the book rule by rule.
    pub fn reserve(&mut self, additional: usize) {
        let additional = additional.saturating_sub(self.free.len());
        self.slots.reserve(additional);
        self.ids.reserve(additional);
    }

    /// Removes the rule with `id`, wherever it is in its life.
    pub fn remove(&mut self, id: &str) -> Option<AlertRule> {
        let slot = self.ids.remove(id)?;
        let s = self.slots[slot as usize].take()?;
        self.free.push(slot);
        if s.rule.mode == Mode::OncePerBarClose {
            for g in &mut self.groups {
                g.slots.retain(|&x| x != slot);
            }
            self.groups.retain(|g| !g.slots.is_empty());
        }
        match s.state {
            State::Pending => self.pending.remove(&(s.rule.created_ns, slot)),
            State::Armed | State::Disarmed { .. } if s.family == CHANNEL => {
                self.channels.retain(|&x| x != slot);
                true
            }
            State::Armed => self.armed.remove(s.family, &(fire_level(&s.rule), slot)),
            State::Disarmed { .. } => self
                .disarmed
                .remove(s.family, &(reset_level(&s.rule), slot)),
            State::Cooling { ready } => self.cooling.remove(&(ready, slot)),
            State::Swept => {
                let removed = self.swept[s.family].remove(&(fire_level(&s.rule), slot));
                self.swept_len -= usize::from(removed);
                self.note_swept(s.family);
                removed
            }
            State::AtClose | State::Paused => false,
        };
        Some(s.rule)
    }

    /// Keeps `swept_held`'s bit of family `f` in step with its swept alerts.
    fn note_swept(&mut self, f: usize) {
        if f < 64 {
            let bit = 1u64 << f;
            if self.swept[f].is_empty() {
                self.swept_held &= !bit;
            } else {
                self.swept_held |= bit;
            }
        }
    }

    fn arm(&mut self, slot: u32) {
        if let Some(s) = self.slots[slot as usize].as_mut() {
            s.state = State::Armed;
            if s.family == CHANNEL {
                self.channels.push(slot);
            } else {
                self.armed.insert(s.family, (fire_level(&s.rule), slot));
            }
        }
    }

    /// Feeds the symbol's next tick in `(t, seq)` order with its predecessor's price; pushes
    /// the events it fires onto `events`, in alert-id order (after those of the bars it
    /// closes, see [`SymbolBook::close_bars`]).
    pub fn on_tick(&mut self, trade: &Trade, prev: Option<Fixed>, events: &mut Vec<AlertEvent>) {
        let ret = prev.map(|p| crate::indicators::quantize_log_return(trade.price, p));
        self.on_tick_with_return(trade, prev, ret, events);
    }

    /// [`SymbolBook::on_tick`] with the tick's quantized log return from `prev` already worked
    /// out ([`crate::indicators::quantize_log_return`]), as the sequencer does for every trade:
    /// a logarithm per trade saved.
    pub fn on_tick_with_return(
        &mut self,
        trade: &Trade,
        prev: Option<Fixed>,
        ret: Option<i64>,
        events: &mut Vec<AlertEvent>,
    ) {
        let t = trade.time_ns;
        // A bar that ends at or before this tick is over: its close was the tick before.
        if !self.groups.is_empty() {
            self.close_bars(t.saturating_add(1), events);
        }
        self.windows
            .push_with_return(t, trade.price, trade.size, ret);
        self.last_time = Some(t);
        if self.ids.is_empty() {
            self.remember_sma_signs(trade.price);
            self.ticks += 1;
            return;
        }
        // Alerts whose creation time has come, and whose cooldown has run out, are armed.
        while let Some(&(created, slot)) = self.pending.first() {
            if created > t {
                break;
            }
            self.pending.pop_first();
            self.arm(slot);
        }
        while let Some(&(ready, slot)) = self.cooling.first() {
            if ready > t {
                break;
            }
            self.cooling.pop_first();
            self.arm(slot);
        }

        let (resets, fires) = self.scan(trade.price, prev);

        // Resets first: an alert that resets on this tick cannot also fire on it (the reset
        // needs the condition false), so the order only saves re-examining fresh firings.
        for f in resets.families(self.used_end) {
            let Some(range) = self.reset_range(f, trade.price) else {
                continue;
            };
            if !self.disarmed[f].may_hold(&range) {
                continue;
            }
            self.scratch.clear();
            self.scratch.extend(self.disarmed[f].range(range));
            for i in 0..self.scratch.len() {
                let (level, slot) = self.scratch[i];
                self.disarmed.remove(f, &(level, slot));
                let Some(s) = self.slots[slot as usize].as_mut() else {
                    continue;
                };
                let State::Disarmed { fired } = s.state else {
                    continue;
                };
                let ready = fired.saturating_add(s.rule.cooldown_ns);
                if ready <= t {
                    self.arm(slot);
                } else {
                    s.state = State::Cooling { ready };
                    self.cooling.insert((ready, slot));
                }
            }
        }

        let first = events.len();
        // Swept alerts first: an alert that joins them on this tick (below) has fired on it.
        let swept = if self.swept_len == 0 {
            Families(0)
        } else {
            Families(self.swept_held)
        };
        for f in swept.families(self.used_end) {
            let Some((range, value)) = self.sweep_range(f, trade, prev) else {
                continue;
            };
            let crossed = self.swept[f].range(&range);
            if crossed.is_empty() {
                continue;
            }
            let (swept, slots) = (&self.swept[f], &mut self.slots);
            let mut paused = false;
            for alert in &swept.0[crossed] {
                if !alert.guarded {
                    events.push(fired_as(&alert.id, trade, value));
                    continue;
                }
                let Some(s) = slots[alert.key.1 as usize].as_mut() else {
                    continue;
                };
                if emit(s, fired(s, trade, value), events) {
                    s.state = State::Paused;
                    paused = true;
                }
            }
            if paused {
                // Out of the index: it stays in `ids` only to be removed.
                let before = self.swept[f].0.len();
                self.swept[f].0.retain(|a| {
                    !slots[a.key.1 as usize]
                        .as_ref()
                        .is_some_and(|s| s.state == State::Paused)
                });
                self.swept_len -= before - self.swept[f].0.len();
                self.note_swept(f);
            }
        }
        for f in fires.families(self.used_end) {
            let found = self.fire_range(f, trade, prev);
            let Some(value) = gather(&self.armed[f], found, &mut self.scratch) else {
                continue;
            };
            for i in 0..self.scratch.len() {
                let (level, slot) = self.scratch[i];
                self.armed.remove(f, &(level, slot));
                let Some(s) = self.slots[slot as usize].as_mut() else {
                    continue;
                };
                if emit(s, fired(s, trade, value), events) {
                    // Out of every index: it stays in `ids` only to be removed.
                    s.state = State::Paused;
                    continue;
                }
                let ready = match s.rule.mode {
                    Mode::Once => {
                        if let Some(done) = self.slots[slot as usize].take() {
                            self.ids.remove(done.id.as_str());
                        }
                        self.free.push(slot);
                        continue;
                    }
                    Mode::Rearm if sweeps(&s.rule) => {
                        s.state = State::Swept;
                        self.swept_len += usize::from(self.swept[f].insert(SweptAlert {
                            key: (level, slot),
                            id: s.id.clone(),
                            guarded: s.rule.storm.is_some(),
                        }));
                        self.note_swept(f);
                        continue;
                    }
                    Mode::Rearm => {
                        s.state = State::Disarmed { fired: t };
                        self.disarmed.insert(f, (reset_level(&s.rule), slot));
                        continue;
                    }
                    Mode::OncePerBar => bar_end(t, s.rule.bar_ns.unwrap_or(0).max(1)),
                    Mode::OncePerInterval => t.saturating_add(s.rule.cooldown_ns),
                    // Never armed.
                    Mode::OncePerBarClose => continue,
                };
                s.state = State::Cooling { ready };
                self.cooling.insert((ready, slot));
            }
        }
        if !self.channels.is_empty() {
            self.judge_channels(trade, prev, events);
        }
        if events.len() - first > 1 {
            events[first..].sort_unstable_by(|a, b| a.alert_id.cmp(&b.alert_id));
        }
        if !self.groups.is_empty() {
            self.remember_close(trade, prev);
        }
        for (sign, diff) in self.prev_sma_sign.iter_mut().zip(&self.sma_diff) {
            *sign = diff.map(|(d, _)| d.cmp(&0));
        }
        self.remember_vwap_signs(trade.price);
        self.ticks += 1;
    }

    /// The channel alerts on this tick, one by one: a disarmed one resets when its condition is
    /// false by the hysteresis (and cannot fire on that tick: its condition is false), an armed
    /// one fires when its condition holds. Two edges per alert, and a condition that is the
    /// conjunction of both, do not fit the one-level indexes of the other conditions; a tick
    /// costs time in proportion to its symbol's channel alerts (none without them).
    #[inline(never)]
    fn judge_channels(&mut self, trade: &Trade, prev: Option<Fixed>, events: &mut Vec<AlertEvent>) {
        let t = trade.time_ns;
        let price = trade.price.to_f64();
        let mut i = 0;
        while i < self.channels.len() {
            let slot = self.channels[i];
            let Some(s) = self.slots[slot as usize].as_mut() else {
                self.channels.swap_remove(i);
                continue;
            };
            match s.state {
                State::Disarmed { fired } => {
                    if channel_reset(&s.rule, trade.price) {
                        let ready = fired.saturating_add(s.rule.cooldown_ns);
                        if ready <= t {
                            s.state = State::Armed;
                        } else {
                            s.state = State::Cooling { ready };
                            self.cooling.insert((ready, slot));
                            self.channels.swap_remove(i);
                            continue;
                        }
                    }
                    i += 1;
                    continue;
                }
                State::Armed => {}
                _ => {
                    self.channels.swap_remove(i);
                    continue;
                }
            }
            if !channel_holds(&s.rule, trade.price, prev) {
                i += 1;
                continue;
            }
            if emit(s, fired(s, trade, price), events) {
                s.state = State::Paused;
                self.channels.swap_remove(i);
                continue;
            }
            let ready = match s.rule.mode {
                Mode::Rearm => {
                    s.state = State::Disarmed { fired: t };
                    i += 1;
                    continue;
                }
                Mode::OncePerBar => bar_end(t, s.rule.bar_ns.unwrap_or(0).max(1)),
                Mode::OncePerInterval => t.saturating_add(s.rule.cooldown_ns),
                Mode::Once | Mode::OncePerBarClose => {
                    if let Some(done) = self.slots[slot as usize].take() {
                        self.ids.remove(done.id.as_str());
                    }
                    self.free.push(slot);
                    self.channels.swap_remove(i);
                    continue;
                }
            };
            s.state = State::Cooling { ready };
            self.cooling.insert((ready, slot));
            self.channels.swap_remove(i);
        }
    }

    fn remember_sma_signs(&mut self, price: Fixed) {
        for (w, sign) in self.windows.all_sums().zip(&mut self.prev_sma_sign) {
            *sign = w.diff_from_sma(price).map(|(d, _)| d.cmp(&0));
        }
        self.remember_vwap_signs(price);
    }

    /// The vwap signs and the price of the tick, for the next one.
    fn remember_vwap_signs(&mut self, price: Fixed) {
        self.last_price = Some(price);
        if self.vwap_used {
            for (w, sign) in self.windows.all_sums().zip(&mut self.prev_vwap_sign) {
                *sign = w.diff_from_vwap(price).map(|(d, _)| d.cmp(&0));
            }
        }
    }

    /// The tick's window values (see [`SymbolBook::sma_diff`] and [`SymbolBook::volatility`]),
    /// and in the same pass the families whose disarmed alerts may reset at `price` and those
    /// whose armed alerts may fire on it after `prev` (supersets of those that do): what
    /// [`SymbolBook::reset_range`], [`SymbolBook::fire_range`] and [`Index::may_hold`]
    /// decide, from the indexes' least and greatest levels, without building a range. Most
    /// ticks fire and reset nothing, and this is all they cost beyond the windows.
    ///
    /// Taken before the resets: an alert they arm cannot fire on this tick (a reset needs the
    /// condition false), so the firing set need not see it.
    fn scan(&mut self, price: Fixed, prev: Option<Fixed>) -> (Families, Families) {
        let windows = self.windows.len();
        if self.armed.len() > 64 {
            for (wi, w) in self.windows.all_sums().enumerate() {
                self.sma_diff[wi] = w.diff_from_sma(price);
                self.volatility[wi] = if w.returns() < 2 {
                    Vol::Undefined
                } else {
                    Vol::Lazy(w.volatility_squares())
                };
            }
            return (Families::ALL, Families::ALL);
        }
        let (armed, disarmed) = (self.armed.held, self.disarmed.held);
        let p = price.units();
        let (mut fire, mut reset) = (Families(0), Families(0));
        if (armed | disarmed) & PRICE_FAMILIES != 0 {
            let q = prev.map(Fixed::units);
            for f in PRICE_ABOVE..VOL {
                let (a, d) = (&self.armed[f], &self.disarmed[f]);
                fire.mark(
                    f,
                    armed >> f & 1 == 1 && price_may_fire(f, a.lo, a.hi, p, q),
                );
                reset.mark(
                    f,
                    disarmed >> f & 1 == 1 && price_may_reset(f, d.lo, d.hi, p),
                );
            }
        }
        // The per-window state as slices, taken once: indexing a `SmallVec` tests where it
        // lives at every access.
        let (armed_ix, disarmed_ix) = (&self.armed, &self.disarmed);
        let per_window = self
            .windows
            .all_sums()
            .zip(self.volatility.as_mut_slice())
            .zip(self.sma_diff.as_mut_slice())
            .zip(self.prev_sma_sign.as_slice());
        for (wi, (((w, volatility), sma_diff), prev_sign)) in per_window.enumerate() {
            let f = windowed_family(wi, 0, windows);
            // volatility: fires over the level, resets at or under it (none is under every one)
            let vol = 1u64 << f;
            *volatility = if (armed | disarmed) & vol == 0 {
                Vol::Settled
            } else if w.returns() < 2 {
                reset.mark(f, disarmed & vol != 0);
                Vol::Undefined
            } else {
                let squares = w.volatility_squares();
                let against = |level| squares.and_then(|q| q.against(level));
                fire.mark(
                    f,
                    armed & vol != 0 && against(armed_ix[f].lo) != Some(Ordering::Less),
                );
                reset.mark(
                    f,
                    disarmed & vol != 0 && against(disarmed_ix[f].hi) != Some(Ordering::Greater),
                );
                Vol::Lazy(squares)
            };
            // the sma crosses: fire on a cross; reset when the least level is at most
            // floor(±d / n), see `up_to_floor_div`
            let diff = w.diff_from_sma(price);
            *sma_diff = diff;
            if (armed | disarmed) >> (f + 1) & 0b11 == 0 {
                continue;
            }
            let Some((d, n)) = diff else {
                continue;
            };
            if let Some(before) = *prev_sign {
                fire.mark(
                    f + 1,
                    armed >> (f + 1) & 1 == 1 && crossed(true, before, d).is_some(),
                );
                fire.mark(
                    f + 2,
                    armed >> (f + 2) & 1 == 1 && crossed(false, before, d).is_some(),
                );
            }
            reset.mark(
                f + 1,
                disarmed >> (f + 1) & 1 == 1 && at_least(-d, disarmed_ix[f + 1].lo, n),
            );
            reset.mark(
                f + 2,
                disarmed >> (f + 2) & 1 == 1 && at_least(d, disarmed_ix[f + 2].lo, n),
            );
        }
        // The later conditions' families as they are.
        let later = !0u64 << windowed_family(0, FIRST_BLOCK, windows).min(63);
        fire.0 |= armed & later;
        reset.0 |= disarmed & later;
        (reset, fire)
    }

    /// The disarmed alerts of family `f` that this tick resets.
    fn reset_range(&self, f: usize, price: Fixed) -> Option<Range> {
        let p = price.units();
        Some(match f {
            // price <= threshold - hysteresis
            PRICE_ABOVE | CROSSES_ABOVE => from(p),
            // price >= threshold + hysteresis
            PRICE_BELOW | CROSSES_BELOW => (Bound::Unbounded, Bound::Included((p, u32::MAX))),
            _ => {
                let (wi, kind) = window_kind(f, self.windows.len());
                let w = &self.windows.get(wi);
                match kind {
                    // volatility <= threshold - hysteresis; no volatility is below every level
                    0 => match self.volatility[wi] {
                        // The levels at or over v: none when the greatest is under it.
                        Vol::Lazy(_) => {
                            let v = w.volatility()?;
                            let (_, greatest) = self.disarmed[f].bounds()?;
                            if (greatest as f64 / SCALE as f64) < v {
                                return None;
                            }
                            from(float_boundary(v))
                        }
                        Vol::Settled => return None,
                        Vol::Undefined => (Bound::Unbounded, Bound::Unbounded),
                    },
                    // price - sma <= -hysteresis, i.e. hysteresis <= floor((Σp - n·price) / n)
                    1 => {
                        let (d, n) = self.sma_diff[wi]?;
                        up_to_floor_div(&self.disarmed[f], -d, n)?
                    }
                    // price - sma >= hysteresis
                    2 => {
                        let (d, n) = self.sma_diff[wi]?;
                        up_to_floor_div(&self.disarmed[f], d, n)?
                    }
                    kind => later_reset_range(w, kind, price)?,
                }
            }
        })
    }

    /// The swept alerts of family `f` that this tick fires (see [`sweeps`]), and the
    /// condition's value: those whose condition was false at the tick before and is true now.
    fn sweep_range(&self, f: usize, trade: &Trade, prev: Option<Fixed>) -> Option<(Range, f64)> {
        match f {
            // prev <= threshold < price, as a cross above.
            PRICE_ABOVE => self.fire_range(CROSSES_ABOVE, trade, prev),
            // price < threshold <= prev, as a cross below.
            PRICE_BELOW => self.fire_range(CROSSES_BELOW, trade, prev),
            // Crosses are already the change from false to true.
            _ => self.fire_range(f, trade, prev),
        }
    }

    /// The armed alerts of family `f` that this tick fires, and the condition's value.
    fn fire_range(&self, f: usize, trade: &Trade, prev: Option<Fixed>) -> Option<(Range, f64)> {
        let p = trade.price.units();
        let price = trade.price.to_f64();
        Some(match f {
            PRICE_ABOVE => (below(p), price),
            PRICE_BELOW => (from(p.saturating_add(1)), price),
            // prev <= threshold < price
            CROSSES_ABOVE => (between(prev?.units(), p)?, price),
            // price < threshold <= prev
            CROSSES_BELOW => (
                between(p.saturating_add(1), prev?.units().saturating_add(1))?,
                price,
            ),
            _ => {
                let (wi, kind) = window_kind(f, self.windows.len());
                let w = &self.windows.get(wi);
                match kind {
                    0 => {
                        // The levels under v: none when the least is not.
                        if !matches!(self.volatility[wi], Vol::Lazy(_)) {
                            return None;
                        }
                        let v = w.volatility()?;
                        let (least, _) = self.armed[f].bounds()?;
                        if (least as f64 / SCALE as f64) >= v {
                            return None;
                        }
                        (below(float_boundary(v)), v)
                    }
                    kind @ (1 | 2) => {
                        let (d, _) = self.sma_diff[wi]?;
                        crossed(kind == 1, self.prev_sma_sign[wi]?, d)?;
                        ((Bound::Unbounded, Bound::Unbounded), w.sma()?)
                    }
                    kind => later_fire_range(w, kind, trade.price, self.prev_vwap_sign[wi])?,
                }
            }
        })
    }
}
