//! Recorded quotes (the top of the book) in files: LOBSTER order books, Binance `@bookTicker`
//! frames of raw sessions and Alpaca `"q"` messages.
//!
//! - **LOBSTER**: the level-1 columns (`ask_price_1, ask_size_1, bid_price_1, bid_size_1`) of
//!   `*_orderbook_<L>.csv`, row-aligned with `*_message_<L>.csv`, which gives each row's time:
//!   a quote at every event that changes the top of the book (price or size), its `seq` the
//!   row number. Empty levels (`±9999999999`, size 0) are an empty side.
//! - **Binance**: `@bookTicker` frames; USD-M futures carry a transaction time `T` (ms), which
//!   is the event time; spot frames carry none, so the event time is the line's local receive
//!   time (ns, or µs in older recordings: below 10¹⁷ it is read as µs). `seq` is the update id
//!   `u`.
//! - **Alpaca**: `{"T":"q","S","bp","bs","ap","as","t"}`, `t` in RFC 3339 with up to ns; `seq`
//!   is the line number × 1024 plus the message's place in its frame.
//!
//! Every line is bounded by the same `max_record_bytes` as ticks; a longer one is rejected
//! without being held. Prices and sizes are exact decimals; a bad one is a rejection that names
//! its field.
//!
//! ```
//! use gostocks_connectors::file::QuoteFile;
//! let dir = std::env::temp_dir().join(format!("gostocks-quote-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir).unwrap();
//! let path = dir.join("session.txt");
//! std::fs::write(&path, concat!(
//!     r#"1723161254087891268 {"stream":"btcusdt@bookTicker","data":{"u":5,"s":"BTCUSDT","b":"61837.63","B":"3.7","a":"61837.64","A":"1.5"}}"#, "\n",
//!     r#"1723161254087891300 {"stream":"btcusdt@trade","data":{"e":"trade"}}"#, "\n",
//! )).unwrap();
//! let mut file = QuoteFile::open(&path, 1 << 20).unwrap().expect("a session with quotes");
//! let quotes: Vec<_> = file.by_ref().collect::<Result<_, _>>().unwrap();
//! assert_eq!(quotes.len(), 1);
//! assert_eq!((quotes[0].time_ns, quotes[0].seq, quotes[0].ask.to_string()), (1723161254087891268, 5, "61837.64".into()));
//! assert_eq!(file.counts().skipped, 1);
//! ```

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;
use gostocks_core::quotes::Quote;
use gostocks_core::symbol::excerpt;
use gostocks_core::{Fixed, Rejection, Symbol};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::Format;
use super::source::{
    TickFile, dec, field, int, lobster_name, seconds_to_ns, split_csv, trim_newline,
};
use crate::error::Error;
use crate::limits::{bound_reason, raw_excerpt, scale_time, too_long};

/// A quote that could not be read: its line, why, and an excerpt of the line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuoteRejected {
    /// 1-based line number (of the order book file, for LOBSTER).
    pub line: u64,
    /// Why, naming the field.
    pub reason: Rejection,
    /// The line, cut to its first [`MAX_RAW_BYTES`](crate::limits::MAX_RAW_BYTES).
    pub raw: String,
}

/// What a [`QuoteFile`] has read so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QuoteCounts {
    /// Lines read.
    pub lines: u64,
    /// Quotes decoded.
    pub quotes: u64,
    /// Records refused.
    pub rejected: u64,
    /// Lines or messages that carry no quote (trades, depth, an unchanged top of book).
    pub skipped: u64,
}

enum Kind {
    Lobster {
        symbol: Symbol,
        midnight_ns: i64,
        messages: Lines,
        /// The previous row's level 1, to see whether the top changed.
        top: Option<[i64; 4]>,
    },
    Binance,
    Alpaca,
}

/// A bounded line reader over a plain or gzip file.
struct Lines {
    reader: Box<dyn BufRead + Send>,
    buf: Vec<u8>,
    max: usize,
    path: PathBuf,
}

