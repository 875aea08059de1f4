//! Seeded mutation fuzzing of every decoder: the file formats (jsonl, csv, lobster,
//! binance-trades, binance-raw, finnhub-raw, alpaca-raw), Kafka payloads (protobuf and JSON
//! `Tick`s) and the WebSocket frame decoders (Binance, Finnhub, Alpaca).
//!
//! Seeds are the first lines of the real recordings (`GOSTOCKS_DATA_DIR`, else `../shared/data`)
//! and hand-written records; each input is a seed under one to four mutations (bit flips, bytes
//! inserted and deleted, chunks duplicated, cut or spliced from another seed, numbers replaced by
//! awkward ones, byte order marks, NULs, invalid UTF-8, CRLF, very long lines). For every input:
//! no panic; every rejection bounded (its `raw` to `MAX_RAW_BYTES`, its reason to
//! `MAX_REASON_BYTES`); every line accounted for (`FileCounts`); exactly the lines longer than the
//! limit refused for it, with their true length; no decoded time before 1970 (none wrapped); a
//! decoded Kafka tick re-encodes to itself. The figures are printed.
//!
//! The release run (`scripts/test`) tries about 1,000,000 inputs (in about 20 s); a debug run
//! about 5,000.
//! Inputs that once failed are kept in `tests/fuzz_regressions/` and run every time.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Cursor, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use gostocks_connectors::file::{Format, Record, Rejected, TickFile};
use gostocks_connectors::kafka::TickEncoding;
use gostocks_connectors::limits::{
    MAX_RAW_BYTES, MAX_REASON_BYTES, MAX_RECORD_BYTES, bound_reason, decode_record, too_long,
};
use gostocks_connectors::websocket::{Alpaca, Binance, Finnhub, Output, Provider};
use gostocks_core::{Rejection, Tick};
use gostocks_proto::v1;
use prost::Message;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Inputs in all: at least 200,000 optimised; few enough unoptimised that `cargo test` stays
/// quick. `GOSTOCKS_FUZZ_INPUTS` overrides it (e.g. a long unoptimised run, where arithmetic
/// overflow panics instead of wrapping).
const INPUTS: usize = if cfg!(debug_assertions) {
    5_000
} else {
    1_008_000
};

/// The RNG seed: `GOSTOCKS_FUZZ_SEED` overrides [`SEED`] to explore further.
fn seed() -> u64 {
    std::env::var("GOSTOCKS_FUZZ_SEED")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(SEED)
}

fn inputs() -> usize {
    std::env::var("GOSTOCKS_FUZZ_INPUTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(INPUTS)
}
const SEED: u64 = 0x6057_0c45_f022_2026;
/// Lines taken from each real recording.
const SAMPLE_LINES: usize = 20;
/// The name LOBSTER inputs go by (their symbol and date come from it).
const LOBSTER_NAME: &str = "AAPL_2012-06-21_34200000_57600000_message_1.csv";
/// Bytes of a reason beyond `MAX_REASON_BYTES`: the variant's own words (`undecodable record: `).
const REASON_SLACK: usize = 64;

/// A decoder under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    File(Format),
    Kafka(TickEncoding),
    WsBinance,
    WsFinnhub,
    WsAlpaca,
}

const TARGETS: [Target; 12] = [
    Target::File(Format::Jsonl),
    Target::File(Format::Csv),
    Target::File(Format::Lobster),
    Target::File(Format::BinanceTrades),
    Target::File(Format::BinanceRaw),
    Target::File(Format::FinnhubRaw),
    Target::File(Format::AlpacaRaw),
    Target::Kafka(TickEncoding::Protobuf),
    Target::Kafka(TickEncoding::Json),
    Target::WsBinance,
    Target::WsFinnhub,
    Target::WsAlpaca,
];

impl Target {
    fn name(self) -> String {
        match self {
            Target::File(f) => f.to_string(),
            Target::Kafka(TickEncoding::Protobuf) => "kafka-protobuf".into(),
            Target::Kafka(TickEncoding::Json) => "kafka-json".into(),
            Target::WsBinance => "ws-binance".into(),
            Target::WsFinnhub => "ws-finnhub".into(),
            Target::WsAlpaca => "ws-alpaca".into(),
        }
    }

