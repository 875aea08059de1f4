//! Alpaca market data stream v2 (`wss://stream.data.alpaca.markets/v2/iex` or `.../sip`).
//!
//! The server greets with `[{"T":"success","msg":"connected"}]`; the client answers
//! `{"action":"auth","key","secret"}`, and after `authenticated` sends
//! `{"action":"subscribe","trades":[...]}`. Every frame is an array of messages; trades are
//! `{"T":"t","S","i","x","p","s","c","t","z"}` with `t` in RFC 3339 with up to ns. A tick's `seq`
//! and trade id are Alpaca's `i`. Ids are per venue, not contiguous per symbol, so gaps cannot be
//! told from ids and duplicates after a reconnect are found by content (which includes `i`).

use gostocks_core::symbol::excerpt;
use gostocks_core::{Rejection, Tick};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::{Notice, Output, Provider, ProviderError, raw_decimal};
use crate::file::eastern::{days_from_civil, days_in_month};

/// The `source` of Alpaca ticks.
const SOURCE: &str = "alpaca";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Waiting for the greeting.
    Connecting,
    /// Credentials sent.
    Authenticating,
    /// Subscribed (or subscribing): trades flow.
    Streaming,
}

/// The Alpaca protocol.
#[derive(Clone)]
pub struct Alpaca {
    symbols: Vec<String>,
    url: String,
    key: String,
    secret: String,
    state: State,
    /// Quotes asked for ([`Alpaca::with_quotes`]).
    quotes: bool,
    /// Text frames seen, for the quotes' `seq`.
    frames: u64,
}

impl std::fmt::Debug for Alpaca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Key and secret are credentials: never in a log line.
        f.debug_struct("Alpaca")
            .field("symbols", &self.symbols)
            .field("url", &self.url)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl Alpaca {
    /// The free IEX feed; `.../v2/sip` is the consolidated feed of paid plans.
    pub const DEFAULT_URL: &str = "wss://stream.data.alpaca.markets/v2/iex";

    /// Trades of `symbols` from `url` (default [`Self::DEFAULT_URL`]) with an API key and secret.
    pub fn new(
        symbols: &[String],
        url: Option<&str>,
        key: impl Into<String>,
        secret: impl Into<String>,
    ) -> Alpaca {
        Alpaca {
            symbols: symbols.to_vec(),
            url: url.unwrap_or(Self::DEFAULT_URL).to_owned(),
            key: key.into(),
            secret: secret.into(),
            state: State::Connecting,
            quotes: false,
            frames: 0,
        }
    }

    /// Quotes too: `subscribe` asks for `quotes` beside `trades`, and `{"T":"q"}` messages
    /// become [`Output::quotes`]. A quote's `seq` is the number of the text frame it came in
    /// (counted from 1 over the whole run, as the lines of a `--record` file are) × 1024 plus
    /// its place in the frame, so a recording replays to the same quotes.
    pub fn with_quotes(mut self) -> Alpaca {
        self.quotes = true;
        self
    }

    fn error(&self, code: i64, message: String) -> Result<(), ProviderError> {
        // Alpaca's documented codes; `retry` is whether reconnecting can change the answer.
        let (hint, retry) = match code {
            400 => (
                "gostocks sent a message the server did not understand; please report it",
                false,
            ),
            401 => (
                "the server wanted authentication first; please report it",
                false,
            ),
            402 => (
                "check APCA_API_KEY_ID and APCA_API_SECRET_KEY (paper and live keys differ)",
                false,
            ),
            403 => return Ok(()),
            404 => ("authentication took too long; reconnecting", true),
            405 => ("too many symbols for this plan: subscribe to fewer", false),
            // After a dropped connection Alpaca may still count the old one for a while, so this
            // clears up on its own unless another program really uses the same keys.
            406 => (
                "another connection uses these keys (one per account); close it. Retrying",
                true,
            ),
            407 => ("the client fell behind the stream; reconnecting", true),
            409 => (
                "the plan does not include this feed: use .../v2/iex with --url",
                false,
            ),
            410 => ("this feed does not offer that subscription", false),
            500 => ("Alpaca had an internal error; reconnecting", true),
            _ => ("unknown error code; reconnecting", true),
        };
        Err(ProviderError {
            provider: SOURCE,
            code: Some(code),
            message,
            hint: hint.to_owned(),
            retry,
        })
    }
}