/// One line read: its bytes, or its length when over the limit.
enum Line {
    Text,
    TooLong(u64),
}

impl Lines {
    fn open(path: &Path, max: usize) -> Result<Lines, Error> {
        let io = |source| Error::Io {
            path: path.display().to_string(),
            source,
        };
        let mut file = BufReader::with_capacity(1 << 16, File::open(path).map_err(io)?);
        let gzip = file.fill_buf().map_err(io)?.starts_with(&[0x1f, 0x8b]);
        let reader: Box<dyn BufRead + Send> = if gzip {
            Box::new(BufReader::with_capacity(1 << 16, MultiGzDecoder::new(file)))
        } else {
            Box::new(file)
        };
        Ok(Lines {
            reader,
            buf: Vec::new(),
            max,
            path: path.to_owned(),
        })
    }

    /// The next line into `self.buf` (without its line break), or `None` at the end.
    fn next(&mut self) -> Result<Option<Line>, Error> {
        self.buf.clear();
        let limit = self.max.saturating_add(2) as u64;
        let io = |source| Error::Io {
            path: self.path.display().to_string(),
            source,
        };
        let n = (&mut self.reader)
            .take(limit)
            .read_until(b'\n', &mut self.buf)
            .map_err(io)?;
        if n == 0 {
            return Ok(None);
        }
        if self.buf.last() != Some(&b'\n') && n as u64 == limit {
            // Over the limit: pass over the rest without holding it.
            let mut len = n as u64;
            loop {
                let chunk = self.reader.fill_buf().map_err(io)?;
                if chunk.is_empty() {
                    break;
                }
                match chunk.iter().position(|&c| c == b'\n') {
                    Some(i) => {
                        len += i as u64;
                        self.reader.consume(i + 1);
                        break;
                    }
                    None => {
                        let k = chunk.len();
                        len += k as u64;
                        self.reader.consume(k);
                    }
                }
            }
            return Ok(Some(Line::TooLong(len)));
        }
        let keep = trim_newline(&self.buf).len();
        self.buf.truncate(keep);
        if keep > self.max {
            return Ok(Some(Line::TooLong(keep as u64)));
        }
        Ok(Some(Line::Text))
    }
}

/// The quotes of one recorded file, in file order.
pub struct QuoteFile {
    kind: Kind,
    lines: Lines,
    pending: std::collections::VecDeque<Result<Quote, QuoteRejected>>,
    counts: QuoteCounts,
    failed: bool,
}

impl QuoteFile {
    /// Opens the quotes of an input: a LOBSTER message or order book file (the other one is
    /// found beside it), or a raw Binance or Alpaca session. `Ok(None)` for a format without
    /// quotes (trade CSVs, JSON lines, Finnhub sessions).
    pub fn open(
        path: impl AsRef<Path>,
        max_record_bytes: usize,
    ) -> Result<Option<QuoteFile>, Error> {
        let path = path.as_ref();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let lobster_book = name.contains("_orderbook_");
        let format = if lobster_book {
            Format::Lobster
        } else {
            TickFile::open_core(path, Format::Auto, max_record_bytes)?.format()
        };
        let (kind, book) = match format {
            Format::Lobster => {
                let (messages, book) = if lobster_book {
                    (
                        path.with_file_name(name.replace("_orderbook_", "_message_")),
                        path.to_owned(),
                    )
                } else {
                    (
                        path.to_owned(),
                        path.with_file_name(name.replace("_message_", "_orderbook_")),
                    )
                };
                if !book.exists() {
                    return Err(Error::Format(format!(
                        "{}: LOBSTER quotes need the order book file beside the messages ({} is missing)",
                        path.display(),
                        book.display()
                    )));
                }
                let (symbol, midnight_ns) = lobster_name(&name)
                    .map_err(|why| Error::Format(format!("{}: {why}", path.display())))?;
                let symbol = Symbol::new(&symbol)
                    .map_err(|e| Error::Format(format!("{}: {e}", path.display())))?;
                let kind = Kind::Lobster {
                    symbol,
                    midnight_ns,
                    messages: Lines::open(&messages, max_record_bytes)?,
                    top: None,
                };
                (kind, book)
            }
            Format::BinanceRaw => (Kind::Binance, path.to_owned()),
            Format::AlpacaRaw => (Kind::Alpaca, path.to_owned()),
            _ => return Ok(None),
        };
        Ok(Some(QuoteFile {
            kind,
            lines: Lines::open(&book, max_record_bytes)?,
            pending: Default::default(),
            counts: QuoteCounts::default(),
            failed: false,
        }))
    }