    fn parse(name: &str) -> Option<Target> {
        TARGETS.into_iter().find(|t| t.name() == name)
    }

    fn file_name(self) -> &'static str {
        match self {
            Target::File(Format::Lobster) => LOBSTER_NAME,
            Target::File(Format::Jsonl) => "fuzz.jsonl",
            Target::File(Format::Csv | Format::BinanceTrades) => "fuzz.csv",
            _ => "fuzz.raw",
        }
    }
}

/// One input and how to read it.
struct Input<'a> {
    target: Target,
    /// The file name (file formats).
    name: &'a str,
    bytes: &'a [u8],
    /// The record length limit.
    max: usize,
    /// Detect the format instead of naming it.
    auto: bool,
    /// Read with `next_record` + `refuse` (as analyze does) rather than as an iterator.
    records: bool,
}

/// What the inputs of one target did.
#[derive(Default)]
struct Tally {
    inputs: u64,
    ticks: u64,
    rejected: u64,
    refused_files: u64,
}

fn data_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("GOSTOCKS_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data"));
    dir.join("README.md").exists().then_some(dir)
}

/// The lines of a (possibly gzip) file, each with its `\n`, for which `keep` holds, up to `n`.
fn lines(path: &Path, n: usize, keep: impl Fn(&[u8]) -> bool) -> Vec<Vec<u8>> {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let reader: Box<dyn BufRead> = if path.extension().is_some_and(|e| e == "gz") {
        Box::new(BufReader::new(flate2::read::MultiGzDecoder::new(file)))
    } else {
        Box::new(BufReader::new(file))
    };
    reader
        .split(b'\n')
        .take(20_000)
        .map(|l| l.expect("readable"))
        .filter(|l| keep(l))
        .take(n)
        .map(|mut l| {
            l.push(b'\n');
            l
        })
        .collect()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).expect("in memory");
    gz.finish().expect("in memory")
}

