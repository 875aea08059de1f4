//! Binance public combined streams: `/stream?streams=btcusdt@trade/...`. `@trade` payloads become
//! ticks (seq and trade id: Binance's `t`, contiguous per symbol); every other stream is passed
//! over and counted. No credentials, no subscribe frames: the streams are in the URL.

use gostocks_core::{Fixed, Rejection, Side, Tick};
use serde_json::Value;

use super::{Notice, Output, Provider, ProviderError};
use crate::limits::scale_time;

/// The `source` of Binance ticks.
const SOURCE: &str = "binance";

/// The Binance protocol.
#[derive(Clone, Debug)]
pub struct Binance {
    url: String,
    quotes: bool,
}

impl Binance {
    /// The public endpoint.
    pub const DEFAULT_URL: &str = "wss://stream.binance.com:9443";

    /// Trades of `symbols` (any case) from `base` (default [`Self::DEFAULT_URL`]), to which
    /// `/stream?streams=...` is appended.
    pub fn new(symbols: &[String], base: Option<&str>) -> Binance {
        Binance::streams(symbols, base, &["trade"])
    }

    /// Trades and quotes: the `@bookTicker` streams too, whose frames become
    /// [`Output::quotes`]. A futures frame's time is its transaction time `T`; a spot frame
    /// carries none, so its time is when it was decoded (its receive time).
    ///
    /// ```
    /// use gostocks_connectors::websocket::{Binance, Output, Provider};
    /// let mut b = Binance::with_quotes(&["BTCUSDT".into()], Some("ws://127.0.0.1:1"));
    /// assert_eq!(b.connect_url(), "ws://127.0.0.1:1/stream?streams=btcusdt@trade/btcusdt@bookTicker");
    /// let mut out = Output::default();
    /// b.on_frame(r#"{"stream":"btcusdt@bookTicker","data":{"e":"bookTicker","u":7,"s":"BTCUSDT","b":"61800.20","B":"2.507","a":"61800.30","A":"2.510","T":1723161256313,"E":1723161256313}}"#, &mut out).unwrap();
    /// let q = out.quotes[0].as_ref().unwrap();
    /// assert_eq!((q.time_ns, q.seq, q.ask.to_string()), (1_723_161_256_313_000_000, 7, "61800.3".into()));
    /// ```
    pub fn with_quotes(symbols: &[String], base: Option<&str>) -> Binance {
        Binance::streams(symbols, base, &["trade", "bookTicker"])
    }

    fn streams(symbols: &[String], base: Option<&str>, kinds: &[&str]) -> Binance {
        let base = base.unwrap_or(Self::DEFAULT_URL).trim_end_matches('/');
        let streams: Vec<String> = symbols
            .iter()
            .flat_map(|s| {
                kinds
                    .iter()
                    .map(move |k| format!("{}@{k}", s.to_ascii_lowercase()))
            })
            .collect();
        Binance {
            url: format!("{base}/stream?streams={}", streams.join("/")),
            quotes: kinds.contains(&"bookTicker"),
        }
    }
}

impl Provider for Binance {
    fn name(&self) -> &'static str {
        SOURCE
    }

    fn connect_url(&self) -> String {
        self.url.clone()
    }

    fn on_connect(&mut self, _out: &mut Output) {}

    fn on_frame(&mut self, frame: &str, out: &mut Output) -> Result<(), ProviderError> {
        if self.quotes {
            let receive_ns = || {
                u64::try_from(super::client::now_ns())
                    .map_err(|_| Rejection::Decode("the local clock is before 1970".into()))
            };
            if let Some(quote) =
                crate::file::quotes::binance_book_ticker(frame.as_bytes(), receive_ns)
            {
                out.quotes.push(quote);
                return Ok(());
            }
        }
        decode_frame(frame.as_bytes(), out);
        Ok(())
    }

    fn contiguous_ids(&self) -> bool {
        true
    }
}

