//! Reading tick files: format detection and one decoder per format.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use flate2::read::MultiGzDecoder;
use gostocks_core::{Fixed, Rejection, Side, Symbol, Tick, Trade};

use super::Format;
use super::eastern::eastern_midnight_ns;
use crate::error::Error;
use crate::websocket::{self, Output};

/// A record that could not become a tick: its line, why, and the line itself (for a dead-letter
/// file).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejected {
    /// 1-based line number in the file.
    pub line: u64,
    /// Why the record was refused.
    pub reason: Rejection,
    /// The raw line.
    pub raw: String,
}

/// What a [`TickFile`] has read so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileCounts {
    /// Lines read.
    pub lines: u64,
    /// Ticks decoded.
    pub ticks: u64,
    /// Records refused (see [`Rejected`]).
    pub rejected: u64,
    /// Records that are not trades and were passed over (order-book events, quotes, blank lines).
    pub skipped: u64,
}

enum Decoder {
    Jsonl,
    Csv {
        cols: [usize; 5],
        width: usize,
    },
    Lobster {
        symbol: String,
        midnight_ns: i64,
    },
    BinanceTrades,
    /// A recorded WebSocket session, decoded by the live path's frame decoder.
    Raw(fn(&[u8], &mut Output)),
}

/// An iterator of the ticks of one recorded file: `Ok(tick)` or `Err(rejected)` per record, in
/// file order. Non-trade records are counted in [`FileCounts::skipped`], not yielded.
pub struct TickFile {
    reader: Box<dyn BufRead + Send>,
    format: Format,
    decoder: Decoder,
    buf: Vec<u8>,
    counts: FileCounts,
    row: u64,
    path: String,
    bytes: Arc<AtomicU64>,
    /// Records of the current line not yet yielded (a WebSocket frame may hold several trades).
    pending: VecDeque<Result<Tick, Rejection>>,
}

/// Counts the bytes taken from the file itself (compressed bytes for gzip), for progress bars.
struct Counting<R> {
    inner: R,
    bytes: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bytes.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

impl std::fmt::Debug for TickFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TickFile")
            .field("path", &self.path)
            .field("format", &self.format)
            .finish()
    }
}

const CSV_COLUMNS: [&str; 5] = ["symbol", "time_ns", "seq", "price", "size"];

impl TickFile {
    /// Opens `path` (gzip is recognised by its magic bytes) in `format`, detecting it for
    /// [`Format::Auto`].
    pub fn open(path: impl AsRef<Path>, format: Format) -> Result<TickFile, Error> {
        let path = path.as_ref();
        let shown = path.display().to_string();
        let io = |source| Error::Io {
            path: shown.clone(),
            source,
        };
        let bytes = Arc::new(AtomicU64::new(0));
        let counted = Counting {
            inner: File::open(path).map_err(io)?,
            bytes: Arc::clone(&bytes),
        };
        let mut file = BufReader::with_capacity(1 << 20, counted);
        let gzip = file.fill_buf().map_err(io)?.starts_with(&[0x1f, 0x8b]);
        let mut reader: Box<dyn BufRead + Send> = if gzip {
            Box::new(BufReader::with_capacity(1 << 20, MultiGzDecoder::new(file)))
        } else {
            Box::new(file)
        };
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let head = peek_line(&mut reader).map_err(io)?;
        let format = match format {
            Format::Auto => detect(&name, &head).ok_or_else(|| {
                Error::Format(format!(
                    "cannot detect the format of {shown}: pass --format jsonl|csv|lobster|binance-trades|binance-raw|finnhub-raw|alpaca-raw"
                ))
            })?,
            f => f,
        };
        let mut tick_file = TickFile {
            reader,
            format,
            decoder: Decoder::Jsonl,
            buf: Vec::with_capacity(512),
            counts: FileCounts::default(),
            row: 0,
            path: shown.clone(),
            bytes,
            pending: VecDeque::new(),
        };
        tick_file.decoder = match format {
            Format::Jsonl | Format::Auto => Decoder::Jsonl,
            Format::BinanceRaw => Decoder::Raw(websocket::decode_binance_frame),
            Format::FinnhubRaw => Decoder::Raw(websocket::decode_finnhub_frame),
            Format::AlpacaRaw => Decoder::Raw(websocket::decode_alpaca_frame),
            Format::BinanceTrades => {
                tick_file.skip_header()?;
                Decoder::BinanceTrades
            }
            Format::Csv => {
                let header = tick_file.skip_header()?;
                let names: Vec<&str> = header.trim_end().split(',').map(str::trim).collect();
                let mut cols = [0usize; 5];
                for (slot, want) in cols.iter_mut().zip(CSV_COLUMNS) {
                    *slot = names.iter().position(|n| *n == want).ok_or_else(|| {
                        Error::Format(format!(
                            "{shown}: the CSV header lacks `{want}`; it needs symbol,time_ns,seq,price,size"
                        ))
                    })?;
                }
                Decoder::Csv {
                    cols,
                    width: names.len(),
                }
            }
            Format::Lobster => {
                let (symbol, midnight_ns) = lobster_name(&name).ok_or_else(|| {
                    Error::Format(format!(
                        "{shown}: a LOBSTER file name must start SYMBOL_YYYY-MM-DD_ (e.g. AAPL_2012-06-21_34200000_57600000_message_1.csv)"
                    ))
                })?;
                Decoder::Lobster {
                    symbol,
                    midnight_ns,
                }
            }
        };
        Ok(tick_file)
    }

