use std::cmp::Ordering;
use std::collections::VecDeque;

use super::agg::sample_stddev;
use super::{RETURN_SCALE, quantize_log_return};
use crate::decimal::{Fixed, SCALE};

/// A tick without a log return, in a window's ring (a quantized log return is within
/// about ±5·10¹³).
const NO_RETURN: i64 = i64::MIN;

/// A window's volatility as `sqrt(num / pairs) / 10¹²`, exact integers: what
/// [`Sums::volatility`] rounds to a float.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct VolatilitySquares {
    num: u128,
    pairs: u64,
}

impl VolatilitySquares {
    /// The volatility against `level / 10⁸`: `Some(Less)` or `Some(Greater)` when it is under
    /// or over the level by far more than [`Sums::volatility`]'s floats can err (so that
    /// the float comparison decides the same), `None` when too close to tell or for a level
    /// too large for the one multiplication this takes. An alert book asks on every tick, and
    /// most ticks are far from every level: a square root, a division and a 128-bit
    /// conversion saved.
    #[inline]
    pub(crate) fn against(self, level: i64) -> Option<Ordering> {
        if level < 0 {
            return Some(Ordering::Greater);
        }
        if level >= 429_000 {
            return None;
        }
        // Under the level exactly when num < 10⁸ level² pairs; the product fits in 126 bits.
        let level = level as u64;
        let bound = u128::from(100_000_000 * level * level) * u128::from(self.pairs);
        // A margin of 2⁻³⁸ of the squares, where the floats err by less than 2⁻⁴⁸.
        let margin = (bound >> 38) + 1;
        if self.num < bound.saturating_sub(margin) {
            Some(Ordering::Less)
        } else if self.num > bound + margin {
            Some(Ordering::Greater)
        } else {
            None
        }
    }
}

/// A tick in a window's ring: time, price, size and log return ([`NO_RETURN`] for none: 32
/// bytes a tick, where an `Option` would take 40).
type Entry = (u64, i64, i64, i64);

/// The exact sums of the ticks a window holds, and what they give: the part of [`TickWindow`]
/// that does not depend on where the ticks are kept (an alert book keeps several windows'
/// ticks in one ring). Sums are exact integers, as in [`super::Agg`].
#[derive(Clone, Debug)]
pub struct Sums {
    count: i64,
    sum_p: i128,
    sum_q: i128,
    /// Σ price × size (10⁻¹⁶ units), wrapping: exact modulo 2¹²⁸, so exact whenever the true
    /// sum fits, which `sum_pq_bound` tells.
    sum_pq: i128,
    /// Σ |price × size| as a float: a bound on `sum_pq`'s magnitude.
    sum_pq_bound: f64,
    /// Whether the price × size sums are kept (see [`TickWindow::without_vwap`]).
    weighted: bool,
    n_ret: i64,
    sum_r: i128,
    sum_r2: i128,
}

impl Sums {
    fn new(weighted: bool) -> Sums {
        Sums {
            count: 0,
            sum_p: 0,
            sum_q: 0,
            sum_pq: 0,
            sum_pq_bound: 0.0,
            weighted,
            n_ret: 0,
            sum_r: 0,
            sum_r2: 0,
        }
    }

    #[inline(always)]
    fn add(&mut self, e: Entry) {
        self.add_unweighted(e);
        if self.weighted {
            let (pq, bound) = weight(e);
            self.add_weight(pq, bound);
        }
    }

    /// [`Sums::add`] but for the price × size sums.
    #[inline(always)]
    fn add_unweighted(&mut self, (_, p, q, r): Entry) {
        self.count += 1;
        self.sum_p += i128::from(p);
        self.sum_q += i128::from(q);
        if r != NO_RETURN {
            self.n_ret += 1;
            self.sum_r += i128::from(r);
            self.sum_r2 += i128::from(r) * i128::from(r);
        }
    }

    /// The price × size sums' part of [`Sums::add`], `weight(e)` given.
    #[inline(always)]
    fn add_weight(&mut self, pq: i128, bound: f64) {
        self.sum_pq = self.sum_pq.wrapping_add(pq);
        self.sum_pq_bound += bound;
    }