/// The seeds of every target: real records where the shared data has them, and hand-written
/// ones (valid, and at the edges of each format).
fn seeds() -> Vec<(Target, Vec<Vec<u8>>)> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let jsonl = lines(
        &repo.join("examples/data/ticks.jsonl"),
        SAMPLE_LINES,
        |_| true,
    );
    let mut ticks: Vec<Tick> = jsonl
        .iter()
        .map(|l| serde_json::from_slice(l).expect("the bundled recording"))
        .collect();
    let (mut lobster, mut trades, mut raw) = (Vec::new(), Vec::new(), Vec::new());
    match data_dir() {
        Some(dir) => {
            lobster = lines(
                &dir.join("lobster").join(LOBSTER_NAME),
                SAMPLE_LINES,
                |_| true,
            );
            trades = lines(
                &dir.join("crypto/trades/binance_spot_btcusdt_20240808.trades.csv"),
                SAMPLE_LINES,
                |_| true,
            );
            let session = dir.join("crypto/raw_hftbacktest/spot_btcusdt_20240808.gz");
            raw = lines(&session, 5, |_| true);
            raw.extend(lines(&session, 10, |l| {
                l.windows(8).any(|w| w == b"@trade\"")
            }));
            let mut from_trades = TickFile::open(
                dir.join("crypto/trades/binance_usdm_btcusdt_20240718.trades.csv"),
                Format::BinanceTrades,
            )
            .expect("a trade file");
            ticks.extend(
                from_trades
                    .by_ref()
                    .take(SAMPLE_LINES)
                    .map(|t| t.expect("valid")),
            );
        }
        None => eprintln!(
            "SKIP: real-data seeds (no market data; set GOSTOCKS_DATA_DIR): hand-written seeds only"
        ),
    }
    let join = |ls: &[Vec<u8>]| ls.concat();
    let text = |s: &str| s.as_bytes().to_vec();

    let mut jsonl_seeds = vec![
        join(&jsonl),
        text(
            "{\"symbol\":\"btcusdt\",\"price\":\"61837.63\",\"size\":\"0.02\",\"time_ns\":1723161255342000000,\"seq\":7,\"source\":\"binance\",\"side\":\"sell\",\"trade_id\":7,\"conditions\":[\"@\",\"T\"]}\n",
        ),
        text(
            "{\"symbol\":\"A\",\"price\":1e308,\"size\":1,\"time_ns\":9223372036854775807,\"seq\":18446744073709551615}\n\n{\"symbol\":\"A\",\"price\":\"92233720368.54775807\",\"size\":\"0.00000001\",\"time_ns\":-1,\"seq\":0}\r\n",
        ),
    ];
    jsonl_seeds.push(jsonl[0].clone());
    let csv_seeds = vec![
        text(
            "symbol,time_ns,seq,price,size\nAAPL,1,0,585.33,100\nAAPL,2,1,-5,100\n\nGOOG,3,2,565.2,10\n",
        ),
        text("price,extra,size,seq,time_ns,symbol\r\n1.5,x,2,0,5,BTC/USD\r\n"),
        {
            let mut csv = b"symbol,time_ns,seq,price,size\n".to_vec();
            for t in &ticks {
                csv.extend(
                    format!(
                        "{},{},{},{},{}\n",
                        t.symbol, t.time_ns, t.seq, t.price, t.size
                    )
                    .bytes(),
                );
            }
            csv
        },
    ];
    let mut lobster_seeds = vec![
        text(
            "34200.004241176,1,16113575,18,5853300,1\n34200.275016159,4,5740544,40,5857400,-1\n34201.5,5,0,100,5857500,1\n",
        ),
        text("89999.999999999,4,1,10,5857400,1\n0,5,1,1,1,-1\n34200,7,0,0,-1,-1\n"),
    ];
    if !lobster.is_empty() {
        lobster_seeds.push(join(&lobster));
    }
    let header =
        "local_recv_ts,event_time_ms,trade_time_ms,symbol,trade_id,price,qty,is_buyer_maker\n";
    let mut trade_seeds = vec![
        text(&format!(
            "{header}1723161255342000000,1723161255342,1723161255342,BTCUSDT,7,61837.63000000,0.02000000,true\n"
        )),
        text(
            "1,1,1723161255342,ETHUSDT,8,2500.1,1.5,false\n1,1,1723161255343,ETHUSDT,9,2500.2,0.5,true\n",
        ),
    ];
    if !trades.is_empty() {
        trade_seeds.push(join(&trades));
        trade_seeds.push(join(&trades[1..]));
    }
    let trade_frame = r#"{"stream":"btcusdt@trade","data":{"e":"trade","E":1723161255342,"s":"BTCUSDT","t":7,"p":"61837.63000000","q":"0.02000000","T":1723161255342,"m":true,"M":true}}"#;
    let mut binance_raw = vec![text(&format!(
        "1723161255342000000 {trade_frame}\n2 {{\"stream\":\"btcusdt@bookTicker\",\"data\":{{\"u\":1}}}}\n3 {{\"result\":null,\"id\":1}}\n4 {{\"error\":{{\"code\":2,\"msg\":\"x\"}}}}\n"
    ))];
    if !raw.is_empty() {
        binance_raw.push(join(&raw));
        binance_raw.push(gzip(&join(&raw[..raw.len().min(8)])));
    }
    binance_raw.push(gzip(&binance_raw[0]));
    let finnhub_frames = [
        r#"{"data":[{"c":["1","8"],"p":7296.89,"s":"BINANCE:BTCUSDT","t":1575526691134,"v":0.011467},{"c":null,"p":185.1,"s":"AAPL","t":1575526691134,"v":100}],"type":"trade"}"#,
        r#"{"type":"ping"}"#,
        r#"{"type":"error","msg":"Subscribing to too many symbols"}"#,
        r#"{"type":"trade","data":[]}"#,
    ];
    let alpaca_frames = [
        r#"[{"T":"t","S":"AAPL","i":52983525029461,"x":"V","p":173.18,"s":100,"c":["@"],"t":"2021-02-22T15:51:44.208123456Z","z":"C"},{"T":"q","S":"AAPL"}]"#,
        r#"[{"T":"success","msg":"connected"}]"#,
        r#"[{"T":"success","msg":"authenticated"}]"#,
        r#"[{"T":"subscription","trades":["AAPL"]}]"#,
        r#"{"T":"t","S":"MSFT","i":1,"p":"410.5","s":"1","t":"2024-02-29T23:59:60.999999999-05:00"}"#,
        r#"[{"T":"error","code":406,"msg":"connection limit exceeded"}]"#,
    ];
    let session = |frames: &[&str]| -> Vec<u8> {
        frames
            .iter()
            .enumerate()
            .flat_map(|(i, f)| {
                format!("{} {f}\n", 1_700_000_000_000_000_000u64 + i as u64).into_bytes()
            })
            .collect()
    };
    let mut binance_frames: Vec<Vec<u8>> = vec![text(trade_frame)];
    binance_frames.extend(raw.iter().filter_map(|l| {
        let space = l.iter().position(|&c| c == b' ')?;
        Some(l[space + 1..l.len() - 1].to_vec())
    }));
    let protobuf: Vec<Vec<u8>> = ticks
        .iter()
        .map(|t| v1::Tick::from(t).encode_to_vec())
        .collect();
    let json: Vec<Vec<u8>> = ticks
        .iter()
        .map(|t| serde_json::to_vec(t).expect("serializable"))
        .collect();
    jsonl_seeds.push(json.concat());

    vec![
        (Target::File(Format::Jsonl), jsonl_seeds),
        (Target::File(Format::Csv), csv_seeds),
        (Target::File(Format::Lobster), lobster_seeds),
        (Target::File(Format::BinanceTrades), trade_seeds),
        (Target::File(Format::BinanceRaw), binance_raw),
        (
            Target::File(Format::FinnhubRaw),
            vec![session(&finnhub_frames)],
        ),
        (
            Target::File(Format::AlpacaRaw),
            vec![session(&alpaca_frames)],
        ),
        (Target::Kafka(TickEncoding::Protobuf), protobuf),
        (Target::Kafka(TickEncoding::Json), json),
        (Target::WsBinance, binance_frames),
        (
            Target::WsFinnhub,
            finnhub_frames.iter().map(|f| text(f)).collect(),
        ),
        (
            Target::WsAlpaca,
            alpaca_frames.iter().map(|f| text(f)).collect(),
        ),
    ]
}