    /// The format being read (after detection).
    pub fn format(&self) -> Format {
        self.format
    }

    /// A live count of the bytes read from the file (compressed bytes for gzip), shareable with a
    /// progress bar on another thread.
    pub fn bytes_read(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.bytes)
    }

    /// What has been read so far.
    pub fn counts(&self) -> FileCounts {
        self.counts
    }

    fn skip_header(&mut self) -> Result<String, Error> {
        let mut header = String::new();
        self.reader
            .read_line(&mut header)
            .map_err(|source| Error::Io {
                path: self.path.clone(),
                source,
            })?;
        self.counts.lines += 1;
        Ok(header)
    }

    fn decode(&mut self) -> Option<Result<Tick, Rejection>> {
        let line = trim_newline(&self.buf);
        if line.iter().all(u8::is_ascii_whitespace) {
            return None;
        }
        match &self.decoder {
            Decoder::Jsonl => Some(
                serde_json::from_slice::<Tick>(line).map_err(|e| Rejection::Decode(e.to_string())),
            ),
            Decoder::Csv { cols, width } => Some(decode_csv(line, cols, *width)),
            Decoder::Lobster {
                symbol,
                midnight_ns,
            } => {
                let row = self.row;
                self.row += 1;
                decode_lobster(line, symbol, *midnight_ns, row)
            }
            Decoder::BinanceTrades => Some(decode_binance_trade_csv(line)),
            Decoder::Raw(decode_frame) => {
                let Some(space) = line.iter().position(|&c| c == b' ') else {
                    return Some(Err(Rejection::Decode(
                        "expected `<local ts> <frame>`".into(),
                    )));
                };
                let mut out = Output::default();
                decode_frame(&line[space + 1..], &mut out);
                self.pending.extend(out.records);
                self.pending.pop_front()
            }
        }
    }
}

/// A record of a [`TickFile`], from [`TickFile::next_record`].
#[derive(Clone, Debug, PartialEq)]
pub enum Record {
    /// A well-formed, valid line, decoded straight into a trade.
    Trade(Trade),
    /// A decoded tick, still to be validated.
    Tick(Tick),
}

impl Iterator for TickFile {
    type Item = Result<Tick, Rejected>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(record) = self.pending.pop_front() {
            return Some(self.count(record, self.counts.lines));
        }
        loop {
            let line_no = match self.read_line()? {
                Ok(n) => n,
                Err(reject) => return Some(Err(reject)),
            };
            match self.decode() {
                None => self.counts.skipped += 1,
                Some(record) => return Some(self.count(record, line_no)),
            }
        }
    }
}

impl TickFile {
    /// Reads the next line into `buf`; returns its number, or the read error as a rejection
    /// (which ends the file), or `None` at the end.
    fn read_line(&mut self) -> Option<Result<u64, Rejected>> {
        self.buf.clear();
        match self.reader.read_until(b'\n', &mut self.buf) {
            Ok(0) => return None,
            Ok(_) => {}
            Err(e) => {
                // A truncated or corrupt file (e.g. a cut gzip stream) ends the file as a
                // rejected record rather than a panic.
                self.counts.rejected += 1;
                let reject = Rejected {
                    line: self.counts.lines + 1,
                    reason: Rejection::Decode(e.to_string()),
                    raw: String::new(),
                };
                self.buf.clear();
                self.reader = Box::new(std::io::empty());
                return Some(Err(reject));
            }
        }
        self.counts.lines += 1;
        Some(Ok(self.counts.lines))
    }