    /// What has been read so far.
    pub fn counts(&self) -> QuoteCounts {
        self.counts
    }

    fn reject(&mut self, reason: Rejection) -> Result<Quote, QuoteRejected> {
        Err(QuoteRejected {
            line: self.counts.lines,
            reason: bound_reason(reason),
            raw: raw_excerpt(&self.lines.buf),
        })
    }

    /// Decodes the line in `self.lines.buf` into `self.pending`.
    fn decode(&mut self) {
        let line_no = self.counts.lines;
        match &mut self.kind {
            Kind::Lobster {
                symbol,
                midnight_ns,
                messages,
                top,
            } => {
                // The message row of the same number gives the time.
                let time = match messages.next() {
                    Ok(Some(Line::Text)) => {
                        let f = split_csv(&messages.buf);
                        field(&f, 0, "time").and_then(seconds_to_ns).and_then(|ns| {
                            midnight_ns
                                .checked_add(ns)
                                .and_then(|t| u64::try_from(t).ok())
                                .ok_or_else(|| Rejection::Decode("time: out of range".into()))
                        })
                    }
                    Ok(Some(Line::TooLong(len))) => Err(too_long(len, messages.max)),
                    Ok(None) => Err(Rejection::Decode(
                        "the message file ends before the order book file".into(),
                    )),
                    Err(e) => Err(Rejection::Decode(format!("message file: {e}"))),
                };
                let f = split_csv(&self.lines.buf);
                let level = |i: usize, name: &str| -> Result<i64, Rejection> {
                    int(field(&f, i, name)?, name)
                };
                let row = (|| -> Result<[i64; 4], Rejection> {
                    Ok([
                        level(0, "ask_price_1")?,
                        level(1, "ask_size_1")?,
                        level(2, "bid_price_1")?,
                        level(3, "bid_size_1")?,
                    ])
                })();
                let decoded = time.and_then(|t| row.map(|r| (t, r)));
                let record = match decoded {
                    Err(reason) => Some(Err(reason)),
                    Ok((_, r)) if *top == Some(r) => None,
                    Ok((t, r)) => {
                        *top = Some(r);
                        let side = |price: i64, size: i64, name: &str| {
                            if size == 0 {
                                return Ok((Fixed::ZERO, Fixed::ZERO));
                            }
                            let p = Fixed::from_mantissa(price, 4)
                                .map_err(|e| Rejection::Decode(format!("{name}_price_1: {e}")))?;
                            let s = Fixed::from_mantissa(size, 0)
                                .map_err(|e| Rejection::Decode(format!("{name}_size_1: {e}")))?;
                            Ok((p, s))
                        };
                        Some(side(r[2], r[3], "bid").and_then(|(bid, bid_size)| {
                            let (ask, ask_size) = side(r[0], r[1], "ask")?;
                            Quote::new(*symbol, t, line_no, bid, bid_size, ask, ask_size)
                        }))
                    }
                };
                match record {
                    None => self.counts.skipped += 1,
                    Some(Ok(q)) => self.pending.push_back(Ok(q)),
                    Some(Err(reason)) => {
                        let r = self.reject(reason);
                        self.pending.push_back(r);
                    }
                }
            }
            Kind::Binance => {
                let out = decode_binance_line(&self.lines.buf);
                self.push_decoded(out);
            }
            Kind::Alpaca => {
                let out = decode_alpaca_line(&self.lines.buf, line_no);
                self.push_decoded(out);
            }
        }
    }