/// Awkward texts to put where a number (or anything) was.
const INTERESTING: &[&str] = &[
    "9223372036854775807",
    "-9223372036854775808",
    "9223372036854775808",
    "18446744073710",
    "18446744073709551615",
    "18446744073709551616",
    "-1",
    "0",
    "-0",
    "-0.5",
    "1e308",
    "-1e308",
    "1e-400",
    "1e99999",
    "NaN",
    "inf",
    "-inf",
    "99999999999",
    "92233720368.54775807",
    "92233720368.54775808",
    "1.000000001",
    "0.00000001",
    "86400",
    "89999.999999999",
    "90000",
    "4294967296",
    "null",
    "true",
    "\"\"",
    "[]",
    "{}",
    "\"\\ud800\"",
    "\\u0000",
    "2262-04-11T23:47:17Z",
    "1969-12-31T23:59:59Z",
    "2021-02-29T00:00:00Z",
    "9999-12-31T23:59:59.999999999+23:59",
    "local_recv_ts,",
    ",",
    "\"",
    " ",
];

fn interesting(rng: &mut StdRng) -> Vec<u8> {
    if rng.random_bool(0.1) {
        // A very long run of digits, maybe signed, maybe with a point.
        let mut digits = vec![b'9'; rng.random_range(20..5_000)];
        if rng.random_bool(0.5) {
            let at = rng.random_range(0..digits.len());
            digits[at] = b'.';
        }
        if rng.random_bool(0.3) {
            digits.insert(0, b'-');
        }
        return digits;
    }
    INTERESTING[rng.random_range(0..INTERESTING.len())]
        .as_bytes()
        .to_vec()
}