    /// The next record, as [`Iterator::next`] gives it, except that a well-formed line of a CSV
    /// file whose tick is valid comes back as a [`Trade`] directly: no intermediate [`Tick`],
    /// no allocation. Any other line takes the usual path, so rejections and their reasons are
    /// the same.
    pub fn next_record(&mut self) -> Option<Result<Record, Rejected>> {
        let Decoder::Csv { cols, width } = self.decoder else {
            return self.next().map(|r| r.map(Record::Tick));
        };
        loop {
            let line_no = match self.read_line()? {
                Ok(n) => n,
                Err(reject) => return Some(Err(reject)),
            };
            if let Some(trade) = csv_trade(trim_newline(&self.buf), &cols, width) {
                self.counts.ticks += 1;
                return Some(Ok(Record::Trade(trade)));
            }
            match self.decode() {
                None => self.counts.skipped += 1,
                Some(record) => return Some(self.count(record, line_no).map(Record::Tick)),
            }
        }
    }
}

impl TickFile {
    /// Counts a decoded record of line `line_no` (still in `buf`) and gives it its final form.
    fn count(&mut self, record: Result<Tick, Rejection>, line_no: u64) -> Result<Tick, Rejected> {
        match record {
            Ok(tick) => {
                self.counts.ticks += 1;
                Ok(tick)
            }
            Err(reason) => {
                self.counts.rejected += 1;
                Err(Rejected {
                    line: line_no,
                    reason,
                    raw: String::from_utf8_lossy(trim_newline(&self.buf)).into_owned(),
                })
            }
        }
    }
}

fn trim_newline(b: &[u8]) -> &[u8] {
    let b = b.strip_suffix(b"\n").unwrap_or(b);
    b.strip_suffix(b"\r").unwrap_or(b)
}

fn peek_line(reader: &mut Box<dyn BufRead + Send>) -> std::io::Result<String> {
    let buf = reader.fill_buf()?;
    let end = buf.iter().position(|&c| c == b'\n').unwrap_or(buf.len());
    Ok(String::from_utf8_lossy(&buf[..end]).into_owned())
}

fn detect(name: &str, head: &str) -> Option<Format> {
    let head = head.trim_start();
    if head.starts_with("local_recv_ts,") {
        return Some(Format::BinanceTrades);
    }
    if head.starts_with('{') || name.ends_with(".jsonl") {
        return Some(Format::Jsonl);
    }
    if let Some((ts, rest)) = head.split_once(' ')
        && !ts.is_empty()
        && ts.bytes().all(|c| c.is_ascii_digit())
    {
        // Alpaca frames are arrays; Finnhub messages carry a `type`; Binance ones do not.
        if rest.starts_with('[') {
            return Some(Format::AlpacaRaw);
        }
        if rest.starts_with('{') {
            return Some(if rest.contains("\"type\"") {
                Format::FinnhubRaw
            } else {
                Format::BinanceRaw
            });
        }
    }
    if name.contains("_message_") && lobster_name(name).is_some() {
        return Some(Format::Lobster);
    }
    let cols: Vec<&str> = head.split(',').map(str::trim).collect();
    if CSV_COLUMNS.iter().all(|c| cols.contains(c)) {
        return Some(Format::Csv);
    }
    None
}

/// `AAPL_2012-06-21_...` → ("AAPL", local midnight of that date in ns since the epoch).
fn lobster_name(name: &str) -> Option<(String, i64)> {
    let mut parts = name.split('_');
    let symbol = parts.next().filter(|s| !s.is_empty())?;
    let date = parts.next()?;
    let mut ymd = date.split('-');
    let y: i64 = ymd.next()?.parse().ok()?;
    let m: u32 = ymd.next()?.parse().ok()?;
    let d: u32 = ymd.next()?.parse().ok()?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    Some((symbol.to_owned(), eastern_midnight_ns(y, m, d)))
}

fn field<'a>(fields: &Fields<'a>, i: usize, name: &str) -> Result<&'a [u8], Rejection> {
    fields
        .get(i)
        .ok_or_else(|| Rejection::Decode(format!("missing column `{name}`")))
}

