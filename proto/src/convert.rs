//! Conversions between wire messages and core types.

use gostocks_core::decimal::SCALE_DIGITS;
use gostocks_core::quotes::Quote;
use gostocks_core::{DecimalError, Fixed, Side, Symbol, Tick};

use crate::v1;

/// Why a wire message does not convert into a core type.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConversionError {
    /// A required field is absent.
    #[error("field `{0}` is required")]
    Missing(&'static str),
    /// A decimal field cannot be held exactly.
    #[error("field `{field}`: {source}")]
    Decimal {
        /// The field's name.
        field: &'static str,
        /// What is wrong with the number.
        #[source]
        source: DecimalError,
    },
    /// The message converts but is not a valid record (a bad symbol, a negative size, a time
    /// before 1970); the text names the field.
    #[error("{0}")]
    Invalid(String),
}

impl From<Fixed> for v1::Decimal {
    /// Written with the fewest decimal places that hold the value exactly.
    fn from(f: Fixed) -> v1::Decimal {
        let mut mantissa = f.units();
        let mut scale = SCALE_DIGITS;
        while scale > 0 && mantissa % 10 == 0 {
            mantissa /= 10;
            scale -= 1;
        }
        v1::Decimal { mantissa, scale }
    }
}

impl TryFrom<&v1::Decimal> for Fixed {
    type Error = DecimalError;
    fn try_from(d: &v1::Decimal) -> Result<Fixed, DecimalError> {
        Fixed::from_mantissa(d.mantissa, d.scale)
    }
}

fn decimal(field: &'static str, d: Option<&v1::Decimal>) -> Result<Fixed, ConversionError> {
    let d = d.ok_or(ConversionError::Missing(field))?;
    Fixed::try_from(d).map_err(|source| ConversionError::Decimal { field, source })
}

impl From<&Tick> for v1::Tick {
    fn from(t: &Tick) -> v1::Tick {
        v1::Tick {
            symbol: t.symbol.clone(),
            price: Some(t.price.into()),
            size: Some(t.size.into()),
            time_ns: t.time_ns,
            seq: t.seq,
            source: t.source.clone(),
            side: t.side.map(|s| match s {
                Side::Buy => v1::Side::Buy as i32,
                Side::Sell => v1::Side::Sell as i32,
            }),
            trade_id: t.trade_id,
            conditions: t.conditions.clone(),
        }
    }
}

impl TryFrom<v1::Tick> for Tick {
    type Error = ConversionError;
    fn try_from(t: v1::Tick) -> Result<Tick, ConversionError> {
        Ok(Tick::new(
            t.symbol,
            decimal("price", t.price.as_ref())?,
            decimal("size", t.size.as_ref())?,
            t.time_ns,
            t.seq,
        )
        .with_source(t.source)
        .with_side(match t.side.and_then(|s| v1::Side::try_from(s).ok()) {
            Some(v1::Side::Buy) => Some(Side::Buy),
            Some(v1::Side::Sell) => Some(Side::Sell),
            _ => None,
        })
        .with_trade_id(t.trade_id)
        .with_conditions(t.conditions))
    }
}

/// A quote as its wire message, with the `source` it came from.
pub fn quote_to_wire(q: &Quote, source: &str) -> v1::Quote {
    v1::Quote {
        symbol: q.symbol.as_str().to_owned(),
        bid: Some(q.bid.into()),
        bid_size: Some(q.bid_size.into()),
        ask: Some(q.ask.into()),
        ask_size: Some(q.ask_size.into()),
        // Event times are below 2^63 ns (2262): `Quote::new` from any reader keeps them there.
        time_ns: i64::try_from(q.time_ns).unwrap_or(i64::MAX),
        seq: q.seq,
        source: source.to_owned(),
    }
}

impl TryFrom<v1::Quote> for Quote {
    type Error = ConversionError;
    /// Validated as [`Quote::new`] validates: the error names the field.
    fn try_from(q: v1::Quote) -> Result<Quote, ConversionError> {
        let symbol =
            Symbol::new(&q.symbol).map_err(|e| ConversionError::Invalid(format!("symbol: {e}")))?;
        let time_ns = u64::try_from(q.time_ns).map_err(|_| {
            ConversionError::Invalid(format!("time_ns: must be >= 0, got {}", q.time_ns))
        })?;
        Quote::new(
            symbol,
            time_ns,
            q.seq,
            decimal("bid", q.bid.as_ref())?,
            decimal("bid_size", q.bid_size.as_ref())?,
            decimal("ask", q.ask.as_ref())?,
            decimal("ask_size", q.ask_size.as_ref())?,
        )
        .map_err(|e| {
            ConversionError::Invalid(match e {
                // The field and why, without the rejection's own prefix.
                gostocks_core::Rejection::Decode(why) => why,
                other => other.to_string(),
            })
        })
    }
}