/// One mutation of `input`; `donor` is another seed of the same target to splice from.
fn mutate_once(rng: &mut StdRng, input: &mut Vec<u8>, donor: &[u8]) {
    let at = |rng: &mut StdRng, len: usize| rng.random_range(0..=len);
    let len = input.len();
    match rng.random_range(0..15) {
        0 if len > 0 => {
            let i = rng.random_range(0..len);
            input[i] ^= 1 << rng.random_range(0..8);
        }
        1 => {
            let i = at(rng, len);
            input.insert(i, rng.random());
        }
        2 if len > 0 => {
            input.remove(rng.random_range(0..len));
        }
        3 if len > 0 => {
            // A chunk duplicated.
            let start = rng.random_range(0..len);
            let end = rng.random_range(start..=len.min(start + 256));
            let chunk = input[start..end].to_vec();
            let i = at(rng, len);
            input.splice(i..i, chunk);
        }
        4 => input.truncate(at(rng, len)),
        5 if len > 0 => {
            let start = rng.random_range(0..len);
            let end = rng.random_range(start..=len.min(start + 64));
            input.drain(start..end);
        }
        6 | 7 => {
            // A number (a run of digits, sign and point) replaced by an awkward text.
            let digit = |c: &u8| c.is_ascii_digit() || matches!(c, b'-' | b'.');
            let from = at(rng, len);
            match input[from..].iter().position(digit) {
                Some(offset) => {
                    let start = from + offset;
                    let end = start + input[start..].iter().take_while(|c| digit(c)).count();
                    let text = interesting(rng);
                    input.splice(start..end, text);
                }
                None => {
                    let text = interesting(rng);
                    input.splice(from..from, text);
                }
            }
        }
        8 => {
            let text = interesting(rng);
            let i = at(rng, len);
            input.splice(i..i, text);
        }
        9 => {
            let i = if rng.random_bool(0.7) {
                0
            } else {
                at(rng, len)
            };
            input.splice(i..i, *b"\xEF\xBB\xBF");
        }
        10 => {
            let bad: &[&[u8]] = &[
                b"\0",
                b"\xff",
                b"\xc3",
                b"\xed\xa0\x80",
                b"\xf4\x90\x80\x80",
                b"\xe2\x82",
            ];
            let i = at(rng, len);
            input.splice(i..i, bad[rng.random_range(0..bad.len())].iter().copied());
        }
        11 => {
            let crlf: Vec<u8> = input
                .iter()
                .flat_map(|&c| {
                    if c == b'\n' {
                        vec![b'\r', b'\n']
                    } else {
                        vec![c]
                    }
                })
                .collect();
            *input = crlf;
        }
        12 => {
            // A very long line; now and then one over the default limit.
            let n = match rng.random_range(0..1000) {
                0..3 => MAX_RECORD_BYTES + rng.random_range(1..50_000),
                3..100 => rng.random_range(20_000..200_000),
                _ => rng.random_range(100..20_000),
            };
            let byte = [b'\0', b'9', b' ', b'a', b',', b'"', b'\r'][rng.random_range(0..7)];
            let i = at(rng, len);
            input.splice(i..i, std::iter::repeat_n(byte, n));
        }
        13 if !donor.is_empty() => {
            let start = rng.random_range(0..donor.len());
            let end = rng.random_range(start..=donor.len());
            let i = at(rng, len);
            input.splice(i..i, donor[start..end].iter().copied());
        }
        14 => {
            let i = at(rng, len);
            input.insert(i, if rng.random_bool(0.5) { b'\n' } else { b'\r' });
        }
        _ => {}
    }
}

fn mutate(rng: &mut StdRng, seed: &[u8], donor: &[u8]) -> Vec<u8> {
    let mut input = seed.to_vec();
    for _ in 0..rng.random_range(1..=4) {
        mutate_once(rng, &mut input, donor);
    }
    input
}

/// A record length limit for `input`: mostly the default, else near the length of one of its
/// lines (the edge of the limit, with and without `\r`), else small.
fn limit(rng: &mut StdRng, input: &[u8]) -> usize {
    match rng.random_range(0..10) {
        0..7 => MAX_RECORD_BYTES,
        7 | 8 => {
            let lines: Vec<&[u8]> = input.split(|&c| c == b'\n').collect();
            let line = lines[rng.random_range(0..lines.len())];
            (line.len() + rng.random_range(0..3)).saturating_sub(1)
        }
        _ => rng.random_range(0..4096),
    }
}

fn check_reason(reason: &Rejection, what: &str) {
    let text = reason.to_string();
    assert!(
        text.len() <= MAX_REASON_BYTES + REASON_SLACK,
        "{what}: a reason of {} bytes: {}...",
        text.len(),
        text.chars().take(200).collect::<String>()
    );
}