    #[inline(always)]
    fn sub(&mut self, (_, p, q, r): Entry) {
        self.count -= 1;
        self.sum_p -= i128::from(p);
        self.sum_q -= i128::from(q);
        if self.weighted {
            let pq = i128::from(p) * i128::from(q);
            self.sum_pq = self.sum_pq.wrapping_sub(pq);
            self.sum_pq_bound -= (pq as f64).abs();
        }
        if r != NO_RETURN {
            self.n_ret -= 1;
            self.sum_r -= i128::from(r);
            self.sum_r2 -= i128::from(r) * i128::from(r);
        }
    }

    /// Keeps the vwap's sums from now on, computed over `ticks`, the ticks the window holds.
    fn track_vwap<'a>(&mut self, ticks: impl Iterator<Item = &'a Entry>) {
        if self.weighted {
            return;
        }
        self.weighted = true;
        for &(_, p, q, _) in ticks {
            let pq = i128::from(p) * i128::from(q);
            self.sum_pq = self.sum_pq.wrapping_add(pq);
            self.sum_pq_bound += (pq as f64).abs();
        }
    }

    /// Number of log returns in the window (ticks with a predecessor).
    pub(crate) fn returns(&self) -> i64 {
        self.n_ret
    }

    /// Number of ticks in the window.
    pub fn count(&self) -> i64 {
        self.count
    }

    /// The window's volume, Σ size, exactly, in 10⁻⁸ units (it may exceed what a [`Fixed`]
    /// holds).
    pub fn volume(&self) -> i128 {
        self.sum_q
    }

    /// Σ price × size exactly (10⁻¹⁶ units), and Σ size (10⁻⁸ units), while the window has a
    /// volume and the sum is safely within 128 bits (far beyond any market's: `None` beyond).
    fn vwap_sums(&self) -> Option<(i128, i128)> {
        if !self.weighted {
            return None;
        }
        // The float bound drifts by rounding as ticks come and go; the margin covers it.
        (self.sum_q > 0 && self.sum_pq_bound.max(0.0) < 1e37).then_some((self.sum_pq, self.sum_q))
    }

    /// Volume-weighted mean price, `None` without volume (or without the vwap's sums kept).
    pub fn vwap(&self) -> Option<f64> {
        let (pq, q) = self.vwap_sums()?;
        Some(pq as f64 / q as f64 / SCALE as f64)
    }

    /// `price - vwap` exactly, as the fraction `(price·Σq − Σpq, Σq)` in 10⁻⁸ units; `None`
    /// without volume, or where the product would not fit in 128 bits.
    pub fn diff_from_vwap(&self, price: Fixed) -> Option<(i128, i128)> {
        let (pq, q) = self.vwap_sums()?;
        let num = i128::from(price.units()).checked_mul(q)?.checked_sub(pq)?;
        Some((num, q))
    }

    /// Mean price, `None` when empty.
    pub fn sma(&self) -> Option<f64> {
        let n = self.count;
        (n > 0).then(|| self.sum_p as f64 / n as f64 / SCALE as f64)
    }

    /// `price - sma` exactly, as the fraction `(numerator, n)` in 10⁻⁸ units: `n·price − Σp`.
    /// `None` when empty.
    pub fn diff_from_sma(&self, price: Fixed) -> Option<(i128, i128)> {
        let n = i128::from(self.count);
        (n > 0).then(|| (n * i128::from(price.units()) - self.sum_p, n))
    }

    /// Sample standard deviation of the log returns in the window (the analytics contract's
    /// volatility), `None` when fewer than 2 returns.
    pub fn volatility(&self) -> Option<f64> {
        sample_stddev(self.n_ret, self.sum_r, self.sum_r2).map(|s| s / RETURN_SCALE)
    }

    /// What it takes to compare the volatility with levels without working it out, where that
    /// is cheap and sure (see [`VolatilitySquares::against`]); `None` with fewer than 2 returns
    /// or sums too large for it.
    #[inline]
    pub(crate) fn volatility_squares(&self) -> Option<VolatilitySquares> {
        let n = self.n_ret;
        if !(2..1 << 31).contains(&n) || !(0..1 << 95).contains(&self.sum_r2) {
            return None;
        }
        let sum = i64::try_from(self.sum_r).ok()?;
        // Within the bounds checked, neither product can overflow.
        let num = i128::from(n) * self.sum_r2 - i128::from(sum) * i128::from(sum);
        Some(VolatilitySquares {
            num: u128::try_from(num).ok()?,
            pairs: (n * (n - 1)) as u64,
        })
    }
}