    fn push_decoded(&mut self, out: Vec<Result<Quote, Rejection>>) {
        if out.is_empty() {
            self.counts.skipped += 1;
        }
        for record in out {
            let r = match record {
                Ok(q) => Ok(q),
                Err(reason) => self.reject(reason),
            };
            self.pending.push_back(r);
        }
    }
}

impl Iterator for QuoteFile {
    type Item = Result<Quote, QuoteRejected>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(record) = self.pending.pop_front() {
                match &record {
                    Ok(_) => self.counts.quotes += 1,
                    Err(_) => self.counts.rejected += 1,
                }
                return Some(record);
            }
            if self.failed {
                return None;
            }
            match self.lines.next() {
                Ok(None) => return None,
                Ok(Some(Line::Text)) => {
                    self.counts.lines += 1;
                    self.decode();
                }
                Ok(Some(Line::TooLong(len))) => {
                    self.counts.lines += 1;
                    if let Kind::Lobster { messages, .. } = &mut self.kind {
                        // Keep the two files row-aligned.
                        let _ = messages.next();
                    }
                    let r = self.reject(too_long(len, self.lines.max));
                    self.pending.push_back(r);
                }
                Err(e) => {
                    // A read error (a cut gzip stream) ends the file as its rejection.
                    self.failed = true;
                    self.counts.lines += 1;
                    let r = self.reject(Rejection::Decode(e.to_string()));
                    self.pending.push_back(r);
                }
            }
        }
    }
}

#[derive(Deserialize)]
struct BookTicker<'a> {
    #[serde(default)]
    e: Option<&'a str>,
    s: Option<&'a str>,
    u: Option<u64>,
    b: Option<&'a str>,
    #[serde(rename = "B")]
    bid_size: Option<&'a str>,
    a: Option<&'a str>,
    #[serde(rename = "A")]
    ask_size: Option<&'a str>,
    #[serde(rename = "T")]
    time: Option<i64>,
}

#[derive(Deserialize)]
struct Combined<'a> {
    stream: Option<&'a str>,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
}

/// Local receive times of recorded sessions: ns, or µs in older recordings.
fn local_time_ns(b: &[u8]) -> Result<u64, Rejection> {
    let v: i64 = int(b, "local receive time")?;
    let ns_per_unit = if v < 100_000_000_000_000_000 {
        1_000
    } else {
        1
    };
    let unit = if ns_per_unit == 1 { "ns" } else { "µs" };
    scale_time(v, ns_per_unit, "local receive time", unit).map(|t| t as u64)
}

/// A raw Binance line (`<local ts> <frame>`): the quote of a `@bookTicker` frame, none for
/// other streams.
fn decode_binance_line(line: &[u8]) -> Vec<Result<Quote, Rejection>> {
    let Some(space) = line.iter().position(|&c| c == b' ') else {
        return vec![Err(Rejection::Decode(
            "expected `<local ts> <frame>`".into(),
        ))];
    };
    binance_book_ticker(&line[space + 1..], || local_time_ns(&line[..space]))
        .into_iter()
        .collect()
}

