use differential_dataflow::difference::{Abelian, IsZero, Monoid, Semigroup};
use ethnum::I256;
use serde::{Deserialize, Serialize};

use crate::decimal::{Fixed, SCALE};

/// Log returns are carried as integers of 10⁻¹² (a return of 1 bp is 100,000,000 units).
pub const RETURN_SCALE: f64 = 1e12;

/// `ln(price / prev)` quantized to [`RETURN_SCALE`] units, rounding half away from zero.
///
/// Quantizing once, where the return is born, is what lets sums of returns add and retract
/// exactly; the rounding error is below 5·10⁻¹³ per return.
///
/// ```
/// use gostocks_core::indicators::quantize_log_return;
/// use gostocks_core::Fixed;
/// let r = quantize_log_return("101".parse::<Fixed>().unwrap(), "100".parse().unwrap());
/// assert_eq!(r, 9_950_330_853);
/// ```
pub fn quantize_log_return(price: Fixed, prev: Fixed) -> i64 {
    round_half_away(((price.units() as f64 / prev.units() as f64).ln()) * RETURN_SCALE)
}

/// `x.round() as i64` without the library call that `round` is on baseline x86-64: the
/// truncation is one instruction, and `x - trunc(x)` is exact (Sterbenz's lemma for
/// `|x| >= 1`; the fraction is `x` itself below that and zero from 2⁵² on), so comparing it
/// with one half decides as `round` does.
#[inline]
fn round_half_away(x: f64) -> i64 {
    let whole = x as i64;
    let fraction = x - whole as f64;
    if fraction >= 0.5 {
        whole.saturating_add(1)
    } else if fraction <= -0.5 {
        whole.saturating_sub(1)
    } else {
        whole
    }
}

/// Exact running sums over a set of ticks: an abelian group, so it can be a differential
/// `diff` that is added when a tick enters a window and negated when it leaves.
///
/// ```
/// use gostocks_core::indicators::Agg;
/// use gostocks_core::Fixed;
/// let p = |s: &str| s.parse::<Fixed>().unwrap();
/// let mut w = Agg::tick(p("10"), p("1"), 1, None);
/// w += Agg::tick(p("12"), p("3"), 2, Some(5));
/// assert_eq!(w.count, 2);
/// assert_eq!(w.sma(), Some(11.0));
/// assert_eq!(w.vwap(), Some(11.5));
/// w -= Agg::tick(p("12"), p("3"), 2, Some(5));
/// w -= Agg::tick(p("10"), p("1"), 1, None);
/// assert_eq!(w, Agg::default());
/// ```
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[non_exhaustive]
pub struct Agg {
    /// Number of ticks.
    pub count: i64,
    /// Sum of sizes, in 10⁻⁸ units.
    pub volume: i128,
    /// Sum of prices, in 10⁻⁸ units.
    pub sum_p: i128,
    /// Sum of squared prices, in 10⁻¹⁶ units.
    pub sum_p2: i128,
    /// Sum of price × size, in 10⁻¹⁶ units.
    pub sum_pv: i128,
    /// Sum of event times: makes every change of a window's content visible in the aggregate,
    /// even when ticks of equal price and size enter and leave at once.
    pub sum_t: i128,
    /// Number of log returns.
    pub n_ret: i64,
    /// Sum of log returns, in [`RETURN_SCALE`] units.
    pub sum_r: i128,
    /// Sum of squared log returns, in [`RETURN_SCALE`]² units.
    pub sum_r2: i128,
}

impl Agg {
    /// The aggregate of one tick, with its quantized log return if it has a predecessor.
    pub fn tick(price: Fixed, size: Fixed, time_ns: u64, ret: Option<i64>) -> Agg {
        let p = i128::from(price.units());
        let v = i128::from(size.units());
        let (n_ret, r) = match ret {
            Some(r) => (1, i128::from(r)),
            None => (0, 0),
        };
        Agg {
            count: 1,
            volume: v,
            sum_p: p,
            sum_p2: p * p,
            sum_pv: p * v,
            sum_t: i128::from(time_ns),
            n_ret,
            sum_r: r,
            sum_r2: r * r,
        }
    }

    /// Mean price, `None` when empty.
    pub fn sma(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum_p as f64 / self.count as f64 / SCALE as f64)
    }

    /// Volume-weighted average price, `None` when empty.
    pub fn vwap(&self) -> Option<f64> {
        (self.volume > 0).then(|| self.sum_pv as f64 / self.volume as f64 / SCALE as f64)
    }

    /// Total size as an exact decimal.
    pub fn volume_fixed(&self) -> Fixed {
        Fixed::from_units(i64::try_from(self.volume).unwrap_or(i64::MAX))
    }

    /// Sample standard deviation of prices (n − 1), `None` when fewer than 2 ticks.
    pub fn stddev(&self) -> Option<f64> {
        sample_stddev(self.count, self.sum_p, self.sum_p2).map(|s| s / SCALE as f64)
    }

    /// Sample standard deviation of log returns, `None` when fewer than 2 returns.
    pub fn volatility(&self) -> Option<f64> {
        sample_stddev(self.n_ret, self.sum_r, self.sum_r2).map(|s| s / RETURN_SCALE)
    }
}