fn int<T: std::str::FromStr + TryFrom<i128>>(b: &[u8], name: &str) -> Result<T, Rejection> {
    // Plain digits (the common case) without UTF-8 checks; anything else through `parse`.
    let digits = b.strip_prefix(b"-").unwrap_or(b);
    // Up to 19 digits fit a u64 (cheaper to fold than an i128).
    let fast = (!digits.is_empty() && digits.len() <= 19 && digits.iter().all(u8::is_ascii_digit))
        .then(|| {
            let v = i128::from(
                digits
                    .iter()
                    .fold(0u64, |v, d| v * 10 + u64::from(d - b'0')),
            );
            if b.len() > digits.len() { -v } else { v }
        });
    fast.and_then(|v| T::try_from(v).ok())
        .or_else(|| {
            std::str::from_utf8(b)
                .ok()
                .and_then(|s| s.trim().parse().ok())
        })
        .ok_or_else(|| {
            Rejection::Decode(format!(
                "`{name}` is not an integer: `{}`",
                String::from_utf8_lossy(b)
            ))
        })
}

fn dec(b: &[u8], name: &str) -> Result<Fixed, Rejection> {
    Fixed::parse_bytes(b).map_err(|e| Rejection::Decode(format!("{name}: {e}")))
}

fn symbol(b: &[u8]) -> Result<String, Rejection> {
    std::str::from_utf8(b)
        .map(str::to_owned)
        .map_err(|_| Rejection::Decode("symbol is not UTF-8".into()))
}

/// The fields of a CSV line, the first 16 held inline: no allocation for the formats we read.
struct Fields<'a> {
    inline: [&'a [u8]; 16],
    more: Vec<&'a [u8]>,
    len: usize,
}

impl<'a> Fields<'a> {
    fn len(&self) -> usize {
        self.len
    }

    fn get(&self, i: usize) -> Option<&'a [u8]> {
        if i >= self.len {
            None
        } else if i < 16 {
            Some(self.inline[i])
        } else {
            self.more.get(i - 16).copied()
        }
    }
}

fn split_csv(line: &[u8]) -> Fields<'_> {
    let mut f = Fields {
        inline: [&[][..]; 16],
        more: Vec::new(),
        len: 0,
    };
    for field in line.split(|&c| c == b',') {
        if f.len < 16 {
            f.inline[f.len] = field;
        } else {
            f.more.push(field);
        }
        f.len += 1;
    }
    f
}

/// A CSV line straight into a valid trade, or `None` for anything [`decode_csv`] and
/// [`Tick::validate`] would have to explain.
fn csv_trade(line: &[u8], cols: &[usize; 5], width: usize) -> Option<Trade> {
    let f = split_csv(line);
    if f.len() < width {
        return None;
    }
    let symbol = Symbol::new(std::str::from_utf8(f.get(cols[0])?).ok()?).ok()?;
    let time_ns: i64 = int(f.get(cols[1])?, "time_ns").ok()?;
    let seq: u64 = int(f.get(cols[2])?, "seq").ok()?;
    let price = Fixed::parse_bytes(f.get(cols[3])?).ok()?;
    let size = Fixed::parse_bytes(f.get(cols[4])?).ok()?;
    (price.is_positive() && size.is_positive()).then_some(Trade {
        symbol,
        time_ns: u64::try_from(time_ns).ok()?,
        seq,
        price,
        size,
    })
}

fn decode_csv(line: &[u8], cols: &[usize; 5], width: usize) -> Result<Tick, Rejection> {
    let f = split_csv(line);
    if f.len() < width {
        return Err(Rejection::Decode(format!(
            "expected {width} columns, found {}",
            f.len()
        )));
    }
    Ok(Tick {
        symbol: symbol(field(&f, cols[0], "symbol")?)?,
        time_ns: int(field(&f, cols[1], "time_ns")?, "time_ns")?,
        seq: int(field(&f, cols[2], "seq")?, "seq")?,
        price: dec(field(&f, cols[3], "price")?, "price")?,
        size: dec(field(&f, cols[4], "size")?, "size")?,
        source: String::new(),
        side: None,
        trade_id: None,
        conditions: Vec::new(),
    })
}

/// Seconds after midnight with up to 9 decimals, exactly, in ns.
fn seconds_to_ns(b: &[u8]) -> Result<i64, Rejection> {
    let bad = || Rejection::Decode(format!("bad LOBSTER time `{}`", String::from_utf8_lossy(b)));
    let (int_part, frac) = match b.iter().position(|&c| c == b'.') {
        Some(i) => (&b[..i], &b[i + 1..]),
        None => (b, &b""[..]),
    };
    if frac.len() > 9 || !frac.iter().all(u8::is_ascii_digit) {
        return Err(bad());
    }
    let secs: i64 = int(int_part, "time").map_err(|_| bad())?;
    let mut ns: i64 = 0;
    for i in 0..9 {
        ns = ns * 10 + frac.get(i).map_or(0, |c| i64::from(c - b'0'));
    }
    Ok(secs * 1_000_000_000 + ns)
}

