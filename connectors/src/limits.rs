//! What one record may cost, the same for every reader: its length in bytes, how much of it a
//! rejection echoes, and the range of event times a decoder accepts.
//!
//! - A record (a line of a file without its line break, a Kafka record's payload, a WebSocket
//!   message) is at most [`MAX_RECORD_BYTES`] long unless told otherwise (`--max-record-bytes`).
//!   A longer one is rejected, saying so ([`too_long`]), and is never held whole: a file reader
//!   passes over the rest of an over-long line without buffering it, the WebSocket client refuses
//!   the message, a Kafka record is refused before it is parsed ([`decode_record`]).
//! - A rejection echoes at most [`MAX_RAW_BYTES`] of its record ([`raw_excerpt`]) and a reason of
//!   at most [`MAX_REASON_BYTES`] ([`bound_reason`]): what one bad record writes to a dead-letter
//!   output is bounded, however long the record was.
//! - Event times are ns since the Unix epoch that fit an `i64`: from 1970-01-01T00:00:00Z up to
//!   2262-04-11T23:47:16.854775807Z. A time given in coarser units is scaled with checked
//!   arithmetic ([`scale_time`]); one that would not fit, or lies before 1970, is rejected
//!   naming its field, never wrapped.
//!
//! ```
//! use gostocks_connectors::limits::{MAX_RECORD_BYTES, check_record_len, scale_time};
//! assert!(check_record_len(100, MAX_RECORD_BYTES).is_ok());
//! assert!(check_record_len(MAX_RECORD_BYTES + 1, MAX_RECORD_BYTES).is_err());
//! assert_eq!(scale_time(1_723_161_255_342, 1_000_000, "T", "ms"), Ok(1_723_161_255_342_000_000));
//! let wrapped = scale_time(18_446_744_073_710, 1_000_000, "trade_time_ms", "ms").unwrap_err();
//! assert!(wrapped.to_string().contains("trade_time_ms: 18446744073710 ms is out of range"));
//! ```

use gostocks_core::{Rejection, Tick};

use crate::kafka::{TickEncoding, decode_tick};

/// The longest record read by default, in bytes: 1 MiB. The longest real records gostocks
/// reads are Binance depth frames of about 60 kB; a trade line is a few hundred bytes.
pub const MAX_RECORD_BYTES: usize = 1 << 20;

/// The most of a rejected record that a rejection keeps, in bytes (`Rejected::raw`, the `raw` of
/// `analyze --errors-out`). Real records are far shorter and are kept whole.
pub const MAX_RAW_BYTES: usize = 4096;

/// The longest reason a rejection gives, in bytes. Reasons quote short excerpts of the bad
/// field; this bounds the ones that quote more (a JSON parser's message, say).
pub const MAX_REASON_BYTES: usize = 512;

/// The rejection of a record of `len` bytes, over the limit of `max` bytes.
pub fn too_long(len: u64, max: usize) -> Rejection {
    Rejection::Decode(format!(
        "record of {len} bytes exceeds the limit of {max} bytes (--max-record-bytes)"
    ))
}

/// Refuses a record of `len` bytes if it is longer than `max`.
pub fn check_record_len(len: usize, max: usize) -> Result<(), Rejection> {
    if len > max {
        Err(too_long(len as u64, max))
    } else {
        Ok(())
    }
}

/// A Kafka record's payload as a tick, as [`decode_tick`] decodes it, but refused unparsed when
/// longer than `max` bytes, and with its reason bounded ([`bound_reason`]).
pub fn decode_record(
    payload: &[u8],
    encoding: TickEncoding,
    max: usize,
) -> Result<Tick, Rejection> {
    check_record_len(payload.len(), max)?;
    decode_tick(payload, encoding).map_err(bound_reason)
}

/// At most [`MAX_RAW_BYTES`] of a record, as text (invalid UTF-8 replaced), cut at a character
/// boundary.
pub fn raw_excerpt(record: &[u8]) -> String {
    let mut text = String::from_utf8_lossy(&record[..record.len().min(MAX_RAW_BYTES)]).into_owned();
    truncate(&mut text, MAX_RAW_BYTES);
    text
}

/// The rejection with its text cut to [`MAX_REASON_BYTES`] (saying how long it was).
pub fn bound_reason(reason: Rejection) -> Rejection {
    let cut = |mut text: String| {
        if text.len() > MAX_REASON_BYTES {
            let len = text.len();
            truncate(&mut text, MAX_REASON_BYTES - 32);
            text.push_str(&format!("... ({len} bytes)"));
        }
        text
    };
    match reason {
        Rejection::Decode(text) => Rejection::Decode(cut(text)),
        Rejection::Symbol(text) => Rejection::Symbol(cut(text)),
        Rejection::Price(text) => Rejection::Price(cut(text)),
        Rejection::Size(text) => Rejection::Size(cut(text)),
        other => other,
    }
}

/// Cuts `text` to at most `max` bytes, at a character boundary.
fn truncate(text: &mut String, max: usize) {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
}

/// `value` units of `ns_per_unit` ns each (`1_000_000` for ms), as ns since the epoch; refused,
/// naming `field`, if it is negative (before 1970) or does not fit an `i64` (after 2262-04-11).
pub fn scale_time(value: i64, ns_per_unit: i64, field: &str, unit: &str) -> Result<i64, Rejection> {
    if value < 0 {
        return Err(Rejection::Decode(format!(
            "{field}: {value} {unit} is before 1970-01-01"
        )));
    }
    value.checked_mul(ns_per_unit).ok_or_else(|| {
        Rejection::Decode(format!(
            "{field}: {value} {unit} is out of range (after 2262-04-11)"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_that_would_wrap_are_refused_naming_the_field() {
        // Unchecked, 18446744073710 ms * 10^6 wraps to 448384 ns.
        let err = scale_time(18_446_744_073_710, 1_000_000, "trade_time_ms", "ms").unwrap_err();
        assert_eq!(
            err.to_string(),
            "undecodable record: trade_time_ms: 18446744073710 ms is out of range (after 2262-04-11)"
        );
        assert!(scale_time(-1, 1_000_000, "t", "ms").is_err());
        assert_eq!(
            scale_time(i64::MAX / 1_000_000, 1_000_000, "t", "ms").map(|_| ()),
            Ok(())
        );
        assert!(scale_time(i64::MAX / 1_000_000 + 1, 1_000_000, "t", "ms").is_err());
    }

    #[test]
    fn excerpts_and_reasons_are_bounded() {
        let raw = raw_excerpt(&[0xff; 3 * MAX_RAW_BYTES]);
        assert!(raw.len() <= MAX_RAW_BYTES, "{}", raw.len());
        assert_eq!(raw_excerpt(b"AAPL,1,0,1,1"), "AAPL,1,0,1,1");
        let reason = bound_reason(Rejection::Decode("é".repeat(100_000))).to_string();
        assert!(reason.len() <= MAX_REASON_BYTES + 32, "{}", reason.len());
        assert!(reason.ends_with("... (200000 bytes)"), "{reason}");
        let short = Rejection::Decode("bad".into());
        assert_eq!(bound_reason(short.clone()), short);
    }

    #[test]
    fn an_over_long_kafka_record_is_refused_unparsed() {
        let payload = vec![b' '; MAX_RECORD_BYTES + 1];
        let err = decode_record(&payload, TickEncoding::Json, MAX_RECORD_BYTES).unwrap_err();
        assert!(
            err.to_string()
                .contains("exceeds the limit of 1048576 bytes"),
            "{err}"
        );
    }
}