/// Reads one file input to its end, checking every invariant; returns (ticks, rejected, refused
/// at open).
fn check_file(input: &Input<'_>) -> (u64, u64, u64) {
    let Target::File(format) = input.target else {
        unreachable!("file inputs only")
    };
    let asked = if input.auto { Format::Auto } else { format };
    let what = format!("{} ({asked}, max {})", input.target.name(), input.max);
    let mut file = match TickFile::from_reader(
        input.name,
        Cursor::new(input.bytes.to_vec()),
        asked,
        input.max,
    ) {
        Ok(file) => file,
        Err(e) => {
            // A file that cannot be read at all says why, briefly.
            let text = e.to_string();
            assert!(text.len() <= 1024 + input.name.len(), "{what}: {text}");
            return (0, 0, 1);
        }
    };
    let format = file.format();
    let (mut oks, mut rejections): (u64, Vec<Rejected>) = (0, Vec::new());
    let mut steps = 0usize;
    loop {
        steps += 1;
        assert!(
            steps <= input.bytes.len() + 2,
            "{what}: more records than bytes"
        );
        let item = if input.records {
            match file.next_record() {
                None => break,
                Some(Ok(Record::Trade(_))) => Ok(None),
                Some(Ok(Record::Tick(tick))) => match tick.validate() {
                    Ok(_) => Ok(Some(tick)),
                    Err(why) => Err(file.refuse(why)),
                },
                Some(Err(r)) => Err(r),
            }
        } else {
            match file.next() {
                None => break,
                Some(record) => record.map(Some),
            }
        };
        match item {
            Ok(tick) => {
                oks += 1;
                if let Some(tick) = tick
                    && !matches!(format, Format::Jsonl | Format::Csv)
                {
                    // Times these decoders scale are never before 1970, never wrapped.
                    assert!(
                        tick.time_ns >= 0,
                        "{what}: a decoded time of {}",
                        tick.time_ns
                    );
                }
            }
            Err(r) => {
                assert!(
                    r.raw.len() <= MAX_RAW_BYTES,
                    "{what}: a raw of {} bytes",
                    r.raw.len()
                );
                check_reason(&r.reason, &what);
                assert!(
                    r.line >= 1 && r.line <= file.counts().lines,
                    "{what}: line {}",
                    r.line
                );
                rejections.push(r);
            }
        }
    }
    let c = file.counts();
    assert_eq!(
        (c.ticks, c.rejected),
        (oks, rejections.len() as u64),
        "{what}: {c:?}"
    );
    let accounted = c.headers + c.ticks + c.rejected + c.skipped;
    if matches!(
        format,
        Format::BinanceRaw | Format::FinnhubRaw | Format::AlpacaRaw
    ) {
        assert!(c.lines <= accounted, "{what}: lines unaccounted for: {c:?}");
    } else {
        assert_eq!(c.lines, accounted, "{what}: lines unaccounted for: {c:?}");
    }
    // Exactly the lines over the limit are refused for it, with their true length (plain files
    // without a header line, where the lines are those of the input).
    let plain = !input.bytes.starts_with(&[0x1f, 0x8b]);
    if plain && c.headers == 0 && format != Format::Csv {
        let text = input
            .bytes
            .strip_prefix(b"\xEF\xBB\xBF")
            .unwrap_or(input.bytes);
        let mut want = BTreeSet::new();
        let mut pieces: Vec<&[u8]> = text.split(|&c| c == b'\n').collect();
        if pieces.last().is_some_and(|p| p.is_empty()) {
            pieces.pop();
        }
        for (i, line) in pieces.iter().enumerate() {
            let len = line.strip_suffix(b"\r").unwrap_or(line).len();
            if len > input.max {
                want.insert((i as u64 + 1, len as u64));
            }
        }
        let got: BTreeSet<(u64, u64)> = rejections
            .iter()
            .filter(|r| r.reason == too_long(r.bytes, input.max))
            .map(|r| (r.line, r.bytes))
            .collect();
        assert_eq!(got, want, "{what}: over-long lines");
    }
    (oks, rejections.len() as u64, 0)
}