fn decode_lobster(
    line: &[u8],
    sym: &str,
    midnight_ns: i64,
    row: u64,
) -> Option<Result<Tick, Rejection>> {
    let f = split_csv(line);
    let kind: Result<u8, _> = field(&f, 1, "type").and_then(|b| int(b, "type"));
    match kind {
        Ok(4 | 5) => {}
        Ok(_) => return None,
        Err(e) => return Some(Err(e)),
    }
    let decode = || -> Result<Tick, Rejection> {
        let time_ns = midnight_ns + seconds_to_ns(field(&f, 0, "time")?)?;
        let size: i64 = int(field(&f, 3, "size")?, "size")?;
        let price: i64 = int(field(&f, 4, "price")?, "price")?;
        let direction: i8 = int(field(&f, 5, "direction")?, "direction")?;
        Ok(Tick {
            symbol: sym.to_owned(),
            price: Fixed::from_mantissa(price, 4).map_err(|e| Rejection::Decode(e.to_string()))?,
            size: Fixed::from_mantissa(size, 0).map_err(|e| Rejection::Decode(e.to_string()))?,
            time_ns,
            seq: row,
            source: "lobster".into(),
            // An execution against a sell order is a buyer-initiated trade.
            side: match direction {
                -1 => Some(Side::Buy),
                1 => Some(Side::Sell),
                _ => None,
            },
            trade_id: None,
            conditions: Vec::new(),
        })
    };
    Some(decode())
}