/// A tick's price × size, and its magnitude as a float (what the vwap's sums add).
#[inline(always)]
fn weight((_, p, q, _): Entry) -> (i128, f64) {
    let pq = i128::from(p) * i128::from(q);
    (pq, (pq as f64).abs())
}

/// The tick of `time_ns` with `price`, `size` and its quantized log return, as a ring keeps it.
#[inline(always)]
fn entry(time_ns: u64, price: Fixed, size: Fixed, ret: Option<i64>) -> Entry {
    (
        time_ns,
        price.units(),
        size.units(),
        ret.unwrap_or(NO_RETURN),
    )
}

/// The ticks of one symbol within `W` of the latest one, ending at (and including) that tick:
/// what an alert sees "at the tick's time". Its [`Sums`] give the values.
///
/// ```
/// use gostocks_core::indicators::TickWindow;
/// use gostocks_core::Fixed;
/// let p = |s: &str| s.parse::<Fixed>().unwrap();
/// let mut w = TickWindow::new(10);
/// w.push(1, p("10"), p("3"), None);
/// w.push(5, p("12"), p("1.5"), Some(p("10")));
/// assert_eq!(w.sma(), Some(11.0));
/// // At t = 11 the tick of t = 1 has left (t' <= t - W), the one of t = 5 has not.
/// w.push(11, p("14"), p("2"), Some(p("12")));
/// assert_eq!((w.count(), w.sma()), (2, Some(13.0)));
/// assert_eq!(w.volume(), i128::from(p("3.5").units()));
/// assert!(w.volatility().is_some());
/// ```
#[derive(Clone, Debug)]
pub struct TickWindow {
    span: u64,
    ticks: VecDeque<Entry>,
    sums: Sums,
}

impl std::ops::Deref for TickWindow {
    type Target = Sums;

    fn deref(&self) -> &Sums {
        &self.sums
    }
}

impl TickWindow {
    /// An empty window of `span` ns.
    pub fn new(span: u64) -> TickWindow {
        TickWindow {
            span,
            ticks: VecDeque::new(),
            sums: Sums::new(true),
        }
    }

    /// An empty window of `span` ns that does not keep the vwap's sums until
    /// [`TickWindow::track_vwap`]: a 128-bit product per tick saved where no one asks.
    pub fn without_vwap(span: u64) -> TickWindow {
        TickWindow {
            span,
            ticks: VecDeque::new(),
            sums: Sums::new(false),
        }
    }

    /// Adds the next tick of the symbol (in `(t, seq)` order: its price and size) with its
    /// predecessor's price, and drops the ticks at or before `t - W`.
    pub fn push(&mut self, time_ns: u64, price: Fixed, size: Fixed, prev: Option<Fixed>) {
        let ret = prev.map(|p| quantize_log_return(price, p));
        self.push_with_return(time_ns, price, size, ret);
    }

    /// [`TickWindow::push`] with the tick's quantized log return already computed
    /// ([`quantize_log_return`] of its price and its predecessor's): windows of several spans
    /// over one symbol's ticks take the same return, and a logarithm per window and tick cost
    /// more than the rest of the push.
    #[inline(always)]
    pub fn push_with_return(&mut self, time_ns: u64, price: Fixed, size: Fixed, ret: Option<i64>) {
        if time_ns >= self.span {
            let horizon = time_ns - self.span;
            while let Some(&old) = self.ticks.front() {
                if old.0 > horizon {
                    break;
                }
                self.ticks.pop_front();
                self.sums.sub(old);
            }
        }
        let e = entry(time_ns, price, size, ret);
        self.ticks.push_back(e);
        self.sums.add(e);
    }

