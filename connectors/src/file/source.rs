//! Reading tick files: format detection and one decoder per format.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use flate2::read::MultiGzDecoder;
use gostocks_core::symbol::excerpt;
use gostocks_core::{Fixed, Rejection, Side, Symbol, Tick, Trade};

use super::Format;
use super::eastern::{days_in_month, eastern_midnight_ns};
use crate::error::Error;
use crate::limits::{
    MAX_RAW_BYTES, MAX_RECORD_BYTES, bound_reason, raw_excerpt, scale_time, too_long,
};
use crate::websocket::{self, Output};

/// A UTF-8 byte order mark, which some tools write at the start of a text file.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// A record that could not become a tick: its line, why, and the line itself (for a dead-letter
/// file), all bounded however long the line was.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejected {
    /// 1-based line number in the file.
    pub line: u64,
    /// Why the record was refused (at most [`MAX_REASON_BYTES`](crate::limits::MAX_REASON_BYTES)).
    pub reason: Rejection,
    /// The raw line, cut to its first [`MAX_RAW_BYTES`] (invalid UTF-8 replaced).
    pub raw: String,
    /// The length of the whole line in bytes, without its line break: more than
    /// [`MAX_RAW_BYTES`] when `raw` is cut.
    pub bytes: u64,
}

/// What a [`TickFile`] has read so far.
///
/// Every line is accounted for: in a file of one record per line (all formats but the raw
/// WebSocket sessions) `lines == headers + ticks + rejected + skipped`; a line of a raw session
/// is skipped or holds one or more records (a frame may carry several trades), so there
/// `lines <= headers + ticks + rejected + skipped`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileCounts {
    /// Lines read (a read error that ends the file, e.g. a cut gzip stream, counts as a line).
    pub lines: u64,
    /// Header lines passed over (CSV, and Binance trade files that have one).
    pub headers: u64,
    /// Ticks decoded.
    pub ticks: u64,
    /// Records refused (see [`Rejected`]).
    pub rejected: u64,
    /// Records that are not trades and were passed over (order-book events, quotes, blank lines).
    pub skipped: u64,
}

#[derive(Clone)]
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
    /// The current line, with its line break; never more than `max_record_bytes + 2` bytes (of
    /// an over-long line, only its first [`MAX_RAW_BYTES`]).
    buf: Vec<u8>,
    /// The length of the current line without its line break (also when `buf` holds only the
    /// start of it).
    line_bytes: u64,
    max_record_bytes: usize,
    counts: FileCounts,
    /// The line of the record last handed out (for [`TickFile::refuse`]).
    last_line: u64,
    row: u64,
    path: String,
    bytes: Arc<AtomicU64>,
    /// Records of the current line not yet yielded (a WebSocket frame may hold several trades).
    pending: VecDeque<Result<Tick, Rejection>>,
    /// Lines of the file before the part being read (0 for a whole file): line numbers are
    /// the file's, not the part's.
    line_base: u64,
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

/// How the header of a Binance trade file starts.
const BINANCE_TRADES_HEADER: &str = "local_recv_ts,";

impl TickFile {
    /// Opens `path` (gzip is recognised by its magic bytes) in `format`, detecting it for
    /// [`Format::Auto`]. Lines longer than [`MAX_RECORD_BYTES`] are rejected.
    pub fn open(path: impl AsRef<Path>, format: Format) -> Result<TickFile, Error> {
        TickFile::open_core(path, format, MAX_RECORD_BYTES)
    }

    /// Opens `path` as [`TickFile::open`] does, with lines of up to `max_record_bytes` (without
    /// their line break): a longer line is rejected, and only its first [`MAX_RAW_BYTES`] are
    /// ever held in memory.
    pub fn open_core(
        path: impl AsRef<Path>,
        format: Format,
        max_record_bytes: usize,
    ) -> Result<TickFile, Error> {
        let bytes = Arc::new(AtomicU64::new(0));
        TickFile::open_until(path.as_ref(), format, max_record_bytes, u64::MAX, bytes)
    }

    /// [`TickFile::open_core`] of the first `end` bytes of `path`.
    fn open_until(
        path: &Path,
        format: Format,
        max_record_bytes: usize,
        end: u64,
        bytes: Arc<AtomicU64>,
    ) -> Result<TickFile, Error> {
        let shown = path.display().to_string();
        let counted = Counting {
            inner: File::open(path)
                .map_err(|source| Error::Io {
                    path: shown.clone(),
                    source,
                })?
                .take(end),
            bytes: Arc::clone(&bytes),
        };
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let file = BufReader::with_capacity(1 << 20, counted);
        TickFile::start(file, &name, shown, format, max_record_bytes, bytes)
    }

    /// What opens the parts of the file this one reads (see [`split`](super::split)): its
    /// format and header, shareable with the threads that read the parts.
    pub fn opener(&self) -> Opener {
        Opener {
            format: self.format,
            decoder: self.decoder.clone(),
            max_record_bytes: self.max_record_bytes,
        }
    }
}