/// `sqrt((n Σx² − (Σx)²) / (n (n − 1)))` with the numerator computed exactly in 256 bits, so
/// there is no cancellation however large the mean is against the spread.
pub(crate) fn sample_stddev(n: i64, sum: i128, sum2: i128) -> Option<f64> {
    if n < 2 {
        return None;
    }
    // In 128 bits when it fits (most windows): the same exact numerator, and `i128 as f64`
    // rounds it as `I256::as_f64` does (to nearest, on its magnitude). Where the operands are
    // small enough that nothing can overflow (a window of returns: `n < 2³¹`, `Σx² < 2⁹⁵`,
    // `|Σx| < 2⁶³`), the products are plain multiplications rather than checked ones: an alert
    // book works a volatility out on every tick.
    let small = n < 1 << 31 && (0..1 << 95).contains(&sum2) && i64::try_from(sum).is_ok();
    let numerator = if small {
        Some(i128::from(n) * sum2 - sum * sum)
    } else {
        i128::from(n)
            .checked_mul(sum2)
            .zip(sum.checked_mul(sum))
            .and_then(|(a, b)| a.checked_sub(b))
    };
    let numerator = numerator.map_or_else(
        || (I256::from(n) * I256::from(sum2) - I256::from(sum) * I256::from(sum)).as_f64(),
        i128_to_f64,
    );
    let var = numerator / (n as f64 * (n - 1) as f64);
    Some(var.max(0.0).sqrt())
}

/// `x as f64`, rounded to nearest as it is, without the library routine a 128-bit conversion
/// is on x86-64: beyond 64 bits, the top 64 bits with the rest folded into their lowest one
/// (as a sticky bit: it decides the rounding exactly as the bits it stands for) convert in one
/// instruction, and scaling by a power of two is exact.
#[inline]
pub(crate) fn i128_to_f64(x: i128) -> f64 {
    if let Ok(small) = i64::try_from(x) {
        return small as f64;
    }
    let magnitude = x.unsigned_abs();
    let shift = 64 - magnitude.leading_zeros();
    let sticky = u64::from(magnitude & ((1u128 << shift) - 1) != 0);
    let top = (magnitude >> shift) as u64 | sticky;
    let value = top as f64 * f64::from_bits((1023 + u64::from(shift)) << 52);
    if x < 0 { -value } else { value }
}

impl std::ops::AddAssign for Agg {
    fn add_assign(&mut self, o: Agg) {
        self.plus_equals(&o);
    }
}

impl std::ops::SubAssign for Agg {
    fn sub_assign(&mut self, o: Agg) {
        let mut n = o;
        n.negate();
        self.plus_equals(&n);
    }
}

impl IsZero for Agg {
    fn is_zero(&self) -> bool {
        *self == Agg::default()
    }
}

impl Semigroup for Agg {
    fn plus_equals(&mut self, o: &Agg) {
        self.count += o.count;
        self.volume += o.volume;
        self.sum_p += o.sum_p;
        self.sum_p2 += o.sum_p2;
        self.sum_pv += o.sum_pv;
        self.sum_t += o.sum_t;
        self.n_ret += o.n_ret;
        self.sum_r += o.sum_r;
        self.sum_r2 += o.sum_r2;
    }
}

impl Monoid for Agg {
    fn zero() -> Agg {
        Agg::default()
    }
}

impl Abelian for Agg {
    fn negate(&mut self) {
        self.count = -self.count;
        self.volume = -self.volume;
        self.sum_p = -self.sum_p;
        self.sum_p2 = -self.sum_p2;
        self.sum_pv = -self.sum_pv;
        self.sum_t = -self.sum_t;
        self.n_ret = -self.n_ret;
        self.sum_r = -self.sum_r;
        self.sum_r2 = -self.sum_r2;
    }
}

impl differential_dataflow::difference::Multiply<isize> for Agg {
    type Output = Agg;
    fn multiply(self, rhs: &isize) -> Agg {
        let k = *rhs as i128;
        Agg {
            count: self.count * *rhs as i64,
            volume: self.volume * k,
            sum_p: self.sum_p * k,
            sum_p2: self.sum_p2 * k,
            sum_pv: self.sum_pv * k,
            sum_t: self.sum_t * k,
            n_ret: self.n_ret * *rhs as i64,
            sum_r: self.sum_r * k,
            sum_r2: self.sum_r2 * k,
        }
    }
}