fn check_kafka(encoding: TickEncoding, payload: &[u8], max: usize) -> (u64, u64) {
    let what = format!("kafka {encoding:?} (max {max})");
    match decode_record(payload, encoding, max) {
        Ok(tick) => {
            assert!(payload.len() <= max, "{what}: an over-long payload decoded");
            let _ = tick.validate();
            // What decodes re-encodes to itself.
            let again = match encoding {
                TickEncoding::Protobuf => v1::Tick::from(&tick).encode_to_vec(),
                TickEncoding::Json => serde_json::to_vec(&tick).expect("serializable"),
            };
            assert_eq!(
                decode_record(&again, encoding, usize::MAX).as_ref(),
                Ok(&tick),
                "{what}: re-encoded"
            );
            (1, 0)
        }
        Err(reason) => {
            check_reason(&reason, &what);
            if payload.len() > max {
                assert_eq!(reason, too_long(payload.len() as u64, max), "{what}");
            }
            (0, 1)
        }
    }
}

fn check_frame(target: Target, frame: &[u8]) -> (u64, u64) {
    let text = String::from_utf8_lossy(frame);
    let mut out = Output::default();
    let what = target.name();
    match target {
        Target::WsBinance => {
            let _ = Binance::new(&["BTCUSDT".into()], None).on_frame(&text, &mut out);
            // A Binance frame is one trade, one thing passed over, or one notice.
            assert_eq!(
                out.records.len() as u64 + out.ignored + out.notices.len() as u64,
                1,
                "{what}"
            );
        }
        Target::WsFinnhub => {
            let _ = Finnhub::new(&["AAPL".into()], None, "t").on_frame(&text, &mut out);
        }
        Target::WsAlpaca => {
            let mut alpaca = Alpaca::new(&["AAPL".into()], None, "k", "s");
            alpaca.on_connect(&mut out);
            let _ = alpaca.on_frame(&text, &mut out);
        }
        _ => unreachable!("frame targets only"),
    }
    let (mut ticks, mut rejected) = (0, 0);
    for record in &out.records {
        match record {
            Ok(tick) => {
                ticks += 1;
                assert!(
                    tick.time_ns >= 0,
                    "{what}: a decoded time of {}",
                    tick.time_ns
                );
                let _ = tick.validate();
            }
            Err(reason) => {
                rejected += 1;
                // The client bounds a reason before logging it.
                check_reason(&bound_reason(reason.clone()), &what);
            }
        }
    }
    (ticks, rejected)
}

/// Runs one input of `target`; returns (ticks, rejected, files refused at open).
fn run(
    target: Target,
    name: &str,
    bytes: &[u8],
    max: usize,
    auto: bool,
    records: bool,
) -> (u64, u64, u64) {
    match target {
        Target::File(_) => check_file(&Input {
            target,
            name,
            bytes,
            max,
            auto,
            records,
        }),
        Target::Kafka(encoding) => {
            let (t, r) = check_kafka(encoding, bytes, max);
            (t, r, 0)
        }
        _ => {
            let (t, r) = check_frame(target, bytes);
            (t, r, 0)
        }
    }
}

/// The process's peak resident memory in bytes (Linux), for the log.
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// A file name for a LOBSTER input: mostly the real one, sometimes with its date mangled.
fn lobster_name(rng: &mut StdRng) -> String {
    const NAMES: &[&str] = &[
        "AAPL_2012-02-31_34200000_57600000_message_1.csv",
        "AAPL_2012-02-29_34200000_57600000_message_1.csv",
        "AAPL_292277026596-12-31_0_0_message_1.csv",
        "AAPL_-1-01-01_0_0_message_1.csv",
        "AAPL_2261-12-31_0_0_message_1.csv",
        "AAPL_2012-00-10_0_0_message_1.csv",
        "_2012-06-21_0_0_message_1.csv",
        "AAPL_2012-06-21",
    ];
    if rng.random_bool(0.95) {
        return LOBSTER_NAME.to_owned();
    }
    if rng.random_bool(0.5) {
        return NAMES[rng.random_range(0..NAMES.len())].to_owned();
    }
    let mut name = LOBSTER_NAME.as_bytes().to_vec();
    mutate_once(rng, &mut name, b"");
    String::from_utf8_lossy(&name[..name.len().min(300)]).into_owned()
}