/// The quote of a Binance `@bookTicker` frame (combined or bare), `None` for any other frame.
/// Its event time is the frame's transaction time `T` (futures), or else `receive_ns()` (spot
/// frames carry no time).
pub(crate) fn binance_book_ticker(
    frame: &[u8],
    receive_ns: impl FnOnce() -> Result<u64, Rejection>,
) -> Option<Result<Quote, Rejection>> {
    // Most frames are trades or depth: look at the stream name before parsing.
    if frame.starts_with(br#"{"stream":""#) && !memchr_book_ticker(frame) {
        return None;
    }
    let decoded = (|| -> Result<Option<Quote>, Rejection> {
        let combined: Combined = serde_json::from_slice(frame)
            .map_err(|e| Rejection::Decode(format!("frame is not JSON: {e}")))?;
        let payload = match (combined.stream, combined.data) {
            (Some(stream), Some(data)) if stream.ends_with("@bookTicker") => data.get(),
            (Some(_), _) => return Ok(None),
            (None, _) => std::str::from_utf8(frame).unwrap_or_default(),
        };
        let t: BookTicker = serde_json::from_str(payload)
            .map_err(|e| Rejection::Decode(format!("bookTicker: {e}")))?;
        if t.e.is_some_and(|e| e != "bookTicker") || (t.b.is_none() && t.a.is_none()) {
            return Ok(None);
        }
        fn need<'v>(v: Option<&'v str>, name: &str) -> Result<&'v str, Rejection> {
            v.ok_or_else(|| Rejection::Decode(format!("bookTicker: missing `{name}`")))
        }
        let symbol =
            Symbol::new(need(t.s, "s")?).map_err(|e| Rejection::Symbol(excerpt(&e.to_string())))?;
        let time_ns = match t.time {
            Some(ms) => scale_time(ms, 1_000_000, "T", "ms")? as u64,
            None => receive_ns()?,
        };
        let seq =
            t.u.ok_or_else(|| Rejection::Decode("bookTicker: missing `u`".into()))?;
        Quote::new(
            symbol,
            time_ns,
            seq,
            dec(need(t.b, "b")?.as_bytes(), "b")?,
            dec(need(t.bid_size, "B")?.as_bytes(), "B")?,
            dec(need(t.a, "a")?.as_bytes(), "a")?,
            dec(need(t.ask_size, "A")?.as_bytes(), "A")?,
        )
        .map(Some)
    })();
    decoded.transpose()
}

/// Whether a combined frame's stream name ends in `@bookTicker`.
fn memchr_book_ticker(frame: &[u8]) -> bool {
    let rest = &frame[br#"{"stream":""#.len()..];
    rest.iter()
        .position(|&c| c == b'"')
        .is_some_and(|end| rest[..end].ends_with(b"@bookTicker"))
}

#[derive(Deserialize)]
struct AlpacaQuote<'a> {
    #[serde(rename = "T")]
    kind: Option<&'a str>,
    #[serde(rename = "S")]
    symbol: Option<String>,
    #[serde(borrow)]
    bp: Option<&'a RawValue>,
    #[serde(borrow)]
    bs: Option<&'a RawValue>,
    #[serde(borrow)]
    ap: Option<&'a RawValue>,
    #[serde(borrow, rename = "as")]
    ask_size: Option<&'a RawValue>,
    t: Option<&'a str>,
}

/// A raw Alpaca line (`<local ts> <frame>`): the quotes of its `"q"` messages.
fn decode_alpaca_line(line: &[u8], line_no: u64) -> Vec<Result<Quote, Rejection>> {
    let Some(space) = line.iter().position(|&c| c == b' ') else {
        return vec![Err(Rejection::Decode(
            "expected `<local ts> <frame>`".into(),
        ))];
    };
    alpaca_quotes(&line[space + 1..], line_no).unwrap_or_else(|e| vec![Err(e)])
}