    /// The price of the window's earliest tick, `None` when empty.
    pub fn first_price(&self) -> Option<Fixed> {
        self.ticks.front().map(|&(_, p, _, _)| Fixed::from_units(p))
    }

    /// Keeps the vwap's sums from now on, computed over the ticks the window holds.
    pub fn track_vwap(&mut self) {
        self.sums.track_vwap(self.ticks.iter());
    }
}

/// A window of [`TickWindows`]: its span, where its ticks start in the ring, and their sums.
#[derive(Clone, Debug)]
struct Part {
    span: u64,
    start: usize,
    sums: Sums,
}

/// Several [`TickWindow`]s of different spans over one symbol's ticks, in one ring: each tick is
/// stored once (an alert book keeps a window per configured span, and a second copy of every
/// tick, pushed and popped, cost as much as the sums).
#[derive(Clone, Debug)]
pub(crate) struct TickWindows {
    /// The ticks, the earliest first: from the least window start on, those of the longest window. A vector with
    /// a moving head rather than a queue: a window reads its earliest tick on every push, and
    /// an index into a vector is one instruction where a queue's wraps. What no window holds
    /// is cut off once it is half of the vector (each tick is moved at most once on average).
    ticks: Vec<Entry>,
    /// In the struct up to two windows (see `PerWindow` in the alert book).
    parts: smallvec::SmallVec<[Part; 2]>,
    /// Whether the vwap's sums are kept (in every window, or in none).
    weighted: bool,
}

/// One window of a [`TickWindows`]: its sums, and its earliest tick.
pub(crate) struct WindowView<'a> {
    sums: &'a Sums,
    first: Option<&'a Entry>,
}

impl std::ops::Deref for WindowView<'_> {
    type Target = Sums;

    fn deref(&self) -> &Sums {
        self.sums
    }
}

impl WindowView<'_> {
    /// The price of the window's earliest tick, `None` when empty.
    pub(crate) fn first_price(&self) -> Option<Fixed> {
        self.first.map(|&(_, p, _, _)| Fixed::from_units(p))
    }
}

impl TickWindows {
    /// Empty windows of `spans` ns, without the vwap's sums until
    /// [`TickWindows::track_vwap`].
    pub(crate) fn without_vwap(spans: &[u64]) -> TickWindows {
        TickWindows {
            ticks: Vec::new(),
            weighted: false,
            parts: spans
                .iter()
                .map(|&span| Part {
                    span,
                    start: 0,
                    sums: Sums::new(false),
                })
                .collect(),
        }
    }

    /// How many windows.
    pub(crate) fn len(&self) -> usize {
        self.parts.len()
    }