#[cfg(test)]
mod tests {
    /// The fast 128-bit conversion rounds as `as f64` does, at every magnitude and on the
    /// halfway cases.
    #[test]
    fn i128_to_f64_rounds_as_the_cast() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let mut cases = vec![0, 1, -1, i128::MAX, i128::MIN, i128::MIN + 1];
        for bits in 1..127 {
            let base = 1i128 << bits;
            cases.extend([base, base - 1, base + 1, -base, -base + 1, -base - 1]);
            // Halfway between two floats, and either side of it.
            if bits > 54 {
                let half = base + (1i128 << (bits - 53));
                cases.extend([half, half - 1, half + 1, half + (1i128 << (bits - 52))]);
            }
        }
        for _ in 0..200_000 {
            let bits = rng.random_range(0..127u32);
            let x: i128 = rng.random_range(0..=i128::MAX >> (126 - bits));
            cases.push(if rng.random_bool(0.5) { x } else { -x });
        }
        for x in cases {
            assert_eq!(super::i128_to_f64(x).to_bits(), (x as f64).to_bits(), "{x}");
        }
    }

    /// The 128-bit path of `sample_stddev` gives the 256-bit one's value, bit for bit, on both
    /// sides of where it stops fitting.
    #[test]
    fn sample_stddev_in_128_bits_equals_256_bits() {
        use rand::{Rng, SeedableRng};
        let wide = |n: i64, sum: i128, sum2: i128| {
            let num = ethnum::I256::from(n) * ethnum::I256::from(sum2)
                - ethnum::I256::from(sum) * ethnum::I256::from(sum);
            (num.as_f64() / (n as f64 * (n - 1) as f64)).max(0.0).sqrt()
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let mut narrow = 0;
        for i in 0..200_000 {
            let n: i64 = rng.random_range(2..1 << (i % 40 + 2));
            let bits = rng.random_range(1..=126u32);
            let sum2: i128 = rng.random_range(0..=i128::MAX >> (127 - bits));
            let root = (sum2 as f64).sqrt() * (n as f64).sqrt();
            let sum = (rng.random_range(-1.0..1.0) * root) as i128;
            let fits = i128::from(n).checked_mul(sum2).is_some() && sum.checked_mul(sum).is_some();
            narrow += usize::from(fits);
            let got = super::sample_stddev(n, sum, sum2).unwrap();
            assert_eq!(
                got.to_bits(),
                wide(n, sum, sum2).to_bits(),
                "{n} {sum} {sum2}"
            );
        }
        // Both paths were taken.
        assert!(narrow > 10_000 && narrow < 190_000, "{narrow}");
    }

    #[test]
    fn round_half_away_matches_round() {
        let mut x: f64 = 0.0;
        let mut cases = vec![
            0.5,
            -0.5,
            1.5,
            -1.5,
            2.5,
            0.49999999999999994,
            -0.49999999999999994,
            4.5e15 + 0.5,
            9.3e18,
            -9.3e18,
            1e300,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            0.0,
            -0.0,
        ];
        // A deterministic spread of magnitudes and fractions.
        for i in 0..100_000u64 {
            x = (x + 0.618_033_988_749_894_9).fract();
            let scale = 10f64.powi((i % 17) as i32);
            cases.push((x - 0.5) * scale);
            cases.push((i as f64) + 0.5);
        }
        for x in cases {
            assert_eq!(super::round_half_away(x), x.round() as i64, "{x}");
        }
    }

    use super::*;

    #[test]
    fn stddev_has_no_cancellation_at_large_means() {
        let p = |s: &str| s.parse::<Fixed>().unwrap();
        let mut a = Agg::default();
        for x in ["100000.00000001", "100000.00000002", "100000.00000003"] {
            a += Agg::tick(p(x), p("1"), 0, None);
        }
        assert_eq!(a.stddev(), Some(1e-8));
    }

    #[test]
    fn volatility_needs_two_returns() {
        let p = |s: &str| s.parse::<Fixed>().unwrap();
        let mut a = Agg::tick(p("1"), p("1"), 0, None);
        a += Agg::tick(p("2"), p("1"), 1, Some(quantize_log_return(p("2"), p("1"))));
        assert_eq!(a.volatility(), None);
        a += Agg::tick(p("1"), p("1"), 2, Some(quantize_log_return(p("1"), p("2"))));
        let expected = (2.0f64 * 2.0f64.ln().powi(2)).sqrt();
        assert!((a.volatility().unwrap() - expected).abs() < 1e-11);
    }
}