/// Opens parts of one file, from [`TickFile::opener`].
#[derive(Clone)]
pub struct Opener {
    format: Format,
    decoder: Decoder,
    max_record_bytes: usize,
}

impl std::fmt::Debug for Opener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opener")
            .field("format", &self.format)
            .finish()
    }
}

impl Opener {
    /// Opens a part of the file (from [`split`](super::split) of the same path): its records,
    /// numbered as in the whole file (lines, and LOBSTER's rows). The first part also reads
    /// the header; any other is decoded as the file's format and header say. `bytes` counts
    /// what the part reads (one counter can serve every part, for a progress bar).
    pub fn open_part(
        &self,
        path: impl AsRef<Path>,
        part: &super::Part,
        bytes: Arc<AtomicU64>,
    ) -> Result<TickFile, Error> {
        let path = path.as_ref();
        if part.start == 0 {
            return TickFile::open_until(path, self.format, self.max_record_bytes, part.end, bytes);
        }
        let shown = path.display().to_string();
        let io = |source| Error::Io {
            path: shown.clone(),
            source,
        };
        let mut file = File::open(path).map_err(io)?;
        std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(part.start)).map_err(io)?;
        let counted = Counting {
            inner: file.take(part.end.saturating_sub(part.start)),
            bytes: Arc::clone(&bytes),
        };
        Ok(TickFile {
            reader: Box::new(BufReader::with_capacity(1 << 20, counted)),
            format: self.format,
            decoder: self.decoder.clone(),
            buf: Vec::with_capacity(512),
            line_bytes: 0,
            max_record_bytes: self.max_record_bytes,
            counts: FileCounts::default(),
            last_line: 0,
            row: part.first_row,
            path: shown,
            bytes,
            pending: VecDeque::new(),
            line_base: part.first_line - 1,
        })
    }
}

impl TickFile {
    /// Reads ticks from any reader (a pipe, a socket, bytes in memory), as [`TickFile::open`]
    /// reads a file: `name` stands for the file name (format detection and LOBSTER's symbol
    /// and date look at it), gzip is recognised, lines are at most `max_record_bytes`.
    ///
    /// ```
    /// use gostocks_connectors::file::{Format, TickFile};
    /// use gostocks_connectors::limits::MAX_RECORD_BYTES;
    /// let csv: &[u8] = b"symbol,time_ns,seq,price,size\nAAPL,1,0,585.33,100\n";
    /// let mut file = TickFile::from_reader("t.csv", csv, Format::Auto, MAX_RECORD_BYTES).unwrap();
    /// assert_eq!(file.next().unwrap().unwrap().symbol, "AAPL");
    /// ```
    pub fn from_reader(
        name: &str,
        reader: impl Read + Send + 'static,
        format: Format,
        max_record_bytes: usize,
    ) -> Result<TickFile, Error> {
        let bytes = Arc::new(AtomicU64::new(0));
        let counted = Counting {
            inner: reader,
            bytes: Arc::clone(&bytes),
        };
        let file = BufReader::with_capacity(64 << 10, counted);
        TickFile::start(file, name, name.to_owned(), format, max_record_bytes, bytes)
    }

