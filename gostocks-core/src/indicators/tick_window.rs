use std::cmp::Ordering;
use std::collections::VecDeque;

use super::agg::sample_stddev;
use super::{RETURN_SCALE, quantize_log_return};
use crate::decimal::{Fixed, SCALE};

/// A tick without a log return, in [`TickWindow`]'s ring (a quantized log return is within
/// about ±5·10¹³).
const NO_RETURN: i64 = i64::MIN;

/// A window's volatility as `sqrt(num / pairs) / 10¹²`, exact integers: what
/// [`TickWindow::volatility`] rounds to a float.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct VolatilitySquares {
    num: u128,
    pairs: u64,
}

impl VolatilitySquares {
    /// The volatility against `level / 10⁸`: `Some(Less)` or `Some(Greater)` when it is under
    /// or over the level by far more than [`TickWindow::volatility`]'s floats can err (so that
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

/// A tick in [`TickWindow`]'s ring: time, price, size and log return.
type Entry = (u64, i64, i64, i64);

/// The ticks of one symbol within `W` of the latest one, ending at (and including) that tick:
/// what an alert sees "at the tick's time". Sums are exact integers, as in [`super::Agg`].
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
    /// Each tick's time, price and size (10⁻⁸ units) and log return ([`NO_RETURN`] for none:
    /// 32 bytes a tick, where an `Option` would take 40).
    ticks: VecDeque<Entry>,
    sum_p: i128,
    sum_q: i128,
    /// Σ price × size (10⁻¹⁶ units), wrapping: exact modulo 2¹²⁸, so exact whenever the true
    /// sum fits, which [`TickWindow::sum_pq_bound`] tells.
    sum_pq: i128,
    /// Σ |price × size| as a float: a bound on `sum_pq`'s magnitude.
    sum_pq_bound: f64,
    /// Whether the price × size sums are kept (see [`TickWindow::without_vwap`]).
    weighted: bool,
    n_ret: i64,
    sum_r: i128,
    sum_r2: i128,
}

impl TickWindow {
    /// An empty window of `span` ns.
    pub fn new(span: u64) -> TickWindow {
        TickWindow {
            weighted: true,
            ..TickWindow::without_vwap(span)
        }
    }

    /// An empty window of `span` ns that does not keep the vwap's sums until
    /// [`TickWindow::track_vwap`]: a 128-bit product per tick saved where no one asks.
    pub fn without_vwap(span: u64) -> TickWindow {
        TickWindow {
            weighted: false,
            span,
            ticks: VecDeque::new(),
            sum_p: 0,
            sum_q: 0,
            sum_pq: 0,
            sum_pq_bound: 0.0,
            n_ret: 0,
            sum_r: 0,
            sum_r2: 0,
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
        let horizon = time_ns.saturating_sub(self.span);
        while let Some(&(t, p, q, r)) = self.ticks.front() {
            if t > horizon || time_ns < self.span {
                break;
            }
            self.ticks.pop_front();
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
        let ret = ret.filter(|&r| r != NO_RETURN);
        self.ticks.push_back((
            time_ns,
            price.units(),
            size.units(),
            ret.unwrap_or(NO_RETURN),
        ));
        self.sum_p += i128::from(price.units());
        self.sum_q += i128::from(size.units());
        if self.weighted {
            let pq = i128::from(price.units()) * i128::from(size.units());
            self.sum_pq = self.sum_pq.wrapping_add(pq);
            self.sum_pq_bound += (pq as f64).abs();
        }
        if let Some(r) = ret {
            self.n_ret += 1;
            self.sum_r += i128::from(r);
            self.sum_r2 += i128::from(r) * i128::from(r);
        }
    }

    /// Number of log returns in the window (ticks with a predecessor).
    pub(crate) fn returns(&self) -> i64 {
        self.n_ret
    }

    /// Number of ticks in the window.
    pub fn count(&self) -> i64 {
        self.ticks.len() as i64
    }

    /// The price of the window's earliest tick, `None` when empty.
    pub fn first_price(&self) -> Option<Fixed> {
        self.ticks.front().map(|&(_, p, _, _)| Fixed::from_units(p))
    }

    /// The window's volume, Σ size, exactly, in 10⁻⁸ units (it may exceed what a [`Fixed`]
    /// holds).
    pub fn volume(&self) -> i128 {
        self.sum_q
    }

    /// Σ price × size exactly (10⁻¹⁶ units), and Σ size (10⁻⁸ units), while the window has a
    /// volume and the sum is safely within 128 bits (far beyond any market's: `None` beyond).
    /// Keeps the vwap's sums from now on, computed over the ticks the window holds.
    pub fn track_vwap(&mut self) {
        if self.weighted {
            return;
        }
        self.weighted = true;
        for &(_, p, q, _) in &self.ticks {
            let pq = i128::from(p) * i128::from(q);
            self.sum_pq = self.sum_pq.wrapping_add(pq);
            self.sum_pq_bound += (pq as f64).abs();
        }
    }

    fn vwap_sums(&self) -> Option<(i128, i128)> {
        if !self.weighted {
            return None;
        }
        // The float bound drifts by rounding as ticks come and go; the margin covers it.
        (self.sum_q > 0 && self.sum_pq_bound.max(0.0) < 1e37).then_some((self.sum_pq, self.sum_q))
    }

    /// Volume-weighted mean price, `None` without volume.
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
        let n = self.count();
        (n > 0).then(|| self.sum_p as f64 / n as f64 / SCALE as f64)
    }

    /// `price - sma` exactly, as the fraction `(numerator, n)` in 10⁻⁸ units: `n·price − Σp`.
    /// `None` when empty.
    pub fn diff_from_sma(&self, price: Fixed) -> Option<(i128, i128)> {
        let n = i128::from(self.count());
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
}