#[test]
fn every_decoder_survives_seeded_mutations_bounded_and_accounted() {
    let started = Instant::now();
    let seeds = seeds();
    let seed = seed();
    let mut rng = StdRng::seed_from_u64(seed);
    let inputs = inputs();
    let per_target = inputs / seeds.len();
    let mut total = 0u64;
    for (target, seeds) in &seeds {
        let target_started = Instant::now();
        let mut tally = Tally::default();
        for _ in 0..per_target {
            let seed = &seeds[rng.random_range(0..seeds.len())];
            let donor = &seeds[rng.random_range(0..seeds.len())];
            let bytes = mutate(&mut rng, seed, donor);
            let max = limit(&mut rng, &bytes);
            let name = match target {
                Target::File(Format::Lobster) => lobster_name(&mut rng),
                t => t.file_name().to_owned(),
            };
            let (auto, records) = (rng.random_bool(0.2), rng.random_bool(0.5));
            let outcome =
                std::panic::catch_unwind(|| run(*target, &name, &bytes, max, auto, records));
            let (t, r, refused) = outcome.unwrap_or_else(|panic| {
                // Kept in the regression format, to add to tests/fuzz_regressions/.
                let path = std::env::temp_dir()
                    .join(format!("gostocks-fuzz-failure-{}.txt", target.name()));
                let head = format!("{} {max} {name}\n", target.name());
                std::fs::write(&path, [head.as_bytes(), &bytes].concat()).expect("written");
                eprintln!(
                    "fuzz: failing input (auto {auto}, records {records}) kept in {}",
                    path.display()
                );
                std::panic::resume_unwind(panic)
            });
            tally.inputs += 1;
            tally.ticks += t;
            tally.rejected += r;
            tally.refused_files += refused;
        }
        total += tally.inputs;
        eprintln!(
            "fuzz {:<15} {:>7} inputs ({} seeds): {:>7} ticks, {:>7} rejected, {:>6} files refused at open, {:.2}s",
            target.name(),
            tally.inputs,
            seeds.len(),
            tally.ticks,
            tally.rejected,
            tally.refused_files,
            target_started.elapsed().as_secs_f64()
        );
    }
    let secs = started.elapsed().as_secs_f64();
    let peak = peak_rss();
    eprintln!(
        "fuzz total: {total} inputs over {} decoders in {secs:.1}s ({}; seed {seed:#x}); peak RSS {}",
        seeds.len(),
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        peak.map_or("unknown".into(), |b| format!("{} MiB", b >> 20))
    );
    assert!(total + seeds.len() as u64 > inputs as u64);
    // Inputs run up to a little over 1 MiB: a reader that held them whole, more than once,
    // or grew with them, would show here.
    if let Some(peak) = peak {
        assert!(peak < 512 << 20, "peak RSS {} MiB", peak >> 20);
    }
}

/// Each file of `tests/fuzz_regressions/` is an input that once failed (or a defect found by
/// hand). Its first line says how to read the rest: `<decoder> <max record bytes> [<file name>]`.
#[test]
fn fuzz_regressions_stay_fixed() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_regressions");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("listable").path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    paths.sort();
    assert!(
        !paths.is_empty(),
        "no regression inputs in {}",
        dir.display()
    );
    for path in &paths {
        let bytes = std::fs::read(path).expect("readable");
        let split = bytes
            .iter()
            .position(|&c| c == b'\n')
            .unwrap_or(bytes.len());
        let head = String::from_utf8_lossy(&bytes[..split]).into_owned();
        let input = bytes.get(split + 1..).unwrap_or_default();
        let mut words = head.split_whitespace();
        let (Some(target), Some(max)) = (words.next(), words.next()) else {
            panic!(
                "{}: the first line must be `<decoder> <max> [<name>]`",
                path.display()
            )
        };
        let target = Target::parse(target)
            .unwrap_or_else(|| panic!("{}: unknown decoder {target}", path.display()));
        let max: usize = max.parse().expect("a byte count");
        let name = words.next().unwrap_or(target.file_name());
        for (auto, records) in [(false, false), (false, true), (true, false)] {
            run(target, name, input, max, auto, records);
        }
    }
    eprintln!("fuzz regressions: {} inputs", paths.len());
}
