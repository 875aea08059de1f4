//! Exact fixed-point decimals for prices and sizes.
//!
//! Every price and size in gostocks is a [`Fixed`]: an `i64` count of 10⁻⁸ units. Eight decimal
//! places hold every venue we read (LOBSTER quotes in 10⁻⁴ USD, Binance in up to 8 decimals), and
//! sums of them fit in `i128` without rounding, which is what makes window aggregates retract
//! exactly.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Decimal places of a [`Fixed`].
pub const SCALE_DIGITS: u32 = 8;
/// `10^SCALE_DIGITS`: the number of units in 1.
pub const SCALE: i64 = 100_000_000;

/// An exact decimal with 8 fractional digits, stored as an integer number of 10⁻⁸ units.
///
/// Make one by parsing its text (`"585.33".parse()`, exact or an error, never rounded), from a
/// mantissa and a scale ([`Fixed::from_mantissa`]) or from a count of 10⁻⁸ units
/// ([`Fixed::from_units`]); read it back with [`Fixed::units`], [`Fixed::to_f64`] or its
/// `Display` text. The representation is private, so the scale may grow without breaking users.
///
/// ```
/// use gostocks_core::Fixed;
/// let price: Fixed = "585.33".parse().unwrap();
/// assert_eq!(price, Fixed::from_units(58_533_000_000));
/// assert_eq!(price.units(), 58_533_000_000);
/// assert_eq!(price.to_string(), "585.33");
/// assert!("0.000000001".parse::<Fixed>().is_err(), "9 decimal places are refused, not rounded");
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Fixed(i64);

/// Why a text is not a [`Fixed`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecimalError {
    /// The text is empty or is not a decimal number (this includes `NaN` and `inf`); it holds a
    /// short quoted excerpt of the text.
    #[error("{0} is not a finite decimal number")]
    NotANumber(String),
    /// The number has non-zero digits beyond the 8th decimal place (a quoted excerpt).
    #[error("{0} has more than 8 decimal places")]
    TooPrecise(String),
    /// The number is too large in magnitude for 10⁻⁸ units in an i64 (a quoted excerpt).
    #[error("{0} is out of range (at most 92233720368.54775807 in magnitude)")]
    OutOfRange(String),
}

impl Fixed {
    /// Zero.
    pub const ZERO: Fixed = Fixed(0);

    /// From a mantissa and a number of decimal places (`mantissa * 10^-scale`), exactly.
    ///
    /// ```
    /// use gostocks_core::Fixed;
    /// assert_eq!(Fixed::from_mantissa(5853300, 4).unwrap().to_string(), "585.33");
    /// ```
    pub fn from_mantissa(mantissa: i64, scale: u32) -> Result<Fixed, DecimalError> {
        let text = || format!("`{mantissa}e-{scale}`");
        if scale <= SCALE_DIGITS {
            let factor = 10i64.pow(SCALE_DIGITS - scale);
            mantissa
                .checked_mul(factor)
                .map(Fixed)
                .ok_or_else(|| DecimalError::OutOfRange(text()))
        } else {
            let divisor = 10i128
                .checked_pow(scale - SCALE_DIGITS)
                .ok_or_else(|| DecimalError::TooPrecise(text()))?;
            let m = i128::from(mantissa);
            if m % divisor != 0 {
                return Err(DecimalError::TooPrecise(text()));
            }
            Ok(Fixed((m / divisor) as i64))
        }
    }

    /// The value of `units` counts of 10⁻⁸ (the inverse of [`Fixed::units`]).
    ///
    /// ```
    /// use gostocks_core::Fixed;
    /// assert_eq!(Fixed::from_units(150_000_000).to_string(), "1.5");
    /// ```
    pub const fn from_units(units: i64) -> Fixed {
        Fixed(units)
    }

    /// The mantissa at this type's fixed scale of 8 decimal places.
    pub const fn units(self) -> i64 {
        self.0
    }

    /// The nearest `f64` (for display and floating-point statistics only).
    pub fn to_f64(self) -> f64 {
        self.0 as f64 / SCALE as f64
    }

    /// Parses ASCII bytes exactly, as [`str::parse`] does, without allocating on success: the
    /// form file readers use on their hot path.
    pub fn parse_bytes(b: &[u8]) -> Result<Fixed, DecimalError> {
        parse_decimal(b).map_err(|kind| kind.with_text(&String::from_utf8_lossy(b)))
    }

    /// Whether the value is strictly positive.
    pub fn is_positive(self) -> bool {
        self.0 > 0
    }
}

impl FromStr for Fixed {
    type Err = DecimalError;

    /// Parses `[+-]digits[.digits][e[+-]digits]` exactly.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_decimal(s.as_bytes()).map_err(|kind| kind.with_text(s))
    }
}

#[derive(Clone, Copy)]
enum ParseFail {
    NotANumber,
    TooPrecise,
    OutOfRange,
}

impl ParseFail {
    fn with_text(self, s: &str) -> DecimalError {
        // The error quotes a short excerpt of untrusted text, never all of it.
        let s = crate::symbol::excerpt(s);
        match self {
            ParseFail::NotANumber => DecimalError::NotANumber(s),
            ParseFail::TooPrecise => DecimalError::TooPrecise(s),
            ParseFail::OutOfRange => DecimalError::OutOfRange(s),
        }
    }
}