/// The stream name of a combined-stream frame, read from its opening bytes without parsing the
/// rest: depth frames run to 60 kB, and most of a session is not trades.
fn stream_name(frame: &[u8]) -> Option<&[u8]> {
    let rest = frame.strip_prefix(br#"{"stream":""#)?;
    let end = rest.iter().position(|&c| c == b'"')?;
    Some(&rest[..end])
}

/// Decodes one Binance frame (combined `{"stream","data"}` or a bare payload) into `out`.
pub(crate) fn decode_frame(frame: &[u8], out: &mut Output) {
    if let Some(stream) = stream_name(frame)
        && !stream.ends_with(b"@trade")
    {
        out.ignored += 1;
        return;
    }
    let value: Value = match serde_json::from_slice(frame) {
        Ok(v) => v,
        Err(e) => {
            out.records
                .push(Err(Rejection::Decode(format!("frame is not JSON: {e}"))));
            return;
        }
    };
    if let Some(err) = value.get("error") {
        out.notices.push(Notice::Error {
            code: err.get("code").and_then(Value::as_i64),
            message: err
                .get("msg")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        });
        return;
    }
    // Combined streams wrap the payload as {"stream": ..., "data": {...}}.
    let data = value.get("data").unwrap_or(&value);
    match trade(data) {
        Some(record) => out.records.push(record),
        None => out.ignored += 1,
    }
}

/// A Binance `@trade` payload (`e: "trade"`) as a tick; `None` for any other payload.
fn trade(data: &Value) -> Option<Result<Tick, Rejection>> {
    if data.get("e").and_then(Value::as_str) != Some("trade") {
        return None;
    }
    let fields = TradeFields {
        symbol: "s",
        id: "t",
        price: "p",
        qty: "q",
        time: "T",
        buyer_maker: "m",
    };
    Some(fields.tick(data, None, "trade frame"))
}

/// Where a Binance trade's fields are in one of its JSON forms.
struct TradeFields {
    symbol: &'static str,
    id: &'static str,
    price: &'static str,
    qty: &'static str,
    time: &'static str,
    buyer_maker: &'static str,
}

impl TradeFields {
    /// The tick of the trade `data` (of `symbol` when the form does not carry it), as the
    /// WebSocket stream and the REST API give it alike: the same trade is the same tick.
    fn tick(&self, data: &Value, symbol: Option<&str>, what: &str) -> Result<Tick, Rejection> {
        let text = |k: &str| {
            data.get(k)
                .and_then(Value::as_str)
                .ok_or_else(|| Rejection::Decode(format!("{what} lacks `{k}`")))
        };
        let num = |k: &str| {
            data.get(k)
                .and_then(Value::as_u64)
                .ok_or_else(|| Rejection::Decode(format!("{what} lacks `{k}`")))
        };
        // Binance sends prices and quantities as strings: their text is the exact value.
        let dec = |k: &str| {
            Fixed::parse_bytes(text(k)?.as_bytes())
                .map_err(|e| Rejection::Decode(format!("{k}: {e}")))
        };
        let trade_id = num(self.id)?;
        let time_ms = num(self.time)?;
        let symbol = match symbol {
            Some(s) => s,
            None => text(self.symbol)?,
        };
        let time = self.time;
        Ok(Tick::new(
            symbol.to_owned(),
            dec(self.price)?,
            dec(self.qty)?,
            i64::try_from(time_ms)
                .map_err(|_| Rejection::Decode(format!("{time}: {time_ms} ms is out of range")))
                .and_then(|ms| scale_time(ms, 1_000_000, time, "ms"))?,
            trade_id,
        )
        .with_source(SOURCE)
        .with_side(
            data.get(self.buyer_maker)
                .and_then(Value::as_bool)
                .map(|m| if m { Side::Sell } else { Side::Buy }),
        )
        .with_trade_id(Some(trade_id)))
    }
}

/// One trade of Binance's REST trade lists (`GET /api/v3/historicalTrades`, and the futures'
/// `/fapi/v1/historicalTrades`): `{"id","price","qty","time","isBuyerMaker",...}` of `symbol`,
/// as the tick its `@trade` frame gives (same seq, trade id, time, price, size and side).
///
/// ```
/// use gostocks_connectors::websocket::binance_rest_trade;
/// let v = serde_json::json!({"id": 3071245454u64, "price": "28165.47000000", "qty": "0.00056000",
///     "quoteQty": "15.77266320", "time": 1680652799999u64, "isBuyerMaker": false, "isBestMatch": true});
/// let t = binance_rest_trade("BTCUSDT", &v).unwrap();
/// assert_eq!((t.seq, t.trade_id, t.time_ns), (3071245454, Some(3071245454), 1_680_652_799_999_000_000));
/// assert_eq!((t.price.to_string(), t.size.to_string()), ("28165.47".into(), "0.00056".into()));
/// ```
pub fn binance_rest_trade(symbol: &str, data: &Value) -> Result<Tick, Rejection> {
    let fields = TradeFields {
        symbol: "",
        id: "id",
        price: "price",
        qty: "qty",
        time: "time",
        buyer_maker: "isBuyerMaker",
    };
    fields.tick(data, Some(symbol), "REST trade")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(frame: &str) -> Output {
        let mut out = Output::default();
        Binance::new(&["BTCUSDT".into()], Some("ws://h"))
            .on_frame(frame, &mut out)
            .unwrap();
        out
    }

    #[test]
    fn url_names_one_trade_stream_per_symbol() {
        let b = Binance::new(
            &["BTCUSDT".into(), "ethusdt".into()],
            Some("ws://127.0.0.1:9/"),
        );
        assert_eq!(
            b.connect_url(),
            "ws://127.0.0.1:9/stream?streams=btcusdt@trade/ethusdt@trade"
        );
    }

    #[test]
    fn trades_decode_exactly_and_other_streams_are_counted() {
        let out = decode(
            r#"{"stream":"btcusdt@trade","data":{"e":"trade","E":1,"s":"BTCUSDT","t":3071245454,"p":"28165.47000000","q":"0.00056000","T":1680652799999,"m":false}}"#,
        );
        let t = out.records[0].as_ref().unwrap();
        assert_eq!(
            (
                t.price.to_string(),
                t.size.to_string(),
                t.time_ns,
                t.seq,
                t.side
            ),
            (
                "28165.47".into(),
                "0.00056".into(),
                1_680_652_799_999_000_000,
                3_071_245_454,
                Some(Side::Buy)
            )
        );
        let out = decode(r#"{"stream":"btcusdt@bookTicker","data":{"u":1,"s":"BTCUSDT"}}"#);
        assert_eq!((out.records.len(), out.ignored), (0, 1));
        let out = decode(r#"{"result":null,"id":1}"#);
        assert_eq!((out.records.len(), out.ignored), (0, 1));
    }

    #[test]
    fn malformed_frames_are_rejections_not_panics() {
        let out = decode(
            r#"{"stream":"btcusdt@trade","data":{"e":"trade","s":"BTCUSDT","t":1,"p":"abc","q":"1","T":1}}"#,
        );
        assert!(
            out.records[0]
                .as_ref()
                .unwrap_err()
                .to_string()
                .contains("abc")
        );
        let out = decode(
            r#"{"stream":"btcusdt@trade","data":{"e":"trade","s":"BTCUSDT","p":"1","q":"1","T":1}}"#,
        );
        assert!(
            out.records[0]
                .as_ref()
                .unwrap_err()
                .to_string()
                .contains("`t`")
        );
        // Unchecked, 18446744073710 ms * 10^6 wraps to 448384 ns.
        let out = decode(
            r#"{"stream":"btcusdt@trade","data":{"e":"trade","s":"BTCUSDT","t":1,"p":"1","q":"1","T":18446744073710}}"#,
        );
        let err = out.records[0].as_ref().unwrap_err().to_string();
        assert!(
            err.contains("T: 18446744073710 ms is out of range"),
            "{err}"
        );
        let out = decode("{not json");
        assert!(out.records[0].is_err());
        let out = decode(r#"{"error":{"code":2,"msg":"Invalid request"}}"#);
        assert_eq!(
            out.notices,
            vec![Notice::Error {
                code: Some(2),
                message: "Invalid request".into()
            }]
        );
    }
}