fn decode_binance_trade_csv(line: &[u8]) -> Result<Tick, Rejection> {
    let f = split_csv(line);
    let trade_time_ms: i64 = int(field(&f, 2, "trade_time_ms")?, "trade_time_ms")?;
    let trade_id: u64 = int(field(&f, 4, "trade_id")?, "trade_id")?;
    let maker = field(&f, 7, "is_buyer_maker")?;
    Ok(Tick {
        symbol: symbol(field(&f, 3, "symbol")?)?,
        price: dec(field(&f, 5, "price")?, "price")?,
        size: dec(field(&f, 6, "qty")?, "qty")?,
        time_ns: trade_time_ms * 1_000_000,
        seq: trade_id,
        source: "binance".into(),
        side: Some(if maker.trim_ascii() == b"true" {
            Side::Sell
        } else {
            Side::Buy
        }),
        trade_id: Some(trade_id),
        conditions: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn write(name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("gostocks-file-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    #[test]
    fn lobster_rows_become_trades_and_bad_rows_are_rejected() {
        let rows = "34200.004241176,1,16113575,18,5853300,1\n\
                    34200.275016159,4,5740544,40,5857400,-1\n\
                    oops,4,1,1,1,1\n\
                    34201.5,5,0,100,5857500,1\n";
        let path = write(
            "AAPL_2012-06-21_34200000_57600000_message_1.csv",
            rows.as_bytes(),
        );
        let mut file = TickFile::open(&path, Format::Auto).unwrap();
        assert_eq!(file.format(), Format::Lobster);
        let records: Vec<_> = file.by_ref().collect();
        let first = records[0].as_ref().unwrap();
        // 09:30:00.275016159 EDT, the second row of the file.
        assert_eq!(
            (first.time_ns, first.seq, first.side),
            (1_340_285_400_275_016_159, 1, Some(Side::Buy))
        );
        assert_eq!(
            (first.price.to_string(), first.size.to_string()),
            ("585.74".into(), "40".into())
        );
        let bad = records[1].as_ref().unwrap_err();
        assert_eq!(bad.line, 3);
        assert!(bad.reason.to_string().contains("oops"), "{}", bad.reason);
        assert_eq!(records[2].as_ref().unwrap().side, Some(Side::Sell));
        assert_eq!(
            file.counts(),
            FileCounts {
                lines: 4,
                ticks: 2,
                rejected: 1,
                skipped: 1
            }
        );
    }

    #[test]
    fn raw_binance_sessions_keep_trades_skip_the_rest_and_read_gzip() {
        let text = "1 {\"stream\":\"btcusdt@depth@100ms\",\"data\":{\"e\":\"depthUpdate\"}}\n\
                    2 {\"stream\":\"btcusdt@trade\",\"data\":{\"e\":\"trade\",\"s\":\"BTCUSDT\",\"t\":7,\"p\":\"61837.63000000\",\"q\":\"0.02000000\",\"T\":1723161255342,\"m\":true}}\n\
                    3 {not json\n";
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(text.as_bytes()).unwrap();
        let path = write("session.gz", &gz.finish().unwrap());
        let mut file = TickFile::open(&path, Format::Auto).unwrap();
        assert_eq!(file.format(), Format::BinanceRaw);
        let records: Vec<_> = file.by_ref().collect();
        let trade = records[0].as_ref().unwrap();
        assert_eq!(
            (trade.symbol.as_str(), trade.trade_id, trade.side),
            ("BTCUSDT", Some(7), Some(Side::Sell))
        );
        assert_eq!(
            (trade.price.to_string(), trade.size.to_string()),
            ("61837.63".into(), "0.02".into())
        );
        assert_eq!(trade.time_ns, 1_723_161_255_342_000_000);
        assert!(
            records[1]
                .as_ref()
                .unwrap_err()
                .reason
                .to_string()
                .contains("not JSON")
        );
        assert_eq!((file.counts().skipped, file.counts().rejected), (1, 1));
    }

    #[test]
    fn csv_lines_become_trades_directly_and_the_rest_takes_the_usual_path() {
        let lines = "symbol,time_ns,seq,price,size\n\
                     AAPL,5,0,585.1,100\n\
                     \n\
                     AAPL,6,1,-1,100\n\
                     AAPL,x,2,585,100\n\
                     AAPL,7\n\
                     GOOG,8,3,565.2,10\n";
        let path = write("direct.csv", lines.as_bytes());
        let usual: Vec<_> = TickFile::open(&path, Format::Auto).unwrap().collect();
        let mut file = TickFile::open(&path, Format::Auto).unwrap();
        let direct: Vec<_> = std::iter::from_fn(|| file.next_record()).collect();
        assert_eq!(direct.len(), usual.len());
        for (d, u) in direct.iter().zip(&usual) {
            match (d, u) {
                // Valid lines skip the tick, and give the trade validation would.
                (Ok(Record::Trade(t)), Ok(tick)) => assert_eq!(Ok(*t), tick.validate()),
                // A tick that fails validation still comes as a tick, to be refused as before.
                (Ok(Record::Tick(t)), Ok(tick)) => {
                    assert_eq!(t, tick);
                    assert!(tick.validate().is_err());
                }
                (Err(d), Err(u)) => assert_eq!(d, u),
                other => panic!("paths differ: {other:?}"),
            }
        }
        let trades = direct
            .iter()
            .filter(|r| matches!(r, Ok(Record::Trade(_))))
            .count();
        assert_eq!(trades, 2);
        assert_eq!(
            file.counts(),
            TickFile::open(&path, Format::Auto)
                .map(|mut f| {
                    f.by_ref().for_each(drop);
                    f.counts()
                })
                .unwrap()
        );
    }

    #[test]
    fn json_lines_with_impossible_numbers_are_rejected_with_the_reason() {
        let lines = "{\"symbol\":\"A\",\"price\":\"NaN\",\"size\":\"1\",\"time_ns\":1,\"seq\":0}\n\
                     {\"symbol\":\"A\",\"price\":\"1.000000001\",\"size\":\"1\",\"time_ns\":1,\"seq\":1}\n\
                     {\"symbol\":\"A\",\"price\":\"1\",\"size\":\"1\",\"time_ns\":1,\"seq\":2}\n";
        let path = write("t.jsonl", lines.as_bytes());
        let records: Vec<_> = TickFile::open(&path, Format::Auto).unwrap().collect();
        let reasons: Vec<String> = records
            .iter()
            .filter_map(|r| r.as_ref().err())
            .map(|r| r.reason.to_string())
            .collect();
        assert!(reasons[0].contains("not a finite decimal"), "{reasons:?}");
        assert!(
            reasons[1].contains("more than 8 decimal places"),
            "{reasons:?}"
        );
        assert!(records[2].is_ok());
    }

    #[test]
    fn an_undetectable_file_names_the_fix() {
        let path = write("mystery.txt", b"hello world\n");
        let err = TickFile::open(&path, Format::Auto).unwrap_err().to_string();
        assert!(err.contains("--format"), "{err}");
    }
}