    fn start(
        mut file: BufReader<impl Read + Send + 'static>,
        name: &str,
        shown: String,
        format: Format,
        max_record_bytes: usize,
        bytes: Arc<AtomicU64>,
    ) -> Result<TickFile, Error> {
        let io = |source| Error::Io {
            path: shown.clone(),
            source,
        };
        let gzip = file.fill_buf().map_err(io)?.starts_with(&[0x1f, 0x8b]);
        let mut reader: Box<dyn BufRead + Send> = if gzip {
            Box::new(BufReader::with_capacity(
                file.capacity(),
                MultiGzDecoder::new(file),
            ))
        } else {
            Box::new(file)
        };
        // A byte order mark would hide the header from detection and spoil the first record.
        if reader.fill_buf().map_err(io)?.starts_with(BOM) {
            reader.consume(BOM.len());
        }
        let head = peek_line(&mut reader).map_err(io)?;
        let format = match format {
            Format::Auto => detect(name, &head).ok_or_else(|| {
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
            line_bytes: 0,
            max_record_bytes,
            counts: FileCounts::default(),
            last_line: 0,
            row: 0,
            path: shown.clone(),
            bytes,
            pending: VecDeque::new(),
            line_base: 0,
        };
        tick_file.decoder = match format {
            Format::Jsonl | Format::Auto => Decoder::Jsonl,
            Format::BinanceRaw => Decoder::Raw(websocket::decode_binance_frame),
            Format::FinnhubRaw => Decoder::Raw(websocket::decode_finnhub_frame),
            Format::AlpacaRaw => Decoder::Raw(websocket::decode_alpaca_frame),
            Format::BinanceTrades => {
                // The recorded trade files have a header; a file cut from one may not, and then
                // its first line is a trade like the others.
                if head.trim_start().starts_with(BINANCE_TRADES_HEADER) {
                    tick_file.skip_header()?;
                }
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
                let (symbol, midnight_ns) =
                    lobster_name(name).map_err(|why| Error::Format(format!("{shown}: {why}")))?;
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

    /// Refuses the record last handed out, a tick its reader found invalid (e.g. by
    /// [`Tick::validate`]): it is counted as rejected instead of as a tick, and comes back with
    /// its line number and line as a record that did not decode would. Call it before reading
    /// on.
    pub fn refuse(&mut self, reason: Rejection) -> Rejected {
        self.counts.ticks = self.counts.ticks.saturating_sub(1);
        self.counts.rejected += 1;
        self.rejection(self.last_line, reason)
    }

    /// Reads the header line (bounded like any line) and passes it over.
    fn skip_header(&mut self) -> Result<String, Error> {
        let path = self.path.clone();
        match self.read_line() {
            None => Ok(String::new()),
            Some(Err(reject)) if reject.bytes > self.max_record_bytes as u64 => {
                Err(Error::Format(format!(
                    "{path}: the header is longer than the limit of {} bytes",
                    self.max_record_bytes
                )))
            }
            Some(Err(reject)) => Err(Error::Format(format!(
                "{path}: cannot read the header: {}",
                reject.reason
            ))),
            Some(Ok(_)) => {
                self.counts.headers += 1;
                Ok(String::from_utf8_lossy(trim_newline(&self.buf)).into_owned())
            }
        }
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
            return Some(self.count(record, self.line_base + self.counts.lines));
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
    /// Reads the next line into `buf`; returns its number, or a rejection (of an over-long line,
    /// passed over; of a read error, which ends the file), or `None` at the end.
    ///
    /// `buf` never holds more than the longest line allowed and its line break: of a longer
    /// line, the rest is passed over as it is read, never held.
    fn read_line(&mut self) -> Option<Result<u64, Rejected>> {
        self.buf.clear();
        let max = self.max_record_bytes;
        // Room for the longest record, a `\r` and the `\n`.
        let limit = max.saturating_add(2);
        loop {
            let len = self.buf.len();
            if len == self.buf.capacity() {
                if len >= limit {
                    break;
                }
                // Doubling, as a `Vec` grows, but never past the limit.
                self.buf.reserve_exact(len.max(512).min(limit - len));
            }
            let room = (self.buf.capacity() - len).min(limit - len);
            let read = (&mut self.reader)
                .take(room as u64)
                .read_until(b'\n', &mut self.buf);
            match read {
                Ok(0) => break,
                Ok(_) if self.buf.last() == Some(&b'\n') => break,
                Ok(_) => {}
                Err(e) => return Some(Err(self.read_failed(e))),
            }
        }
        if self.buf.is_empty() {
            return None;
        }
        self.counts.lines += 1;
        let line_no = self.line_base + self.counts.lines;
        if self.buf.last() == Some(&b'\n') || self.buf.len() < limit {
            self.line_bytes = trim_newline(&self.buf).len() as u64;
            if self.line_bytes <= max as u64 {
                return Some(Ok(line_no));
            }
        } else {
            match self.skip_rest_of_line() {
                Ok(len) => self.line_bytes = len,
                Err(e) => {
                    // The line is counted already: the failure ends the file as its rejection.
                    self.counts.lines -= 1;
                    return Some(Err(self.read_failed(e)));
                }
            }
        }
        self.buf.truncate(MAX_RAW_BYTES);
        self.counts.rejected += 1;
        Some(Err(self.rejection(line_no, too_long(self.line_bytes, max))))
    }

    /// Passes over the rest of the line whose start is in `buf`, a chunk of the reader's buffer
    /// at a time; returns the length of the whole line without its line break.
    fn skip_rest_of_line(&mut self) -> std::io::Result<u64> {
        let mut len = self.buf.len() as u64;
        let mut last = self.buf.last().copied();
        loop {
            let chunk = match self.reader.fill_buf() {
                Ok(chunk) => chunk,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if chunk.is_empty() {
                // The end of the file: a last line may end in a bare `\r`.
                return Ok(len - u64::from(last == Some(b'\r')));
            }
            if let Some(i) = chunk.iter().position(|&c| c == b'\n') {
                let before = if i > 0 { Some(chunk[i - 1]) } else { last };
                // `len` holds a `\r` that ended the previous chunk.
                len = len + i as u64 - u64::from(before == Some(b'\r'));
                self.reader.consume(i + 1);
                return Ok(len);
            }
            let n = chunk.len();
            len += n as u64;
            last = chunk.last().copied();
            self.reader.consume(n);
        }
    }

    /// A read error (e.g. a cut gzip stream): it ends the file, as a rejected last line rather
    /// than a panic.
    fn read_failed(&mut self, e: std::io::Error) -> Rejected {
        self.counts.lines += 1;
        self.counts.rejected += 1;
        self.buf.truncate(MAX_RAW_BYTES);
        self.line_bytes = self.buf.len() as u64;
        self.reader = Box::new(std::io::empty());
        self.rejection(
            self.line_base + self.counts.lines,
            Rejection::Decode(e.to_string()),
        )
    }

    /// The rejection of a record of line `line` (the line in `buf`), bounded.
    fn rejection(&self, line: u64, reason: Rejection) -> Rejected {
        Rejected {
            line,
            reason: bound_reason(reason),
            raw: raw_excerpt(trim_newline(&self.buf)),
            bytes: self.line_bytes,
        }
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
                self.last_line = line_no;
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
        self.last_line = line_no;
        match record {
            Ok(tick) => {
                self.counts.ticks += 1;
                Ok(tick)
            }
            Err(reason) => {
                self.counts.rejected += 1;
                Err(self.rejection(line_no, reason))
            }
        }
    }
}

pub(super) fn trim_newline(b: &[u8]) -> &[u8] {
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
    if head.starts_with(BINANCE_TRADES_HEADER) {
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
    if name.contains("_message_") && lobster_name_parts(name).is_some() {
        return Some(Format::Lobster);
    }
    let cols: Vec<&str> = head.split(',').map(str::trim).collect();
    if CSV_COLUMNS.iter().all(|c| cols.contains(c)) {
        return Some(Format::Csv);
    }
    None
}

/// The years a LOBSTER file name may carry: every time of such a day fits the accepted range
/// of event times (see [`limits`](crate::limits)).
const LOBSTER_YEARS: std::ops::RangeInclusive<i64> = 1970..=2261;

/// LOBSTER's `time` is seconds after local midnight; accepted are `0 <= time < 90_000` (25
/// hours: the longest day US Eastern time has, when the clocks go back).
const LOBSTER_MAX_SECONDS: i64 = 25 * 3600;

/// `AAPL_2012-06-21_...` → ("AAPL", 2012, 6, 21): the shape of a LOBSTER file name, whether or
/// not the date is a real one.
fn lobster_name_parts(name: &str) -> Option<(&str, i64, u32, u32)> {
    let mut parts = name.split('_');
    let symbol = parts.next().filter(|s| !s.is_empty())?;
    let date = parts.next()?;
    let mut ymd = date.split('-');
    let y: i64 = ymd.next()?.parse().ok()?;
    let m: u32 = ymd.next()?.parse().ok()?;
    let d: u32 = ymd.next()?.parse().ok()?;
    Some((symbol, y, m, d))
}

/// `AAPL_2012-06-21_...` → ("AAPL", local midnight of that date in ns since the epoch); the
/// error says what is wrong with the name.
pub(super) fn lobster_name(name: &str) -> Result<(String, i64), String> {
    let (symbol, y, m, d) = lobster_name_parts(name).ok_or_else(|| {
        "a LOBSTER file name must start SYMBOL_YYYY-MM-DD_ (e.g. AAPL_2012-06-21_34200000_57600000_message_1.csv)".to_owned()
    })?;
    if !LOBSTER_YEARS.contains(&y) {
        return Err(format!(
            "the year {y} of the LOBSTER file name is out of range ({} to {})",
            LOBSTER_YEARS.start(),
            LOBSTER_YEARS.end()
        ));
    }
    if !(1..=12).contains(&m) || d < 1 || d > days_in_month(y, m) {
        return Err(format!(
            "the date {y:04}-{m:02}-{d:02} of the LOBSTER file name is not a calendar date"
        ));
    }
    Ok((symbol.to_owned(), eastern_midnight_ns(y, m, d)))
}

pub(super) fn field<'a>(fields: &Fields<'a>, i: usize, name: &str) -> Result<&'a [u8], Rejection> {
    fields
        .get(i)
        .ok_or_else(|| Rejection::Decode(format!("missing column `{name}`")))
}

pub(super) fn int<T: std::str::FromStr + TryFrom<i128>>(
    b: &[u8],
    name: &str,
) -> Result<T, Rejection> {
    // Plain digits (the common case) without UTF-8 checks; anything else through `parse`.
    let digits = b.strip_prefix(b"-").unwrap_or(b);
    // Up to 19 digits fit a u64 (cheaper to fold than an i128), checked and folded in one pass.
    let fast = || {
        if digits.is_empty() || digits.len() > 19 {
            return None;
        }
        let mut v = 0u64;
        for &c in digits {
            let d = c.wrapping_sub(b'0');
            if d >= 10 {
                return None;
            }
            v = v * 10 + u64::from(d);
        }
        let v = i128::from(v);
        Some(if b.len() > digits.len() { -v } else { v })
    };
    fast()
        .and_then(|v| T::try_from(v).ok())
        .or_else(|| {
            std::str::from_utf8(b)
                .ok()
                .and_then(|s| s.trim().parse().ok())
        })
        .ok_or_else(|| {
            Rejection::Decode(format!(
                "`{name}` is not an integer: {}",
                excerpt(&String::from_utf8_lossy(b))
            ))
        })
}

pub(super) fn dec(b: &[u8], name: &str) -> Result<Fixed, Rejection> {
    Fixed::parse_bytes(b).map_err(|e| Rejection::Decode(format!("{name}: {e}")))
}

fn symbol(b: &[u8]) -> Result<String, Rejection> {
    std::str::from_utf8(b)
        .map(str::to_owned)
        .map_err(|_| Rejection::Decode("symbol is not UTF-8".into()))
}

/// The fields of a CSV line, the first 16 held inline: no allocation for the formats we read.
pub(super) struct Fields<'a> {
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

pub(super) fn split_csv(line: &[u8]) -> Fields<'_> {
    let mut f = Fields {
        inline: [&[][..]; 16],
        more: Vec::new(),
        len: 0,
    };
    let mut start = 0;
    for end in memchr::memchr_iter(b',', line).chain(std::iter::once(line.len())) {
        let field = &line[start..end];
        if f.len < 16 {
            f.inline[f.len] = field;
        } else {
            f.more.push(field);
        }
        f.len += 1;
        start = end + 1;
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
    (price.is_positive() && size.is_positive()).then_some(Trade::new(
        symbol,
        u64::try_from(time_ns).ok()?,
        seq,
        price,
        size,
    ))
}

fn decode_csv(line: &[u8], cols: &[usize; 5], width: usize) -> Result<Tick, Rejection> {
    let f = split_csv(line);
    if f.len() < width {
        return Err(Rejection::Decode(format!(
            "expected {width} columns, found {}",
            f.len()
        )));
    }
    Ok(Tick::new(
        symbol(field(&f, cols[0], "symbol")?)?,
        dec(field(&f, cols[3], "price")?, "price")?,
        dec(field(&f, cols[4], "size")?, "size")?,
        int(field(&f, cols[1], "time_ns")?, "time_ns")?,
        int(field(&f, cols[2], "seq")?, "seq")?,
    ))
}

/// LOBSTER's `time`, seconds after midnight with up to 9 decimals, exactly, in ns; refused
/// unless `0 <= time <` [`LOBSTER_MAX_SECONDS`].
pub(super) fn seconds_to_ns(b: &[u8]) -> Result<i64, Rejection> {
    let shown = || excerpt(&String::from_utf8_lossy(b));
    let bad = || Rejection::Decode(format!("bad LOBSTER time {}", shown()));
    // `-0.5` would otherwise read as an integer part of 0 and half a second.
    if b.contains(&b'-') {
        return Err(Rejection::Decode(format!(
            "time: {} s after midnight is negative",
            shown()
        )));
    }
    let (int_part, frac) = match b.iter().position(|&c| c == b'.') {
        Some(i) => (&b[..i], &b[i + 1..]),
        None => (b, &b""[..]),
    };
    if frac.len() > 9 || !frac.iter().all(u8::is_ascii_digit) {
        return Err(bad());
    }
    let secs: i64 = int(int_part, "time").map_err(|_| bad())?;
    if !(0..LOBSTER_MAX_SECONDS).contains(&secs) {
        return Err(Rejection::Decode(format!(
            "time: {secs} s after midnight is out of range (0 to {LOBSTER_MAX_SECONDS})"
        )));
    }
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
        let time = field(&f, 0, "time")?;
        let time_ns = midnight_ns
            .checked_add(seconds_to_ns(time)?)
            .ok_or_else(|| Rejection::Decode("time: out of range".into()))?;
        let size: i64 = int(field(&f, 3, "size")?, "size")?;
        let price: i64 = int(field(&f, 4, "price")?, "price")?;
        let direction: i8 = int(field(&f, 5, "direction")?, "direction")?;
        let price = Fixed::from_mantissa(price, 4).map_err(|e| Rejection::Decode(e.to_string()))?;
        let size = Fixed::from_mantissa(size, 0).map_err(|e| Rejection::Decode(e.to_string()))?;
        Ok(Tick::new(sym, price, size, time_ns, row)
            .with_source("lobster")
            // An execution against a sell order is a buyer-initiated trade.
            .with_side(match direction {
                -1 => Some(Side::Buy),
                1 => Some(Side::Sell),
                _ => None,
            }))
    };
    Some(decode())
}

fn decode_binance_trade_csv(line: &[u8]) -> Result<Tick, Rejection> {
    let f = split_csv(line);
    let trade_time_ms: i64 = int(field(&f, 2, "trade_time_ms")?, "trade_time_ms")?;
    let trade_id: u64 = int(field(&f, 4, "trade_id")?, "trade_id")?;
    let maker = field(&f, 7, "is_buyer_maker")?;
    Ok(Tick::new(
        symbol(field(&f, 3, "symbol")?)?,
        dec(field(&f, 5, "price")?, "price")?,
        dec(field(&f, 6, "qty")?, "qty")?,
        scale_time(trade_time_ms, 1_000_000, "trade_time_ms", "ms")?,
        trade_id,
    )
    .with_source("binance")
    .with_side(Some(if maker.trim_ascii() == b"true" {
        Side::Sell
    } else {
        Side::Buy
    }))
    .with_trade_id(Some(trade_id)))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    /// Fields as `split(',')` cuts them, past the sixteen held inline too; integers as
    /// `parse` reads them.
    #[test]
    fn csv_fields_and_integers() {
        let many = (0..20).map(|i| i.to_string()).collect::<Vec<_>>().join(",");
        for line in [
            "",
            ",",
            "a",
            "a,",
            ",b",
            "a,,b",
            "GOOG,1,0,579.4,4",
            many.as_str(),
        ] {
            let f = split_csv(line.as_bytes());
            let want: Vec<&[u8]> = line.as_bytes().split(|&c| c == b',').collect();
            let got: Vec<&[u8]> = (0..f.len()).map(|i| f.get(i).unwrap()).collect();
            assert_eq!(got, want, "{line:?}");
        }
        for s in [
            "0",
            "-12",
            "1340285400015105074",
            "18446744073709551615",
            " 7",
            "1x",
            "",
            "-",
        ] {
            let fast: Option<u64> = int(s.as_bytes(), "n").ok();
            assert_eq!(fast, s.trim().parse().ok(), "{s:?}");
            let signed: Option<i64> = int(s.as_bytes(), "n").ok();
            assert_eq!(signed, s.trim().parse().ok(), "{s:?}");
        }
    }

    /// Every record, numbered, of `path` read whole and read part by part, for several part
    /// sizes: the same, line numbers, LOBSTER rows and rejections included.
    fn parts_read_as_the_whole(path: &std::path::Path, max: usize) {
        let show = |r: Result<Record, Rejected>| format!("{r:?}");
        let whole = TickFile::open_core(path, Format::Auto, max).unwrap();
        let template = TickFile::open_core(path, Format::Auto, max).unwrap();
        let expected: Vec<String> = std::iter::from_fn({
            let mut f = whole;
            move || f.next_record()
        })
        .map(show)
        .collect();
        for part_bytes in [1, 7, 30, 64, 1 << 20] {
            let parts = crate::file::split(path, max, part_bytes).unwrap();
            let mut got = Vec::new();
            for part in &parts {
                let mut f = template
                    .opener()
                    .open_part(path, part, Arc::default())
                    .unwrap();
                while let Some(r) = f.next_record() {
                    got.push(show(r));
                }
            }
            assert_eq!(got, expected, "parts of {part_bytes} bytes: {parts:?}");
        }
    }

    #[test]
    fn a_file_read_in_parts_gives_the_records_of_the_whole_with_their_numbers() {
        let csv = write(
            "parts.csv",
            b"\xEF\xBB\xBFsymbol,time_ns,seq,price,size\r\nAAPL,1,0,585.33,100\r\n\r\nAAPL,2,1,oops,1\nAAPL,3,2,585.34,7\n   \nMSFT,4,3,1.5,2",
        );
        parts_read_as_the_whole(&csv, MAX_RECORD_BYTES);
        let lobster = write(
            "AAPL_2012-06-21_34200000_57600000_message_1.csv",
            b"34200.01,4,1,100,5853300,-1\n\n34200.02,1,2,100,5853400,1\n34200.03,5,0,9,5853300,1\n34200.04,4,1,100,5853300,-1,xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n34200.05,4,3,1,5853300,-1\n",
        );
        parts_read_as_the_whole(&lobster, MAX_RECORD_BYTES);
        // The fourth row is over-long here: rejected, and not numbered as a row.
        parts_read_as_the_whole(&lobster, 40);
    }

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
                headers: 0,
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

    /// Reads every record of `bytes` (named `name`) in `format` with lines of up to `max` bytes.
    fn read_all(
        name: &str,
        bytes: &[u8],
        format: Format,
        max: usize,
    ) -> (TickFile, Vec<Result<Tick, Rejected>>) {
        let mut file =
            TickFile::from_reader(name, std::io::Cursor::new(bytes.to_vec()), format, max)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        let records = file.by_ref().collect();
        (file, records)
    }

    /// A gzip file of `len` NUL bytes and no line break, written as it is compressed.
    fn nul_gzip(name: &str, len: usize) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("gostocks-file-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        let mut gz = flate2::write::GzEncoder::new(
            std::io::BufWriter::new(File::create(&path).unwrap()),
            flate2::Compression::fast(),
        );
        let zeros = vec![0u8; 1 << 16];
        for _ in 0..len / zeros.len() {
            gz.write_all(&zeros).unwrap();
        }
        gz.finish().unwrap().flush().unwrap();
        path
    }

    #[test]
    fn a_line_of_64_mib_of_nul_bytes_is_one_bounded_rejection_read_in_bounded_memory() {
        let path = nul_gzip("nul.jsonl.gz", 64 << 20);
        let mut file = TickFile::open(&path, Format::Jsonl).unwrap();
        let reject = file.next().expect("a record").expect_err("rejected");
        assert!(file.next().is_none());
        assert_eq!((reject.line, reject.bytes), (1, 64 << 20));
        assert!(
            reject
                .reason
                .to_string()
                .contains("exceeds the limit of 1048576 bytes"),
            "{}",
            reject.reason
        );
        assert!(
            reject.raw.len() <= MAX_RAW_BYTES,
            "raw of {} bytes",
            reject.raw.len()
        );
        // The line buffer never held more than the limit (and its line break) of the line.
        assert!(
            file.buf.capacity() <= MAX_RECORD_BYTES + 2,
            "the line buffer grew to {} bytes",
            file.buf.capacity()
        );
        assert_eq!(
            file.counts(),
            FileCounts {
                lines: 1,
                rejected: 1,
                ..FileCounts::default()
            }
        );
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn over_long_lines_are_rejected_and_the_lines_around_them_read_on() {
        let ok = r#"{"symbol":"A","price":"1","size":"1","time_ns":1,"seq":0}"#;
        let max = ok.len();
        let long = format!("{ok}{}", " ".repeat(10 * max));
        // Exactly at the limit, with `\n` or `\r\n`; one over; far over; far over at the end.
        let text = format!("{ok}\n{ok}\r\n{ok} \n{long}\r\n{ok}\n{long}");
        let (file, records) = read_all("t.jsonl", text.as_bytes(), Format::Jsonl, max);
        let lines: Vec<(u64, u64)> = records
            .iter()
            .filter_map(|r| r.as_ref().err())
            .map(|r| (r.line, r.bytes))
            .collect();
        assert_eq!(
            lines,
            [
                (3, max as u64 + 1),
                (4, long.len() as u64),
                (6, long.len() as u64)
            ]
        );
        assert_eq!(records.iter().filter(|r| r.is_ok()).count(), 3);
        assert!(file.buf.capacity() <= (max + 2).max(MAX_RAW_BYTES).max(512));
        assert_eq!((file.counts().lines, file.counts().rejected), (6, 3));
    }

    #[test]
    fn lobster_times_out_of_range_or_negative_are_rejected_naming_the_field() {
        let rows = "99999999999,4,1,10,5857400,1\n\
                    -5.0,4,1,10,5857400,1\n\
                    -0.5,4,1,10,5857400,1\n\
                    90000,4,1,10,5857400,1\n\
                    89999.999999999,4,1,10,5857400,1\n";
        let (_, records) = read_all(
            "AAPL_2012-06-21_34200000_57600000_message_1.csv",
            rows.as_bytes(),
            Format::Lobster,
            MAX_RECORD_BYTES,
        );
        let reasons: Vec<String> = records
            .iter()
            .filter_map(|r| r.as_ref().err())
            .map(|r| r.reason.to_string())
            .collect();
        // Unchecked, the first row was a trade of the year 2258.
        assert!(
            reasons[0].contains("time: 99999999999 s after midnight is out of range"),
            "{reasons:?}"
        );
        assert!(reasons[1].contains("negative"), "{reasons:?}");
        assert!(reasons[2].contains("negative"), "{reasons:?}");
        assert!(reasons[3].contains("out of range"), "{reasons:?}");
        assert_eq!(reasons.len(), 4);
        // 2012-06-21 00:00 EDT (04:00 UTC) + 89999.999999999 s.
        assert_eq!(
            records[4].as_ref().unwrap().time_ns,
            1_340_341_199_999_999_999
        );
    }

    #[test]
    fn lobster_file_names_need_a_calendar_date_in_range() {
        let row = b"34200.5,4,1,10,5857400,1\n";
        for (name, why) in [
            (
                "AAPL_2012-02-31_0_0_message_1.csv",
                "2012-02-31 of the LOBSTER file name is not a calendar date",
            ),
            ("AAPL_2011-02-29_0_0_message_1.csv", "not a calendar date"),
            ("AAPL_2012-13-01_0_0_message_1.csv", "not a calendar date"),
            (
                "AAPL_99999999999_0_0_message_1.csv",
                "must start SYMBOL_YYYY-MM-DD_",
            ),
            (
                "AAPL_292277026596-01-01_0_0_message_1.csv",
                "year 292277026596 of the LOBSTER file name is out of range",
            ),
            (
                "AAPL_2262-01-01_0_0_message_1.csv",
                "out of range (1970 to 2261)",
            ),
            ("AAPL_1969-12-31_0_0_message_1.csv", "out of range"),
        ] {
            // A name without a date is not detected as LOBSTER; told the format, it is refused.
            let formats: &[Format] = if why.starts_with("must") {
                &[Format::Lobster]
            } else {
                &[Format::Lobster, Format::Auto]
            };
            for &format in formats {
                let err = TickFile::from_reader(name, &row[..], format, MAX_RECORD_BYTES)
                    .expect_err(name);
                assert!(matches!(err, Error::Format(_)), "{name}: {err:?}");
                let err = err.to_string();
                assert!(err.contains(why) && err.contains(name), "{name}: {err}");
            }
        }
        let (_, records) = read_all("AAPL_2012-02-29_0_0_message_1.csv", row, Format::Auto, 1024);
        assert!(records[0].is_ok(), "a leap day is a date");
    }

    #[test]
    fn binance_trade_times_that_would_wrap_are_rejected_naming_the_field() {
        let text = "local_recv_ts,event_time_ms,trade_time_ms,symbol,trade_id,price,qty,is_buyer_maker\n\
                    1,1,18446744073710,BTCUSDT,1,1,1,true\n\
                    1,1,-1,BTCUSDT,2,1,1,true\n";
        let (_, records) = read_all("t.csv", text.as_bytes(), Format::Auto, MAX_RECORD_BYTES);
        let reasons: Vec<String> = records
            .iter()
            .map(|r| r.as_ref().unwrap_err().reason.to_string())
            .collect();
        // Unchecked, the first became t = 448384 ns.
        assert!(
            reasons[0].contains("trade_time_ms: 18446744073710 ms is out of range"),
            "{reasons:?}"
        );
        assert!(
            reasons[1].contains("trade_time_ms: -1 ms is before 1970"),
            "{reasons:?}"
        );
    }

    #[test]
    fn a_headerless_binance_trade_file_keeps_its_first_line() {
        let lines: String = (0..1000)
            .map(|i| format!("1723161255342000000,1723161255342,1723161255342,BTCUSDT,{i},61837.63,0.02,true\n"))
            .collect();
        let (file, records) = read_all(
            "t.csv",
            lines.as_bytes(),
            Format::BinanceTrades,
            MAX_RECORD_BYTES,
        );
        assert_eq!(records.iter().filter(|r| r.is_ok()).count(), 1000);
        assert_eq!(records[0].as_ref().unwrap().seq, 0);
        assert_eq!((file.counts().headers, file.counts().ticks), (0, 1000));
        let with_header = format!(
            "local_recv_ts,event_time_ms,trade_time_ms,symbol,trade_id,price,qty,is_buyer_maker\n{lines}"
        );
        let (file, records) = read_all(
            "t.csv",
            with_header.as_bytes(),
            Format::BinanceTrades,
            MAX_RECORD_BYTES,
        );
        assert_eq!((records.len(), file.counts().headers), (1000, 1));
    }

    #[test]
    fn a_byte_order_mark_is_passed_over() {
        let csv = "\u{feff}symbol,time_ns,seq,price,size\nAAPL,1,0,585.33,100\n";
        let (file, records) = read_all("t.txt", csv.as_bytes(), Format::Auto, MAX_RECORD_BYTES);
        assert_eq!((file.format(), records.len()), (Format::Csv, 1));
        assert!(records[0].is_ok());
        let jsonl =
            "\u{feff}{\"symbol\":\"A\",\"price\":\"1\",\"size\":\"1\",\"time_ns\":1,\"seq\":0}\n";
        let (file, records) = read_all("t.txt", jsonl.as_bytes(), Format::Auto, MAX_RECORD_BYTES);
        assert_eq!(file.format(), Format::Jsonl);
        assert!(records[0].is_ok(), "{records:?}");
        let trades = "\u{feff}local_recv_ts,event_time_ms,trade_time_ms,symbol,trade_id,price,qty,is_buyer_maker\n\
                      1,1,1723161255342,BTCUSDT,7,1,1,true\n";
        let (file, records) = read_all("t.txt", trades.as_bytes(), Format::Auto, MAX_RECORD_BYTES);
        assert_eq!(
            (file.format(), file.counts().headers),
            (Format::BinanceTrades, 1)
        );
        assert_eq!(records[0].as_ref().unwrap().seq, 7);
    }

    #[test]
    fn a_refused_tick_keeps_its_line_number_and_text() {
        let csv = "symbol,time_ns,seq,price,size\nAAPL,1,0,585.33,100\nAAPL,2,1,-5,100\n";
        let mut file =
            TickFile::from_reader("t.csv", csv.as_bytes(), Format::Auto, MAX_RECORD_BYTES).unwrap();
        let mut refused = Vec::new();
        while let Some(record) = file.next_record() {
            if let Ok(Record::Tick(tick)) = record
                && let Err(why) = tick.validate()
            {
                refused.push(file.refuse(why));
            }
        }
        assert_eq!(refused.len(), 1);
        assert_eq!(
            (refused[0].line, refused[0].raw.as_str()),
            (3, "AAPL,2,1,-5,100")
        );
        assert_eq!(refused[0].reason.to_string(), "price must be > 0, got -5");
        let c = file.counts();
        assert_eq!((c.lines, c.headers, c.ticks, c.rejected), (3, 1, 1, 1));
    }

    #[test]
    fn an_undetectable_file_names_the_fix() {
        let path = write("mystery.txt", b"hello world\n");
        let err = TickFile::open(&path, Format::Auto).unwrap_err().to_string();
        assert!(err.contains("--format"), "{err}");
    }
}