    /// Window `i`.
    pub(crate) fn get(&self, i: usize) -> WindowView<'_> {
        let part = &self.parts[i];
        WindowView {
            sums: &part.sums,
            first: self.ticks.get(part.start),
        }
    }

    /// Every window's sums, in order.
    #[inline]
    pub(crate) fn all_sums(&self) -> impl Iterator<Item = &Sums> {
        self.parts.iter().map(|p| &p.sums)
    }

    /// Every window, in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = WindowView<'_>> {
        (0..self.len()).map(|i| self.get(i))
    }

    /// [`TickWindow::push_with_return`] for every window.
    #[inline(always)]
    pub(crate) fn push_with_return(
        &mut self,
        time_ns: u64,
        price: Fixed,
        size: Fixed,
        ret: Option<i64>,
    ) {
        // The windows as a slice, taken once (see `PerWindow` in the alert book).
        let TickWindows {
            ticks,
            parts,
            weighted,
        } = self;
        let parts = parts.as_mut_slice();
        let mut keep = ticks.len();
        for part in parts.iter_mut() {
            if time_ns >= part.span {
                let horizon = time_ns - part.span;
                while let Some(&old) = ticks.get(part.start) {
                    if old.0 > horizon {
                        break;
                    }
                    part.sums.sub(old);
                    part.start += 1;
                }
            }
            keep = keep.min(part.start);
        }
        if keep >= 1024 && keep * 2 >= ticks.len() {
            ticks.drain(..keep);
            for part in parts.iter_mut() {
                part.start -= keep;
            }
        }
        let e = entry(time_ns, price, size, ret);
        ticks.push(e);
        for part in parts.iter_mut() {
            part.sums.add_unweighted(e);
        }
        // Apart, and only where kept: in the loop the compiler works the product's float out
        // (a library call for 128 bits) ahead of the test, for every tick.
        if *weighted {
            let (pq, bound) = weight(e);
            for part in parts.iter_mut() {
                part.sums.add_weight(pq, bound);
            }
        }
    }

    /// [`TickWindow::track_vwap`] for every window.
    pub(crate) fn track_vwap(&mut self) {
        self.weighted = true;
        for part in &mut self.parts {
            part.sums.track_vwap(self.ticks[part.start..].iter());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// Where the integer comparison answers, the float comparison of the volatility with the
    /// level answers the same, at levels far from it and right next to it.
    #[test]
    fn volatility_against_agrees_with_the_floats() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let mut answered = 0;
        for _ in 0..3_000 {
            let mut w = TickWindow::without_vwap(u64::MAX);
            let spread: i64 = rng.random_range(1..1_000_000_000);
            for t in 0..rng.random_range(1..60u64) {
                let r = rng.random_range(-spread..=spread);
                w.push_with_return(t, Fixed::from_units(1), Fixed::from_units(1), Some(r));
            }
            let Some(v) = w.volatility() else {
                assert_eq!(w.volatility_squares(), None);
                continue;
            };
            let exact = (v * SCALE as f64) as i64;
            for level in [
                0,
                1,
                exact / 2,
                exact - 1,
                exact,
                exact + 1,
                exact * 2,
                rng.random_range(0..500_000),
                -5,
            ] {
                let float = (level as f64 / SCALE as f64)
                    .partial_cmp(&v)
                    .unwrap()
                    .reverse();
                match w.volatility_squares().and_then(|q| q.against(level)) {
                    Some(Ordering::Less) => assert_eq!(float, Ordering::Less, "{level} {v}"),
                    Some(Ordering::Greater) => {
                        assert_eq!(float, Ordering::Greater, "{level} {v}")
                    }
                    Some(Ordering::Equal) => unreachable!(),
                    None => continue,
                }
                answered += 1;
            }
        }
        assert!(answered > 10_000, "{answered}");
    }

    /// Windows sharing one ring agree with windows of their own, tick by tick, past many
    /// cuts of the ring, with the vwap's sums taken up midway.
    #[test]
    fn shared_windows_agree_with_their_own() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let spans = [7, 60, 1, 300];
        let mut shared = TickWindows::without_vwap(&spans);
        let mut own: Vec<TickWindow> = spans.iter().map(|&s| TickWindow::without_vwap(s)).collect();
        let mut t = 0u64;
        for i in 0..20_000 {
            t += rng.random_range(0..3);
            let price = Fixed::from_units(rng.random_range(1..1_000_000));
            let size = Fixed::from_units(rng.random_range(1..1_000));
            let ret = rng
                .random_bool(0.9)
                .then(|| rng.random_range(-1_000_000..1_000_000));
            if i == 9_000 {
                shared.track_vwap();
                own.iter_mut().for_each(TickWindow::track_vwap);
            }
            shared.push_with_return(t, price, size, ret);
            for (w, view) in own.iter_mut().zip(shared.iter()) {
                w.push_with_return(t, price, size, ret);
                assert_eq!(view.count(), w.count());
                assert_eq!(view.first_price(), w.first_price());
                assert_eq!(view.diff_from_sma(price), w.diff_from_sma(price));
                assert_eq!(view.diff_from_vwap(price), w.diff_from_vwap(price));
                assert_eq!(view.volatility_squares(), w.volatility_squares());
                assert_eq!(view.volume(), w.volume());
            }
        }
        assert!(
            shared.ticks.len() < 4 * 1024,
            "the ring is cut: {}",
            shared.ticks.len()
        );
    }
}