impl Provider for Alpaca {
    fn name(&self) -> &'static str {
        SOURCE
    }

    fn connect_url(&self) -> String {
        self.url.clone()
    }

    fn on_connect(&mut self, _out: &mut Output) {
        self.state = State::Connecting;
    }

    fn on_frame(&mut self, frame: &str, out: &mut Output) -> Result<(), ProviderError> {
        let first_notice = out.notices.len();
        self.frames += 1;
        decode_frame(frame.as_bytes(), out);
        if self.quotes {
            // A frame that is not JSON is already decode_frame's rejection.
            if let Ok(quotes) = crate::file::quotes::alpaca_quotes(frame.as_bytes(), self.frames) {
                out.ignored = out.ignored.saturating_sub(quotes.len() as u64);
                out.quotes.extend(quotes);
            }
        }
        let notices: Vec<Notice> = out.notices[first_notice..].to_vec();
        for notice in notices {
            match notice {
                Notice::Connected if self.state == State::Connecting => {
                    out.replies.push(
                        serde_json::json!({"action": "auth", "key": self.key, "secret": self.secret})
                            .to_string(),
                    );
                    self.state = State::Authenticating;
                }
                Notice::Authenticated => {
                    out.replies.push(
                        if self.quotes {
                            serde_json::json!({"action": "subscribe", "trades": self.symbols, "quotes": self.symbols})
                        } else {
                            serde_json::json!({"action": "subscribe", "trades": self.symbols})
                        }
                        .to_string(),
                    );
                    self.state = State::Streaming;
                }
                Notice::Error { code, message } => {
                    self.error(code.unwrap_or(0), message)?;
                }
                _ => {}
            }
        }
        Ok(())
    }
}

#[derive(Deserialize)]
struct Message<'a> {
    #[serde(rename = "T")]
    kind: Option<&'a str>,
    msg: Option<String>,
    code: Option<i64>,
    #[serde(rename = "S")]
    symbol: Option<String>,
    i: Option<u64>,
    #[serde(borrow)]
    p: Option<&'a RawValue>,
    #[serde(borrow)]
    s: Option<&'a RawValue>,
    #[serde(default)]
    c: Option<Vec<String>>,
    t: Option<&'a str>,
    trades: Option<Vec<String>>,
}

/// Decodes one Alpaca frame (an array of messages, or a single message) into `out`.
pub(crate) fn decode_frame(frame: &[u8], out: &mut Output) {
    let text = frame.trim_ascii_start();
    let raws: Vec<&RawValue> = if text.starts_with(b"[") {
        serde_json::from_slice(frame)
    } else {
        serde_json::from_slice(frame).map(|one| vec![one])
    }
    .unwrap_or_else(|e| {
        out.records.push(Err(Rejection::Decode(format!(
            "frame is not an Alpaca message: {e}"
        ))));
        Vec::new()
    });
    for raw in raws {
        let m: Message = match serde_json::from_str(raw.get()) {
            Ok(m) => m,
            Err(e) => {
                out.records
                    .push(Err(Rejection::Decode(format!("bad Alpaca message: {e}"))));
                continue;
            }
        };
        match m.kind {
            Some("t") => out.records.push(trade(m)),
            Some("success") if m.msg.as_deref() == Some("connected") => {
                out.notices.push(Notice::Connected);
            }
            Some("success") if m.msg.as_deref() == Some("authenticated") => {
                out.notices.push(Notice::Authenticated);
            }
            Some("subscription") => out.notices.push(Notice::Subscribed(format!(
                "trades {:?}",
                m.trades.unwrap_or_default()
            ))),
            Some("error") => out.notices.push(Notice::Error {
                code: m.code,
                message: m.msg.unwrap_or_default(),
            }),
            // Quotes, bars, statuses, corrections and cancellations: not trades.
            _ => out.ignored += 1,
        }
    }
}

fn trade(m: Message<'_>) -> Result<Tick, Rejection> {
    let symbol = m
        .symbol
        .ok_or_else(|| Rejection::Decode("trade lacks `S`".into()))?;
    let id =
        m.i.ok_or_else(|| Rejection::Decode("trade lacks `i`".into()))?;
    let t =
        m.t.ok_or_else(|| Rejection::Decode("trade lacks `t`".into()))?;
    Ok(Tick::new(
        symbol,
        raw_decimal(m.p, "p")?,
        raw_decimal(m.s, "s")?,
        rfc3339_ns(t).filter(|ns| *ns >= 0).ok_or_else(|| {
            Rejection::Decode(format!(
                "`t` is not an RFC 3339 time from 1970 to 2262: {}",
                excerpt(t)
            ))
        })?,
        id,
    )
    .with_source(SOURCE)
    .with_trade_id(Some(id))
    .with_conditions(m.c.unwrap_or_default()))
}