/// Parses ASCII decimal bytes into 10⁻⁸ units; the hot path of every file reader.
fn parse_decimal(b: &[u8]) -> Result<Fixed, ParseFail> {
    if let Some(units) = parse_plain(b) {
        return Ok(Fixed(units));
    }
    parse_general(b)
}

/// The common case of [`parse_decimal`], `digits[.digits]` of at most 19 bytes with at most
/// [`SCALE_DIGITS`] decimals, in one pass over `u64`s; `None` for anything else (a sign, an
/// exponent, more decimals, a value out of range, a malformed number), which the general path
/// then accepts or explains. Written by hand rather than through the general path because
/// that one folds `i128`s, several times slower, and every price and size of a file goes
/// through here.
#[inline]
fn parse_plain(b: &[u8]) -> Option<i64> {
    if b.is_empty() || b.len() > 19 {
        return None;
    }
    let mut v: u64 = 0;
    // The place of the decimal point, once seen.
    let mut point: Option<usize> = None;
    for (i, &c) in b.iter().enumerate() {
        let d = c.wrapping_sub(b'0');
        if d < 10 {
            // At most 19 digits: below 10^19, within a u64.
            v = v * 10 + u64::from(d);
        } else if c == b'.' && point.is_none() {
            point = Some(i);
        } else {
            return None;
        }
    }
    let decimals = point.map_or(0, |p| b.len() - p - 1);
    if decimals > SCALE_DIGITS as usize || point.is_some_and(|_| b.len() == 1) {
        return None;
    }
    let units = v.checked_mul(10u64.pow(SCALE_DIGITS - decimals as u32))?;
    i64::try_from(units).ok()
}

/// [`parse_decimal`] in full: signs, exponents, trailing zeros beyond the scale.
fn parse_general(b: &[u8]) -> Result<Fixed, ParseFail> {
    let mut i = 0;
    let negative = match b.first() {
        Some(b'-') => {
            i = 1;
            true
        }
        Some(b'+') => {
            i = 1;
            false
        }
        _ => false,
    };
    let mut mantissa: i128 = 0;
    let mut digits = 0usize;
    let mut frac_digits: i32 = 0;
    let mut seen_point = false;
    while i < b.len() {
        match b[i] {
            c @ b'0'..=b'9' => {
                if mantissa < 10i128.pow(30) {
                    mantissa = mantissa * 10 + i128::from(c - b'0');
                    if seen_point {
                        frac_digits += 1;
                    }
                } else if !seen_point {
                    return Err(ParseFail::OutOfRange);
                } else if c != b'0' {
                    return Err(ParseFail::TooPrecise);
                }
                digits += 1;
            }
            b'.' if !seen_point => seen_point = true,
            b'e' | b'E' => break,
            _ => return Err(ParseFail::NotANumber),
        }
        i += 1;
    }
    if digits == 0 {
        return Err(ParseFail::NotANumber);
    }
    let mut exponent: i32 = 0;
    if i < b.len() {
        // b[i] is the exponent marker.
        let rest = std::str::from_utf8(&b[i + 1..]).map_err(|_| ParseFail::NotANumber)?;
        exponent = rest.parse::<i32>().map_err(|_| ParseFail::NotANumber)?;
        if !(-40..=40).contains(&exponent) {
            return Err(if exponent < 0 {
                ParseFail::TooPrecise
            } else {
                ParseFail::OutOfRange
            });
        }
    }
    // value = mantissa * 10^(exponent - frac_digits); we want units = value * 10^8.
    let shift = exponent - frac_digits + SCALE_DIGITS as i32;
    let units = if shift >= 0 {
        let f = 10i128
            .checked_pow(shift as u32)
            .ok_or(ParseFail::OutOfRange)?;
        mantissa.checked_mul(f).ok_or(ParseFail::OutOfRange)?
    } else {
        let d = 10i128
            .checked_pow((-shift) as u32)
            .ok_or(ParseFail::TooPrecise)?;
        if mantissa % d != 0 {
            return Err(ParseFail::TooPrecise);
        }
        mantissa / d
    };
    let units = if negative { -units } else { units };
    i64::try_from(units)
        .map(Fixed)
        .map_err(|_| ParseFail::OutOfRange)
}

impl Fixed {
    /// Appends the shortest exact decimal (as [`fmt::Display`] writes it) to `out`, without the
    /// formatting machinery: the JSON outputs write millions of these.
    ///
    /// ```
    /// use gostocks_core::Fixed;
    /// let mut out = String::new();
    /// for s in ["585.33", "100", "0.001", "-0.5"] {
    ///     s.parse::<Fixed>().unwrap().push_to(&mut out);
    ///     out.push(' ');
    /// }
    /// assert_eq!(out, "585.33 100 0.001 -0.5 ");
    /// ```
    pub fn push_to(&self, out: &mut String) {
        let v = self.0;
        if v < 0 {
            out.push('-');
        }
        let abs = v.unsigned_abs();
        let int = abs / SCALE as u64;
        let mut frac = abs % SCALE as u64;
        out.push_str(itoa::Buffer::new().format(int));
        if frac == 0 {
            return;
        }
        let mut width = SCALE_DIGITS as usize;
        while frac.is_multiple_of(10) {
            frac /= 10;
            width -= 1;
        }
        out.push('.');
        let mut digits = itoa::Buffer::new();
        let digits = digits.format(frac);
        for _ in digits.len()..width {
            out.push('0');
        }
        out.push_str(digits);
    }
}

