//! Quotes on Kafka: the `quotes` topic, keyed by symbol, protobuf (`gostocks.v1.Quote`) or the
//! canonical JSON form, as the ticks.
//!
//! The canonical JSON form: `{"symbol","time_ns","seq","bid","bid_size","ask","ask_size"}` and
//! an optional `"source"`, decimals as strings (`"585.33"`), an empty side as `"0"` with size
//! `"0"`.
//!
//! ```
//! use gostocks_connectors::kafka::{TickEncoding, decode_quote, encode_quote};
//! use gostocks_core::quotes::Quote;
//! use gostocks_core::{Fixed, Symbol};
//! let p = |s: &str| s.parse::<Fixed>().unwrap();
//! let q = Quote::new(Symbol::new("AAPL").unwrap(), 1, 2, p("585.33"), p("100"), p("585.35"), p("0.5")).unwrap();
//! let json = encode_quote(&q, "lobster", TickEncoding::Json);
//! assert_eq!(
//!     std::str::from_utf8(&json).unwrap(),
//!     r#"{"symbol":"AAPL","time_ns":1,"seq":2,"bid":"585.33","bid_size":"100","ask":"585.35","ask_size":"0.5","source":"lobster"}"#
//! );
//! for encoding in [TickEncoding::Json, TickEncoding::Protobuf] {
//!     assert_eq!(decode_quote(&encode_quote(&q, "", encoding), encoding).unwrap(), q);
//! }
//! assert!(decode_quote(br#"{"symbol":"A","time_ns":1,"seq":0,"bid":"-1","bid_size":"1","ask":"1","ask_size":"1"}"#, TickEncoding::Json)
//!     .unwrap_err().to_string().contains("bid"));
//! ```

use std::borrow::Cow;

use gostocks_core::quotes::Quote;
use gostocks_core::{Fixed, Rejection, Symbol};
use gostocks_proto::v1;
use prost::Message;
use serde::{Deserialize, Serialize};

use super::config::TickEncoding;

/// The default topic of quotes.
pub const QUOTES_TOPIC: &str = "quotes";

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct QuoteJson<'a> {
    #[serde(borrow)]
    symbol: Cow<'a, str>,
    time_ns: i64,
    seq: u64,
    bid: Fixed,
    bid_size: Fixed,
    ask: Fixed,
    ask_size: Fixed,
    #[serde(default, borrow, skip_serializing_if = "str::is_empty")]
    source: Cow<'a, str>,
}

/// A quote as a record of `encoding`, with the `source` it came from (empty: none).
pub fn encode_quote(q: &Quote, source: &str, encoding: TickEncoding) -> Vec<u8> {
    match encoding {
        TickEncoding::Protobuf => gostocks_proto::quote_to_wire(q, source).encode_to_vec(),
        TickEncoding::Json => serde_json::to_vec(&QuoteJson {
            symbol: Cow::Borrowed(q.symbol.as_str()),
            time_ns: i64::try_from(q.time_ns).unwrap_or(i64::MAX),
            seq: q.seq,
            bid: q.bid,
            bid_size: q.bid_size,
            ask: q.ask,
            ask_size: q.ask_size,
            source: Cow::Borrowed(source),
        })
        .unwrap_or_default(),
    }
}

/// A record of `encoding` as a valid quote, or why not (naming the field). The caller bounds
/// the record's size first, as for ticks ([`crate::limits::check_record_len`]).
pub fn decode_quote(payload: &[u8], encoding: TickEncoding) -> Result<Quote, Rejection> {
    match encoding {
        TickEncoding::Protobuf => {
            let msg = v1::Quote::decode(payload)
                .map_err(|e| Rejection::Decode(format!("protobuf: {e}")))?;
            Quote::try_from(msg).map_err(|e| Rejection::Decode(e.to_string()))
        }
        TickEncoding::Json => {
            let q: QuoteJson = serde_json::from_slice(payload)
                .map_err(|e| Rejection::Decode(format!("json: {e}")))?;
            let symbol = Symbol::new(&q.symbol).map_err(|e| Rejection::Symbol(e.to_string()))?;
            let time_ns = u64::try_from(q.time_ns).map_err(|_| Rejection::Time(q.time_ns))?;
            Quote::new(symbol, time_ns, q.seq, q.bid, q.bid_size, q.ask, q.ask_size)
        }
    }
}