/// `2021-02-22T15:51:44.208123456Z` (or with a `+hh:mm` offset) in ns since the epoch, exactly;
/// `None` unless it is a calendar date and a time that fits an `i64` of ns.
pub(crate) fn rfc3339_ns(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let d = b.get(r)?;
        d.iter()
            .all(u8::is_ascii_digit)
            .then(|| d.iter().fold(0i64, |v, c| v * 10 + i64::from(c - b'0')))
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo)
        || d < 1
        || d > i64::from(days_in_month(y, mo as u32))
        || h > 23
        || mi > 59
        || sec > 60
    {
        return None;
    }
    let mut i = 19;
    let mut nanos = 0i64;
    if b[i] == b'.' {
        let start = i + 1;
        let mut end = start;
        while end < b.len() && b[end].is_ascii_digit() {
            end += 1;
        }
        if end == start || end - start > 9 {
            return None;
        }
        nanos = num(start..end)? * 10i64.pow(9 - (end - start) as u32);
        i = end;
    }
    let offset_s = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
            let off = num(i + 1..i + 3)? * 3600 + num(i + 4..i + 6)? * 60;
            if *sign == b'+' { off } else { -off }
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo as u32, d as u32);
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec - offset_s;
    secs.checked_mul(1_000_000_000)?.checked_add(nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alpaca() -> Alpaca {
        Alpaca::new(
            &["AAPL".into(), "MSFT".into()],
            Some("ws://h/v2/test"),
            "KEY",
            "SECRET",
        )
    }

    #[test]
    fn handshake_authenticates_then_subscribes() {
        let mut a = alpaca();
        let mut out = Output::default();
        a.on_connect(&mut out);
        assert!(out.replies.is_empty(), "Alpaca speaks first");
        a.on_frame(r#"[{"T":"success","msg":"connected"}]"#, &mut out)
            .unwrap();
        assert_eq!(
            out.replies,
            [r#"{"action":"auth","key":"KEY","secret":"SECRET"}"#]
        );
        let mut out = Output::default();
        a.on_frame(r#"[{"T":"success","msg":"authenticated"}]"#, &mut out)
            .unwrap();
        assert_eq!(
            out.replies,
            [r#"{"action":"subscribe","trades":["AAPL","MSFT"]}"#]
        );
        assert!(!format!("{a:?}").contains("SECRET"));
    }

    #[test]
    fn trades_in_arrays_keep_exact_decimals_and_ns_times() {
        let mut out = Output::default();
        alpaca()
            .on_frame(
                r#"[{"T":"t","S":"AAPL","i":52983525029461,"x":"V","p":173.18,"s":100,"c":["@"],"t":"2021-02-22T15:51:44.208123456Z","z":"C"},{"T":"q","S":"AAPL"}]"#,
                &mut out,
            )
            .unwrap();
        let t = out.records[0].as_ref().unwrap();
        assert_eq!(
            (t.price.to_string(), t.size.to_string(), t.seq, t.trade_id),
            (
                "173.18".into(),
                "100".into(),
                52_983_525_029_461,
                Some(52_983_525_029_461)
            )
        );
        assert_eq!(t.time_ns, 1_614_009_104_208_123_456);
        assert_eq!(out.ignored, 1);
    }

    #[test]
    fn errors_say_what_to_do_and_whether_to_retry() {
        let mut a = alpaca();
        let mut out = Output::default();
        let bad_keys = a
            .on_frame(
                r#"[{"T":"error","code":402,"msg":"auth failed"}]"#,
                &mut out,
            )
            .unwrap_err();
        assert!(!bad_keys.retry);
        assert!(
            bad_keys.to_string().contains("APCA_API_KEY_ID"),
            "{bad_keys}"
        );
        let limit = a
            .on_frame(
                r#"[{"T":"error","code":406,"msg":"connection limit exceeded"}]"#,
                &mut out,
            )
            .unwrap_err();
        assert!(limit.retry);
        assert!(limit.to_string().contains("406"), "{limit}");
        assert!(
            a.on_frame(
                r#"[{"T":"error","code":403,"msg":"already authenticated"}]"#,
                &mut out
            )
            .is_ok()
        );
    }

    #[test]
    fn rfc3339_times_are_exact() {
        assert_eq!(rfc3339_ns("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            rfc3339_ns("2021-02-22T15:51:44.208Z"),
            Some(1_614_009_104_208_000_000)
        );
        assert_eq!(
            rfc3339_ns("2021-02-22T10:51:44.5-05:00"),
            Some(1_614_009_104_500_000_000)
        );
        assert_eq!(rfc3339_ns("2021-02-22 15:51:44"), None);
        assert_eq!(rfc3339_ns("2021-13-22T15:51:44Z"), None);
        assert_eq!(rfc3339_ns("2021-02-22T15:51:44.1234567891Z"), None);
    }

    #[test]
    fn rfc3339_times_must_be_calendar_dates_in_range() {
        assert_eq!(rfc3339_ns("2021-02-29T00:00:00Z"), None);
        assert_eq!(rfc3339_ns("2021-04-31T00:00:00Z"), None);
        assert!(rfc3339_ns("2020-02-29T00:00:00Z").is_some());
        assert!(rfc3339_ns("2262-04-11T23:47:16Z").is_some());
        assert_eq!(rfc3339_ns("2262-04-11T23:47:17Z"), None, "past i64 ns");
        assert_eq!(rfc3339_ns("9999-12-31T23:59:59Z"), None);
        let mut out = Output::default();
        decode_frame(
            br#"[{"T":"t","S":"AAPL","i":1,"p":1,"s":1,"t":"1969-12-31T23:59:59Z"}]"#,
            &mut out,
        );
        let err = out.records[0].as_ref().unwrap_err().to_string();
        assert!(err.contains("from 1970 to 2262"), "{err}");
    }
}