/// The quotes of the `"q"` messages of an Alpaca frame (an array of messages, or one), each
/// valid or its rejection; `seq` = `frame_no` × 1024 + the message's place in the frame. `Err`
/// when the frame is not Alpaca messages at all.
pub(crate) fn alpaca_quotes(
    frame: &[u8],
    frame_no: u64,
) -> Result<Vec<Result<Quote, Rejection>>, Rejection> {
    let frame = frame.trim_ascii_start();
    let messages: Result<Vec<AlpacaQuote>, _> = if frame.starts_with(b"[") {
        serde_json::from_slice(frame)
    } else {
        serde_json::from_slice(frame).map(|one| vec![one])
    };
    let messages =
        messages.map_err(|e| Rejection::Decode(format!("frame is not an Alpaca message: {e}")))?;
    Ok(messages
        .into_iter()
        .enumerate()
        .filter(|(_, m)| m.kind == Some("q"))
        .map(|(i, m)| {
            let number = |v: Option<&RawValue>, name: &str| -> Result<Fixed, Rejection> {
                let v = v.ok_or_else(|| Rejection::Decode(format!("quote: missing `{name}`")))?;
                dec(v.get().trim_matches('"').as_bytes(), name)
            };
            let symbol = m
                .symbol
                .as_deref()
                .ok_or_else(|| Rejection::Decode("quote: missing `S`".into()))?;
            let symbol =
                Symbol::new(symbol).map_err(|e| Rejection::Symbol(excerpt(&e.to_string())))?;
            let t =
                m.t.ok_or_else(|| Rejection::Decode("quote: missing `t`".into()))?;
            let time_ns = crate::websocket::rfc3339_ns(t)
                .and_then(|t| u64::try_from(t).ok())
                .ok_or_else(|| {
                    Rejection::Decode(format!("t: not an RFC 3339 time: {}", excerpt(t)))
                })?;
            Quote::new(
                symbol,
                time_ns,
                frame_no.saturating_mul(1024).saturating_add(i as u64),
                number(m.bp, "bp")?,
                number(m.bs, "bs")?,
                number(m.ap, "ap")?,
                number(m.ask_size, "as")?,
            )
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, text: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("gostocks-quotes-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn lobster_quotes_come_at_changes_of_the_top_with_message_times() {
        let messages = write(
            "ZZ_2012-06-21_34200000_57600000_message_1.csv",
            "34200.5,1,1,10,1000000,1\n34201,1,2,10,999000,-1\n34202,3,2,10,999000,-1\n34203,1,3,5,9999999999,1\n",
        );
        write(
            "ZZ_2012-06-21_34200000_57600000_orderbook_1.csv",
            "1005000,10,1000000,5\n1005000,10,1000000,5\n1005000,10,999000,7\n9999999999,0,999000,7\n",
        );
        let mut file = QuoteFile::open(&messages, 1 << 20).unwrap().unwrap();
        let quotes: Vec<Quote> = file.by_ref().collect::<Result<_, _>>().unwrap();
        // Row 2 repeats row 1's top: no quote.
        assert_eq!(quotes.len(), 3);
        assert_eq!(file.counts().skipped, 1);
        assert_eq!(quotes[0].ask.to_string(), "100.5");
        assert_eq!(quotes[0].bid.to_string(), "100");
        assert_eq!(
            (quotes[1].seq, quotes[1].bid.to_string()),
            (3, "99.9".into())
        );
        assert_eq!(quotes[1].time_ns - quotes[0].time_ns, 1_500_000_000);
        assert!(!quotes[2].two_sided() && quotes[2].ask_size == Fixed::ZERO);
    }

    #[test]
    fn bad_rows_are_rejected_naming_the_field_and_keep_the_files_aligned() {
        let messages = write(
            "YY_2012-06-21_34200000_57600000_message_1.csv",
            "34200,1,1,10,1000000,1\n34201,1,1,10,1000000,1\n34202,1,1,10,1000000,1\n",
        );
        write(
            "YY_2012-06-21_34200000_57600000_orderbook_1.csv",
            "1005000,10,oops,5\n1005000,-3,1000000,5\n1005000,10,1000000,5\n",
        );
        let records: Vec<_> = QuoteFile::open(&messages, 1 << 20)
            .unwrap()
            .unwrap()
            .collect();
        let e0 = records[0].as_ref().unwrap_err();
        assert!(
            e0.reason.to_string().contains("bid_price_1"),
            "{:?}",
            e0.reason
        );
        let e1 = records[1].as_ref().unwrap_err();
        assert!(
            e1.reason.to_string().contains("ask_size"),
            "{:?}",
            e1.reason
        );
        let q = records[2].as_ref().unwrap();
        assert_eq!(q.time_ns % 1_000_000_000, 0);
        assert_eq!(q.seq, 3);
    }

    #[test]
    fn binance_book_tickers_use_the_transaction_time_or_the_receive_time() {
        let long = "9".repeat(300);
        let path = write(
            "binance.txt",
            &[
                r#"1680652800004231 {"stream":"btcusdt@bookTicker","data":{"u":36090299876,"s":"BTCUSDT","b":"28165.47000000","B":"7.98680000","a":"28165.48000000","A":"3.26888000"}}"#,
                "\n",
                r#"1723161255088169167 {"stream":"btcusdt@bookTicker","data":{"e":"bookTicker","u":5123107839020,"s":"BTCUSDT","b":"61800.20","B":"2.507","a":"61800.30","A":"2.510","T":1723161256313,"E":1723161256313}}"#,
                "\n",
                r#"1723161255088169168 {"stream":"btcusdt@bookTicker","data":{"u":1,"s":"BTCUSDT","b":"x","B":"1","a":"1","A":"1"}}"#,
                "\n",
                &long,
                "\n",
            ]
            .concat(),
        );
        let records: Vec<_> = QuoteFile::open(&path, 200).unwrap().unwrap().collect();
        let q0 = records[0].as_ref().unwrap();
        assert_eq!(q0.time_ns, 1_680_652_800_004_231_000, "µs receive time");
        assert_eq!(q0.bid.to_string(), "28165.47");
        let q1 = records[1].as_ref().unwrap();
        assert_eq!(
            (q1.time_ns, q1.seq),
            (1_723_161_256_313_000_000, 5123107839020)
        );
        let e = records[2].as_ref().unwrap_err();
        assert!(
            e.reason.to_string().starts_with("undecodable record: b:"),
            "{:?}",
            e.reason
        );
        let e = records[3].as_ref().unwrap_err();
        assert!(e.reason.to_string().contains("300 bytes"), "{:?}", e.reason);
        assert!(e.raw.len() <= crate::limits::MAX_RAW_BYTES);
    }

    #[test]
    fn alpaca_quote_messages_keep_exact_prices_and_ns_times() {
        let path = write(
            "alpaca.txt",
            concat!(
                r#"1613998304208123456 [{"T":"t","S":"AAPL","i":1,"p":1,"s":1,"t":"2021-02-22T15:51:44.208123456Z"},{"T":"q","S":"AAPL","bx":"U","bp":123.45,"bs":2,"ax":"Q","ap":123.46,"as":3,"t":"2021-02-22T15:51:44.208123457Z","c":["R"],"z":"C"}]"#,
                "\n",
                r#"1613998304208123458 [{"T":"success","msg":"connected"}]"#,
                "\n",
            ),
        );
        let mut file = QuoteFile::open(&path, 1 << 20).unwrap().unwrap();
        let quotes: Vec<Quote> = file.by_ref().collect::<Result<_, _>>().unwrap();
        assert_eq!(quotes.len(), 1);
        assert_eq!(quotes[0].time_ns, 1_614_009_104_208_123_457);
        assert_eq!(quotes[0].ask.to_string(), "123.46");
        assert_eq!(quotes[0].seq, 1024 + 1);
        assert_eq!(file.counts().skipped, 1);
    }

    #[test]
    fn formats_without_quotes_open_as_none() {
        let path = write("t.csv", "symbol,time_ns,seq,price,size\nAAPL,1,0,1,1\n");
        assert!(QuoteFile::open(&path, 1 << 20).unwrap().is_none());
    }
}