impl fmt::Display for Fixed {
    /// The shortest exact decimal: `585.33`, `100`, `0.001`. Honours width and alignment.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = String::with_capacity(24);
        self.push_to(&mut text);
        f.pad(&text)
    }
}

impl Serialize for Fixed {
    /// Serialized as a decimal string so that no JSON reader turns it into a binary float; in
    /// a binary format (timely's wire between the processes of a cluster), as its units.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.collect_str(self)
        } else {
            serializer.serialize_i64(self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Fixed {
    /// Accepts a decimal string or a JSON number. A number is read through its shortest
    /// round-trip text, which is its literal text for up to 15 significant digits. A binary
    /// format carries the units.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if !deserializer.is_human_readable() {
            return i64::deserialize(deserializer).map(Fixed);
        }
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Fixed;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a decimal number or a decimal string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Fixed, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Fixed, E> {
                Fixed::from_mantissa(v, 0).map_err(E::custom)
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Fixed, E> {
                let v = i64::try_from(v)
                    .map_err(|_| E::custom(DecimalError::OutOfRange(format!("`{v}`"))))?;
                Fixed::from_mantissa(v, 0).map_err(E::custom)
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Fixed, E> {
                if !v.is_finite() {
                    return Err(E::custom(DecimalError::NotANumber(format!("`{v}`"))));
                }
                format!("{v:?}").parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_exactly() {
        for (text, units, shown) in [
            ("585.33", 58_533_000_000, "585.33"),
            ("0.00100000", 100_000, "0.001"),
            ("-1.5", -150_000_000, "-1.5"),
            ("100", 10_000_000_000, "100"),
            ("1e-8", 1, "0.00000001"),
            ("2.5E3", 250_000_000_000, "2500"),
            ("29000.12000000000", 2_900_012_000_000, "29000.12"),
        ] {
            let f: Fixed = text.parse().unwrap();
            assert_eq!(f.units(), units, "{text}");
            assert_eq!(f.to_string(), shown);
        }
    }

    #[test]
    fn rejects_what_it_cannot_hold_exactly() {
        assert!(matches!(
            "NaN".parse::<Fixed>(),
            Err(DecimalError::NotANumber(_))
        ));
        assert!(matches!(
            "inf".parse::<Fixed>(),
            Err(DecimalError::NotANumber(_))
        ));
        assert!(matches!(
            "".parse::<Fixed>(),
            Err(DecimalError::NotANumber(_))
        ));
        assert!(matches!(
            "1.2.3".parse::<Fixed>(),
            Err(DecimalError::NotANumber(_))
        ));
        assert!(matches!(
            "0.000000001".parse::<Fixed>(),
            Err(DecimalError::TooPrecise(_))
        ));
        assert!(matches!(
            "1e30".parse::<Fixed>(),
            Err(DecimalError::OutOfRange(_))
        ));
    }

    /// The one-pass path agrees with the general one wherever it answers, and answers for
    /// the plain numbers files are made of.
    #[test]
    fn the_plain_path_agrees_with_the_general_one() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let alphabet = b"0123456789..-+e9";
        let mut answered = 0;
        for _ in 0..200_000 {
            let len = rng.random_range(0..22);
            let b: Vec<u8> = (0..len)
                .map(|_| alphabet[rng.random_range(0..alphabet.len())])
                .collect();
            if let Some(units) = parse_plain(&b) {
                answered += 1;
                let general = parse_general(&b).map(|f| f.0).ok();
                assert_eq!(Some(units), general, "{}", String::from_utf8_lossy(&b));
            }
        }
        assert!(answered > 10_000, "{answered}");
        for (s, units) in [
            ("579.4", 57_940_000_000),
            ("4", 400_000_000),
            ("5.", 500_000_000),
            (".5", 50_000_000),
            ("0.00000001", 1),
            ("92233720368.54775807", i64::MAX),
        ] {
            assert_eq!(
                parse_decimal(s.as_bytes()).map(|f| f.0).ok(),
                Some(units),
                "{s}"
            );
        }
        for s in [
            ".",
            "",
            "1.000000001",
            "92233720368.54775808",
            "1..2",
            "-1",
            "1e2",
        ] {
            assert_eq!(parse_plain(s.as_bytes()), None, "{s}");
        }
    }

    #[test]
    fn json_numbers_and_strings_agree() {
        let a: Fixed = serde_json::from_str("123.45").unwrap();
        let b: Fixed = serde_json::from_str("\"123.45\"").unwrap();
        assert_eq!(a, b);
        assert_eq!(serde_json::to_string(&a).unwrap(), "\"123.45\"");
    }
}
