//! Finnhub (`wss://ws.finnhub.io?token=...`): `{"type":"subscribe","symbol":...}` per symbol;
//! trades come as `{"type":"trade","data":[{"s","p","t","v","c"}]}`, keep-alives as
//! `{"type":"ping"}` (no answer needed), errors as `{"type":"error","msg":...}`.
//!
//! Finnhub gives no trade id. A tick's `seq` is `t (ms) * 1000 + its position in the frame`:
//! deterministic, so a recorded session replays to the same ticks, and it orders the trades of
//! one millisecond as Finnhub listed them. Duplicates after a reconnect are found by content
//! (see [`Dedup`](super::Dedup)).

use gostocks_core::{Rejection, Tick};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::{Notice, Output, Provider, ProviderError, raw_decimal};
use crate::limits::scale_time;

/// The `source` of Finnhub ticks.
const SOURCE: &str = "finnhub";
/// Trades of one frame numbered in `seq` before positions would spill into the next millisecond.
const MAX_POSITION: u64 = 999;

/// The Finnhub protocol.
#[derive(Clone)]
pub struct Finnhub {
    symbols: Vec<String>,
    base: String,
    token: String,
}

impl std::fmt::Debug for Finnhub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token is a secret: never in a log line, not even a debug one.
        f.debug_struct("Finnhub")
            .field("symbols", &self.symbols)
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl Finnhub {
    /// The public endpoint.
    pub const DEFAULT_URL: &str = "wss://ws.finnhub.io";

    /// Trades of `symbols` (as Finnhub names them: `AAPL`, `BINANCE:BTCUSDT`) from `base` (default
    /// [`Self::DEFAULT_URL`]) with an API token.
    pub fn new(symbols: &[String], base: Option<&str>, token: impl Into<String>) -> Finnhub {
        Finnhub {
            symbols: symbols.to_vec(),
            base: base.unwrap_or(Self::DEFAULT_URL).to_owned(),
            token: token.into(),
        }
    }
}

impl Provider for Finnhub {
    fn name(&self) -> &'static str {
        SOURCE
    }

    fn connect_url(&self) -> String {
        // `wss://ws.finnhub.io?token=` as Finnhub writes it has no path; an HTTP request needs
        // one, so `/` is made explicit.
        let (base, query) = match self.base.split_once('?') {
            Some((b, q)) => (b, Some(q)),
            None => (self.base.as_str(), None),
        };
        let has_path = base
            .split_once("://")
            .is_some_and(|(_, rest)| rest.contains('/'));
        let slash = if has_path { "" } else { "/" };
        match query {
            Some(q) => format!("{base}{slash}?{q}&token={}", self.token),
            None => format!("{base}{slash}?token={}", self.token),
        }
    }

    fn on_connect(&mut self, out: &mut Output) {
        for symbol in &self.symbols {
            out.replies
                .push(serde_json::json!({"type": "subscribe", "symbol": symbol}).to_string());
        }
    }

    fn on_frame(&mut self, frame: &str, out: &mut Output) -> Result<(), ProviderError> {
        decode_frame(frame.as_bytes(), out);
        Ok(())
    }
}

#[derive(Deserialize)]
struct Frame<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<&'a str>,
    #[serde(default, borrow)]
    data: Option<Vec<&'a RawValue>>,
    #[serde(default)]
    msg: Option<String>,
}

#[derive(Deserialize)]
struct Trade<'a> {
    s: Option<String>,
    #[serde(borrow)]
    p: Option<&'a RawValue>,
    t: Option<i64>,
    #[serde(borrow)]
    v: Option<&'a RawValue>,
    #[serde(default)]
    c: Option<Vec<String>>,
}

/// Decodes one Finnhub frame into `out`.
pub(crate) fn decode_frame(frame: &[u8], out: &mut Output) {
    let parsed: Frame = match serde_json::from_slice(frame) {
        Ok(f) => f,
        Err(e) => {
            out.records.push(Err(Rejection::Decode(format!(
                "frame is not a Finnhub message: {e}"
            ))));
            return;
        }
    };
    match parsed.kind {
        Some("trade") => {
            for (position, raw) in parsed.data.unwrap_or_default().into_iter().enumerate() {
                out.records.push(trade(raw, position as u64));
            }
        }
        Some("error") => out.notices.push(Notice::Error {
            code: None,
            message: parsed.msg.unwrap_or_default(),
        }),
        // Pings only keep the connection open; news and unknown types are not trades.
        _ => out.ignored += 1,
    }
}

fn trade(raw: &RawValue, position: u64) -> Result<Tick, Rejection> {
    let t: Trade = serde_json::from_str(raw.get())
        .map_err(|e| Rejection::Decode(format!("bad Finnhub trade: {e}")))?;
    let symbol =
        t.s.ok_or_else(|| Rejection::Decode("trade lacks `s`".into()))?;
    let time_ms =
        t.t.ok_or_else(|| Rejection::Decode("trade lacks `t`".into()))?;
    let time_ns = scale_time(time_ms, 1_000_000, "t", "ms")?;
    Ok(Tick::new(
        symbol,
        raw_decimal(t.p, "p")?,
        raw_decimal(t.v, "v")?,
        time_ns,
        u64::try_from(time_ms).unwrap_or(0) * (MAX_POSITION + 1) + position.min(MAX_POSITION),
    )
    .with_source(SOURCE)
    .with_conditions(t.c.unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finnhub() -> Finnhub {
        Finnhub::new(&["AAPL".into(), "BINANCE:BTCUSDT".into()], None, "tok")
    }

    #[test]
    fn subscribes_per_symbol_and_keeps_the_token_out_of_debug() {
        let mut f = finnhub();
        let mut out = Output::default();
        f.on_connect(&mut out);
        assert_eq!(
            out.replies,
            [
                r#"{"symbol":"AAPL","type":"subscribe"}"#,
                r#"{"symbol":"BINANCE:BTCUSDT","type":"subscribe"}"#
            ]
        );
        assert_eq!(f.connect_url(), "wss://ws.finnhub.io/?token=tok");
        let local = Finnhub::new(&[], Some("ws://127.0.0.1:9/ws?x=1"), "t");
        assert_eq!(local.connect_url(), "ws://127.0.0.1:9/ws?x=1&token=t");
        assert!(!format!("{f:?}").contains("tok\""));
    }

    #[test]
    fn trades_keep_exact_decimals_and_a_deterministic_seq() {
        let mut out = Output::default();
        finnhub()
            .on_frame(
                r#"{"data":[{"c":["1","8"],"p":7296.89,"s":"BINANCE:BTCUSDT","t":1575526691134,"v":0.011467},{"c":null,"p":185.1,"s":"AAPL","t":1575526691134,"v":100}],"type":"trade"}"#,
                &mut out,
            )
            .unwrap();
        let a = out.records[0].as_ref().unwrap();
        assert_eq!(
            (a.price.to_string(), a.size.to_string(), a.time_ns, a.seq),
            (
                "7296.89".into(),
                "0.011467".into(),
                1_575_526_691_134_000_000,
                1_575_526_691_134_000
            )
        );
        assert_eq!(a.conditions, ["1", "8"]);
        assert_eq!(out.records[1].as_ref().unwrap().seq, 1_575_526_691_134_001);
    }

    #[test]
    fn pings_unknown_types_errors_and_garbage() {
        let mut out = Output::default();
        let mut f = finnhub();
        f.on_frame(r#"{"type":"ping"}"#, &mut out).unwrap();
        f.on_frame(r#"{"type":"news","data":[]}"#, &mut out)
            .unwrap();
        assert_eq!(out.ignored, 2);
        f.on_frame(
            r#"{"type":"error","msg":"Subscribing to too many symbols"}"#,
            &mut out,
        )
        .unwrap();
        assert_eq!(
            out.notices,
            [Notice::Error {
                code: None,
                message: "Subscribing to too many symbols".into()
            }]
        );
        f.on_frame("]]", &mut out).unwrap();
        f.on_frame(
            r#"{"type":"trade","data":[{"s":"AAPL","p":"x","t":1,"v":1}]}"#,
            &mut out,
        )
        .unwrap();
        assert_eq!(out.records.iter().filter(|r| r.is_err()).count(), 2);
    }

    #[test]
    fn trade_times_that_would_overflow_are_rejected_naming_t() {
        let mut out = Output::default();
        for t in ["18446744073710", "-1"] {
            let frame =
                format!(r#"{{"type":"trade","data":[{{"s":"AAPL","p":1,"t":{t},"v":1}}]}}"#);
            finnhub().on_frame(&frame, &mut out).unwrap();
        }
        let reasons: Vec<String> = out
            .records
            .iter()
            .map(|r| r.as_ref().unwrap_err().to_string())
            .collect();
        assert!(
            reasons[0].contains("t: 18446744073710 ms is out of range"),
            "{reasons:?}"
        );
        assert!(
            reasons[1].contains("t: -1 ms is before 1970"),
            "{reasons:?}"
        );
    }
}
