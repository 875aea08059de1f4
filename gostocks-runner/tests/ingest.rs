//! `gostocks ingest` end to end: the binary against local WebSocket servers that speak Finnhub,
//! Alpaca and Binance (the Binance one replays the real recorded sessions frame for frame), with
//! the ticks read back from a real Kafka-protocol broker.

mod common;
#[path = "common/ws_server.rs"]
mod ws_server;

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use gostocks_connectors::file::{Format, TickFile};
use gostocks_connectors::kafka::{KafkaConfig, TickConsumer, TickEncoding, decode_tick};
use gostocks_core::Tick;
use rdkafka::Message;
use tokio::io::{AsyncBufReadExt, BufReader};
use ws_server::{Conn, session_frames};

// ---------------------------------------------------------------------------------------------
// Helpers: the binary, the broker, the data.

/// A running `gostocks ingest`, its stderr collected.
struct Ingest {
    child: tokio::process::Child,
    log: Arc<Mutex<String>>,
}

/// How an ingest run ended.
struct Finished {
    status: ExitStatus,
    log: String,
}

impl Finished {
    /// A counter of the final `ingest summary:` line.
    fn count(&self, key: &str) -> u64 {
        self.figure(key) as u64
    }

    fn figure(&self, key: &str) -> f64 {
        let line = self
            .log
            .lines()
            .find(|l| l.starts_with("ingest summary:"))
            .unwrap_or_else(|| panic!("no summary line in:\n{}", self.log));
        line.split_whitespace()
            .filter_map(|w| w.split_once('='))
            .find(|(k, _)| *k == key)
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or_else(|| panic!("no `{key}` in {line}"))
    }
}

impl Ingest {
    /// Starts ingest from `url` into `topic`, with fast timings for tests.
    fn start(
        provider: &str,
        symbols: &str,
        url: &str,
        topic: &str,
        brokers: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Ingest {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_gostocks"));
        cmd.args([
            "--log",
            "info",
            "ingest",
            "--provider",
            provider,
            "--symbols",
            symbols,
        ])
        .args(["--url", url, "--topic", topic, "--brokers", brokers])
        .args(["--ping-interval", "300ms", "--read-timeout", "2s"])
        .args([
            "--backoff-min",
            "50ms",
            "--backoff-max",
            "400ms",
            "--stats-interval",
            "1s",
        ])
        .args(extra)
        .env_remove("RUST_LOG")
        .env_remove("FINNHUB_TOKEN")
        .env_remove("APCA_API_KEY_ID")
        .env_remove("APCA_API_SECRET_KEY")
        .env_remove("BINANCE_API_KEY")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
        let mut child = cmd.spawn().expect("gostocks starts");
        let log = Arc::new(Mutex::new(String::new()));
        let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        tokio::spawn({
            let log = Arc::clone(&log);
            async move {
                while let Ok(Some(line)) = lines.next_line().await {
                    let mut log = log.lock().expect("lock");
                    log.push_str(&line);
                    log.push('\n');
                }
            }
        });
        Ingest { child, log }
    }

    fn log(&self) -> String {
        self.log.lock().expect("lock").clone()
    }

    /// Waits until the log contains `needle`.
    async fn wait_log(&self, needle: &str, within: Duration) {
        let start = Instant::now();
        while !self.log().contains(needle) {
            assert!(
                start.elapsed() < within,
                "no `{needle}` within {within:?} in:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM, as an operator's Ctrl-C: the ingestor delivers what it holds and exits.
    async fn stop(self) -> Finished {
        let pid = self.child.id().expect("running");
        std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("kill runs");
        self.exit(Duration::from_secs(60)).await
    }

    /// Waits for the process to end by itself.
    async fn exit(mut self, within: Duration) -> Finished {
        let status = tokio::time::timeout(within, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("ingest did not exit within {within:?}:\n{}", self.log()))
            .expect("wait");
        // Let the reader take the last lines.
        tokio::time::sleep(Duration::from_millis(200)).await;
        Finished {
            status,
            log: self.log(),
        }
    }
}

/// Reads ticks from `topic` until `expected` arrived, then a little longer to catch any extra.
async fn read_ticks(brokers: &str, topic: &str, expected: usize) -> Vec<Tick> {
    let consumer = TickConsumer::subscribe(
        &KafkaConfig::new(brokers, format!("{topic}_reader")),
        &[topic],
    )
    .expect("consumer");
    let mut stream = consumer.consumer.stream();
    let mut got = Vec::new();
    loop {
        let wait = if got.len() < expected {
            Duration::from_secs(60)
        } else {
            Duration::from_secs(2)
        };
        match tokio::time::timeout(wait, stream.next()).await {
            Ok(Some(Ok(msg))) => {
                let tick = decode_tick(msg.payload().expect("payload"), TickEncoding::Protobuf)
                    .expect("protobuf tick");
                assert_eq!(msg.key(), Some(tick.symbol.as_bytes()), "keyed by symbol");
                got.push(tick);
            }
            Ok(Some(Err(e))) => panic!("kafka error: {e}"),
            Ok(None) | Err(_) => break,
        }
    }
    got
}

async fn topic(brokers: &str, kind: &str) -> String {
    let topic = common::unique_topic(kind);
    gostocks_connectors::kafka::ensure_topic(brokers, &topic, 3)
        .await
        .expect("topic created");
    topic
}

fn sorted(mut ticks: Vec<Tick>) -> Vec<Tick> {
    ticks.sort_by(|a, b| {
        (&a.symbol, a.seq, a.time_ns, a.price, a.size)
            .cmp(&(&b.symbol, b.seq, b.time_ns, b.price, b.size))
    });
    ticks
}

fn trade_frames(frames: &[String]) -> usize {
    frames.iter().filter(|f| f.contains("@trade\"")).count()
}

/// Two (stats, bars) outputs are byte-identical; on failure, says where they first differ.
fn same_lines(got: &(String, String), want: &(String, String), what: &str) {
    for (name, got, want) in [("stats", &got.0, &want.0), ("bars", &got.1, &want.1)] {
        if got == want {
            continue;
        }
        let (g, w): (Vec<&str>, Vec<&str>) = (got.lines().collect(), want.lines().collect());
        let i = g
            .iter()
            .zip(&w)
            .position(|(a, b)| a != b)
            .unwrap_or(g.len().min(w.len()));
        panic!(
            "{what}: {name} differ ({} vs {} lines); first at line {}:\n  got:  {}\n  want: {}",
            g.len(),
            w.len(),
            i + 1,
            g.get(i).unwrap_or(&"<end>"),
            w.get(i).unwrap_or(&"<end>")
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Binance: the real recorded sessions.

/// Each recorded session, its trade CSV and its symbol.
const SESSIONS: [(&str, &str, &str); 9] = [
    (
        "spot_btcusdt_20230405.dat.gz",
        "binance_spot_btcusdt_20230405.trades.csv",
        "BTCUSDT",
    ),
    (
        "spot_btcusdt_20240808.gz",
        "binance_spot_btcusdt_20240808.trades.csv",
        "BTCUSDT",
    ),
    (
        "spot_btcusdt_20240809.gz",
        "binance_spot_btcusdt_20240809.trades.csv",
        "BTCUSDT",
    ),
    (
        "spot_ethusdt_20240808.gz",
        "binance_spot_ethusdt_20240808.trades.csv",
        "ETHUSDT",
    ),
    (
        "spot_ethusdt_20240809.gz",
        "binance_spot_ethusdt_20240809.trades.csv",
        "ETHUSDT",
    ),
    (
        "usdm_btcusdt_20240718.gz",
        "binance_usdm_btcusdt_20240718.trades.csv",
        "BTCUSDT",
    ),
    (
        "usdm_btcusdt_20240719.gz",
        "binance_usdm_btcusdt_20240719.trades.csv",
        "BTCUSDT",
    ),
    (
        "usdm_btcusdt_20240808.gz",
        "binance_usdm_btcusdt_20240808.trades.csv",
        "BTCUSDT",
    ),
    (
        "usdm_ethusdt_20240808.gz",
        "binance_usdm_ethusdt_20240808.trades.csv",
        "ETHUSDT",
    ),
];

/// A recorded session: its frames, and the ticks of its trade CSV.
struct Session {
    name: &'static str,
    symbol: &'static str,
    csv: PathBuf,
    frames: Arc<Vec<String>>,
    expected: Vec<Tick>,
}

fn session(dir: &Path, i: usize) -> Session {
    let (raw, csv, symbol) = SESSIONS[i];
    let csv = dir.join("crypto/trades").join(csv);
    let expected = TickFile::open(&csv, Format::BinanceTrades)
        .expect("trade csv")
        .map(|r| r.expect("the trade CSVs decode"))
        .collect();
    Session {
        name: raw,
        symbol,
        frames: Arc::new(session_frames(
            &dir.join("crypto/raw_hftbacktest").join(raw),
        )),
        csv,
        expected,
    }
}

/// A Binance server replaying `frames`: the first connection gets `frames[..cut]` and is then
/// dropped (`stall`: left silent instead; kept open if that was the whole session); later ones
/// get `frames[resume..]` and stay open.
async fn binance_server(
    frames: Arc<Vec<String>>,
    cut: usize,
    resume: usize,
    stall: bool,
) -> ws_server::WsServer {
    ws_server::spawn(
        |path| path.starts_with("/stream?streams="),
        move |mut conn: Conn| {
            let frames = Arc::clone(&frames);
            async move {
                if conn.index == 0 {
                    conn.send_all(&frames[..cut]).await;
                    if stall {
                        conn.stall().await;
                    } else if cut < frames.len() {
                        conn.cut().await;
                    } else {
                        conn.hold().await;
                    }
                } else {
                    conn.send_all(&frames[resume..]).await;
                    conn.hold().await;
                }
            }
        },
    )
    .await
}

/// What one Binance ingest run gave.
struct BinanceRun {
    got: Vec<Tick>,
    done: Finished,
    connections: usize,
    secs: f64,
    /// `/metrics` just before the stop, with `--metrics-addr` among the flags.
    metrics: Option<prometheus_parse::Scrape>,
}

/// Ingests `s` from a [`binance_server`] into a fresh topic and reads `expect` ticks back.
async fn ingest_binance(
    brokers: &str,
    s: &Session,
    (cut, resume, stall): (usize, usize, bool),
    expect: usize,
    extra: &[&str],
) -> BinanceRun {
    let server = binance_server(Arc::clone(&s.frames), cut, resume, stall).await;
    let topic = topic(brokers, "ingest_binance").await;
    let started = Instant::now();
    let ingest = Ingest::start(
        "binance",
        s.symbol,
        &server.url,
        &topic,
        brokers,
        extra,
        &[],
    );
    let got = read_ticks(brokers, &topic, expect).await;
    let secs = started.elapsed().as_secs_f64();
    let metrics = match extra.iter().position(|a| *a == "--metrics-addr") {
        Some(i) => {
            let addr = extra[i + 1].to_owned();
            let scraped = tokio::task::spawn_blocking(move || common::scrape(&addr));
            Some(scraped.await.expect("scrape"))
        }
        None => None,
    };
    let done = ingest.stop().await;
    assert!(done.status.success(), "{}: {}", s.name, done.log);
    assert_eq!(
        got.len(),
        expect,
        "{}: ticks out of Kafka\n{}",
        s.name,
        done.log
    );
    BinanceRun {
        got,
        done,
        connections: server.seen.connections(),
        secs,
        metrics,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn binance_real_sessions_every_trade_exactly_once_through_a_dropped_connection() {
    let (Some(brokers), Some(dir)) = (common::brokers(), common::data_dir()) else {
        return;
    };
    let (mut all_frames, mut all_ticks, mut secs) = (0usize, 0usize, 0f64);
    for i in 0..SESSIONS.len() {
        let s = session(&dir, i);
        let (raw, n) = (s.name, s.expected.len());
        assert_eq!(
            trade_frames(&s.frames),
            n,
            "{raw}: one @trade frame per CSV row"
        );
        // Drop the connection halfway; the server then resends the last 2000 frames before it.
        let cut = s.frames.len() / 2;
        let resume = cut - 2000;
        let resent = trade_frames(&s.frames[resume..cut]);
        let run = ingest_binance(&brokers, &s, (cut, resume, false), n, &[]).await;
        let done = &run.done;
        assert_eq!(
            sorted(run.got),
            sorted(s.expected),
            "{raw}: price, size, time, id"
        );
        assert_eq!(run.connections, 2, "{raw}");
        assert_eq!(
            done.count("duplicates"),
            resent as u64,
            "{raw}: resent trades dropped"
        );
        assert_eq!(done.count("gap_ids"), 0, "{raw}");
        assert_eq!(done.count("parse_errors"), 0, "{raw}");
        let frames = s.frames.len();
        assert_eq!(
            done.count("frames"),
            (frames + cut - resume) as u64,
            "{raw}"
        );
        assert_eq!(done.count("ticks"), n as u64, "{raw}");
        assert!(done.count("reconnects") >= 1, "{raw}");
        eprintln!(
            "{raw}: {frames} frames, {n} ticks, {resent} resent and dropped; ingest {:.0} frames/s, {:.0} ticks/s while streaming; {:.2}s until all were read back from Kafka",
            done.figure("frames_per_s"),
            done.figure("ticks_per_s"),
            run.secs
        );
        all_frames += frames;
        all_ticks += n;
        secs += run.secs;
    }
    eprintln!(
        "binance sessions: {all_frames} frames, {all_ticks} ticks in {secs:.1}s, read back from Kafka"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn binance_trades_withheld_across_a_reconnect_are_reported_as_a_gap() {
    let (Some(brokers), Some(dir)) = (common::brokers(), common::data_dir()) else {
        return;
    };
    let s = session(&dir, 5);
    // The second connection skips 1500 frames: their trades are lost upstream.
    let cut = s.frames.len() / 3;
    let resume = cut + 1500;
    let withheld = trade_frames(&s.frames[cut..resume]);
    assert!(withheld > 0);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let addr = port.to_string();
    let run = ingest_binance(
        &brokers,
        &s,
        (cut, resume, false),
        s.expected.len() - withheld,
        &["--metrics-addr", &addr],
    )
    .await;
    assert_eq!(
        run.done.count("gap_ids"),
        withheld as u64,
        "{}",
        run.done.log
    );
    // The same counters on /metrics, and the delay histogram holding every tick.
    let m = run.metrics.expect("scraped");
    let get = |name: &str| {
        m.samples
            .iter()
            .find(|x| x.metric == name)
            .map(|x| match &x.value {
                prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => *v,
                prometheus_parse::Value::Histogram(b) => b
                    .iter()
                    .find(|b| b.less_than.is_infinite())
                    .map_or(0.0, |b| b.count),
                _ => f64::NAN,
            })
    };
    assert_eq!(get("gostocks_ingest_gap_ids_total"), Some(withheld as f64));
    let ticks = get("gostocks_ingest_ticks_total").expect("ticks");
    assert!(ticks > 0.0 && get("gostocks_ingest_frames_total") >= Some(ticks));
    assert!(get("gostocks_ingest_reconnects_total") >= Some(1.0));
    assert_eq!(get("gostocks_ingest_overflow_total"), Some(0.0));
    assert_eq!(get("gostocks_ingest_delay_seconds"), Some(ticks));
    assert!(
        run.done.log.contains("gap in trade ids"),
        "{}",
        run.done.log
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn binance_server_that_stops_answering_pings_is_detected_and_left() {
    let (Some(brokers), Some(dir)) = (common::brokers(), common::data_dir()) else {
        return;
    };
    let s = session(&dir, 0);
    let cut = s.frames.len() / 2;
    let run = ingest_binance(&brokers, &s, (cut, cut - 500, true), s.expected.len(), &[]).await;
    assert_eq!(sorted(run.got), sorted(s.expected), "{}", run.done.log);
    assert!(run.done.log.contains("presumed dead"), "{}", run.done.log);
    assert_eq!(run.connections, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_ingested_binance_session_analyzes_like_its_trade_csv_and_its_recording() {
    let (Some(brokers), Some(dir)) = (common::brokers(), common::data_dir()) else {
        return;
    };
    let s = session(&dir, 1);
    let out = std::env::temp_dir().join(format!("gostocks-ingest-{}", std::process::id()));
    std::fs::create_dir_all(&out).expect("temp dir");
    let record = out.join("session.raw");
    let whole = (s.frames.len(), 0, false);
    let record_arg = ["--record", record.to_str().expect("utf-8")];
    let run = ingest_binance(&brokers, &s, whole, s.expected.len(), &record_arg).await;
    // One symbol, so one partition: Kafka gives the ticks back in the order they were sent.
    let ingested = out.join("ingested.jsonl");
    let lines: Vec<String> = run
        .got
        .iter()
        .map(|t| serde_json::to_string(t).expect("json"))
        .collect();
    std::fs::write(&ingested, lines.join("\n") + "\n").expect("write");

    let analyze = |input: &Path, name: &str| analyze_to(&out, input, name);
    let from_csv = analyze(&s.csv, "csv");
    assert!(from_csv.0.lines().count() > 100, "a real amount of stats");
    same_lines(
        &analyze(&ingested, "kafka"),
        &from_csv,
        "ticks from Kafka vs the trade CSV",
    );
    // The recording is `<local ns> <frame>` lines, detected as binance-raw.
    let mut recorded = TickFile::open(&record, Format::Auto).expect("recording");
    assert_eq!(recorded.format(), Format::BinanceRaw);
    let recorded: Vec<Tick> = recorded
        .by_ref()
        .map(|r| r.expect("recorded frames decode"))
        .collect();
    assert_eq!(
        recorded, s.expected,
        "every trade frame recorded once, in order"
    );
    same_lines(
        &analyze(&record, "record"),
        &from_csv,
        "the recorded session vs the trade CSV",
    );
    let _ = std::fs::remove_dir_all(&out);
}

// ---------------------------------------------------------------------------------------------
// Finnhub: a scripted server (handshake token, subscribe per symbol, trades, pings, noise).

const FINNHUB_TOKEN: &str = "test-token-5f3a";

/// Frames of a Finnhub session and the ticks they must become (computed here, independently).
/// Noise frames sit at indexes 10 to 15, before any resend.
fn finnhub_script() -> (Vec<String>, Vec<Tick>) {
    let mut frames = Vec::new();
    let mut expected = Vec::new();
    let mut i = 0u64;
    while i < 400 {
        let mut data = Vec::new();
        for _ in 0..(1 + i % 4) {
            let symbol = if i.is_multiple_of(3) { "MSFT" } else { "AAPL" };
            let t = 1_700_000_000_000 + (i / 2) as i64 * 3;
            let price = format!("{}.{:03}", 180 + i % 7, (i * 37) % 1000);
            let volume = if i.is_multiple_of(4) {
                "0.3".to_owned()
            } else {
                (1 + i % 300).to_string()
            };
            let conditions: Vec<String> = if i.is_multiple_of(5) {
                Vec::new()
            } else {
                vec!["1".into(), "12".into()]
            };
            let c = if conditions.is_empty() {
                "null".to_owned()
            } else {
                serde_json::to_string(&conditions).expect("json")
            };
            // Prices and volumes are JSON numbers, as Finnhub sends them.
            let item = format!(r#"{{"c":{c},"p":{price},"s":"{symbol}","t":{t},"v":{volume}}}"#);
            // Every 50th trade happens twice: two identical real trades, both kept.
            let copies = if i.is_multiple_of(50) { 2 } else { 1 };
            for _ in 0..copies {
                let pos = data.len() as u64;
                data.push(item.clone());
                expected.push(
                    Tick::new(
                        symbol,
                        price.parse().expect("price"),
                        volume.parse().expect("volume"),
                        t * 1_000_000,
                        t as u64 * 1000 + pos,
                    )
                    .with_source("finnhub")
                    .with_conditions(conditions.clone()),
                );
            }
            i += 1;
        }
        frames.push(format!(r#"{{"data":[{}],"type":"trade"}}"#, data.join(",")));
    }
    let noise = [
        r#"{"type":"ping"}"#,
        r#"{"type":"news","data":[{"headline":"not a trade"}]}"#,
        "garbage{",
        r#"{"type":"trade","data":[{"s":"AAPL","p":"abc","t":1700000000000,"v":1}]}"#,
        r#"{"type":"trade","data":[{"s":"AAPL","p":1.5,"t":1700000000000,"v":0}]}"#,
        r#"{"type":"error","msg":"Subscribing to too many symbols"}"#,
    ];
    for (k, n) in noise.iter().enumerate() {
        frames.insert(10 + k, (*n).to_owned());
    }
    (frames, expected)
}

async fn finnhub_server(
    frames: Arc<Vec<String>>,
    cut: usize,
    resume: usize,
) -> ws_server::WsServer {
    ws_server::spawn(
        |path| path.contains(&format!("token={FINNHUB_TOKEN}")),
        move |mut conn: Conn| {
            let frames = Arc::clone(&frames);
            async move {
                // One subscribe per symbol before anything is sent.
                for _ in 0..2 {
                    if conn.recv().await.is_none() {
                        return;
                    }
                }
                if conn.index == 0 {
                    conn.send_all(&frames[..cut]).await;
                    conn.cut().await;
                } else {
                    conn.send_all(&frames[resume..]).await;
                    conn.hold().await;
                }
            }
        },
    )
    .await
}

fn valid_distinct(ticks: Vec<Tick>) -> Vec<Tick> {
    let mut ticks: Vec<Tick> = ticks.into_iter().filter(|t| t.validate().is_ok()).collect();
    ticks = sorted(ticks);
    ticks.dedup();
    ticks
}

/// Ingests `(provider, symbols, url)` with `--record` into a fresh topic: every one of `expected`
/// comes out of Kafka once, and the recording, read back with `format` detected, holds them all.
async fn ingest_recorded(
    brokers: &str,
    (provider, symbols, url): (&str, &str, &str),
    env: &[(&str, &str)],
    expected: &[Tick],
    format: Format,
) -> Finished {
    let topic = topic(brokers, &format!("ingest_{provider}")).await;
    let record =
        std::env::temp_dir().join(format!("gostocks-{provider}-{}.raw", std::process::id()));
    let record_arg = ["--record", record.to_str().expect("utf-8")];
    let ingest = Ingest::start(provider, symbols, url, &topic, brokers, &record_arg, env);
    let got = read_ticks(brokers, &topic, expected.len()).await;
    let done = ingest.stop().await;
    assert_eq!(
        sorted(got),
        sorted(expected.to_vec()),
        "exact decimals, times, seq\n{}",
        done.log
    );
    // The recording replays to the same ticks through the file reader's copy of the decoder.
    let mut file = TickFile::open(&record, Format::Auto).expect("recording");
    assert_eq!(file.format(), format);
    let replayed: Vec<Tick> = file.by_ref().filter_map(Result::ok).collect();
    assert_eq!(valid_distinct(replayed), sorted(expected.to_vec()));
    let _ = std::fs::remove_file(record);
    done
}

#[tokio::test(flavor = "multi_thread")]
async fn finnhub_trades_exact_once_resubscribed_after_a_drop_noise_counted_and_recorded() {
    let Some(brokers) = common::brokers() else {
        return;
    };
    let (frames, expected) = finnhub_script();
    let frames = Arc::new(frames);
    let cut = frames.len() * 2 / 3;
    let resume = cut - 20;
    let resent: usize = frames[resume..cut]
        .iter()
        .map(|f| f.matches(r#""s":"#).count())
        .sum();
    let server = finnhub_server(Arc::clone(&frames), cut, resume).await;
    let args = ("finnhub", "AAPL,MSFT", server.url.as_str());
    let env = [("FINNHUB_TOKEN", FINNHUB_TOKEN)];
    let done = ingest_recorded(&brokers, args, &env, &expected, Format::FinnhubRaw).await;
    assert_eq!(done.count("duplicates"), resent as u64, "{}", done.log);
    assert_eq!(done.count("parse_errors"), 2, "garbage frame and bad price");
    assert_eq!(done.count("invalid"), 1, "the zero volume");
    assert!(done.count("ignored") >= 2, "ping and news");
    assert!(
        done.log.contains("Subscribing to too many symbols"),
        "{}",
        done.log
    );
    let subscribes: Vec<(usize, String)> = server.seen.received();
    assert_eq!(
        subscribes,
        [0, 0, 1, 1]
            .iter()
            .zip(["AAPL", "MSFT", "AAPL", "MSFT"])
            .map(|(&c, s)| { (c, format!(r#"{{"symbol":"{s}","type":"subscribe"}}"#)) })
            .collect::<Vec<_>>(),
        "subscribed again after the reconnect"
    );
    assert!(
        !done.log.contains(FINNHUB_TOKEN),
        "the token is never logged:\n{}",
        done.log
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn finnhub_bad_or_missing_token_stops_with_a_clear_message() {
    let Some(brokers) = common::brokers() else {
        return;
    };
    let server = finnhub_server(Arc::new(Vec::new()), 0, 0).await;
    let unused = common::unique_topic("ingest_unused");
    let ingest = Ingest::start(
        "finnhub",
        "AAPL",
        &server.url,
        &unused,
        &brokers,
        &[],
        &[("FINNHUB_TOKEN", "wrong-token-77")],
    );
    let done = ingest.exit(Duration::from_secs(20)).await;
    assert!(!done.status.success());
    assert!(done.log.contains("check the credentials"), "{}", done.log);
    assert!(!done.log.contains("wrong-token-77"), "{}", done.log);
    assert_eq!(
        server
            .seen
            .refused
            .load(std::sync::atomic::Ordering::SeqCst),
        1,
        "no retry"
    );

    let ingest = Ingest::start("finnhub", "AAPL", &server.url, &unused, &brokers, &[], &[]);
    let done = ingest.exit(Duration::from_secs(20)).await;
    assert!(!done.status.success());
    assert!(done.log.contains("set FINNHUB_TOKEN"), "{}", done.log);
}

// ---------------------------------------------------------------------------------------------
// Alpaca: a scripted server (greeting, auth, subscribe, trades in arrays, error frames).

const ALPACA_KEY: &str = "PKTESTKEY";
const ALPACA_SECRET: &str = "alpaca-secret-9d1c";

fn alpaca_script() -> (Vec<String>, Vec<Tick>) {
    // 2024-06-03T13:30:00Z
    let base_s = 1_717_421_400i64;
    let (mut frames, mut expected) = (Vec::new(), Vec::new());
    let mut k = 0u64;
    while k < 300 {
        let mut msgs = Vec::new();
        for _ in 0..(1 + k % 3) {
            let symbol = if k.is_multiple_of(2) { "AAPL" } else { "MSFT" };
            let nanos = k as i64 * 1_234_567 + 89;
            let id = 52_983_525_000_000 + k * 7;
            let price = format!("{}.{:02}", 170 + k % 9, (k * 13) % 100);
            let size = 1 + k % 250;
            msgs.push(format!(
                r#"{{"T":"t","S":"{symbol}","i":{id},"x":"{}","p":{price},"s":{size},"c":["@","I"],"t":"2024-06-03T13:30:{:02}.{:09}Z","z":"C"}}"#,
                ["V", "Q", "N"][(k % 3) as usize],
                nanos / 1_000_000_000,
                nanos % 1_000_000_000
            ));
            expected.push(
                Tick::new(
                    symbol,
                    price.parse().expect("price"),
                    size.to_string().parse().expect("size"),
                    base_s * 1_000_000_000 + nanos,
                    id,
                )
                .with_source("alpaca")
                .with_trade_id(Some(id))
                .with_conditions(vec!["@".into(), "I".into()]),
            );
            k += 1;
        }
        if k.is_multiple_of(4) {
            msgs.push(r#"{"T":"q","S":"AAPL","bp":170.1,"ap":170.2}"#.into());
        }
        frames.push(format!("[{}]", msgs.join(",")));
    }
    (frames, expected)
}

#[derive(Clone, Copy)]
enum AlpacaMode {
    /// Cut the first connection and resend an overlap on the next.
    Drop { cut: usize, resume: usize },
    /// Refuse the first connection with 406, serve the second.
    ConnectionLimitFirst,
}

async fn alpaca_server(frames: Arc<Vec<String>>, mode: AlpacaMode) -> ws_server::WsServer {
    ws_server::spawn(
        |_| true,
        move |mut conn: Conn| {
            let frames = Arc::clone(&frames);
            async move {
                conn.send(r#"[{"T":"success","msg":"connected"}]"#).await;
                let Some(auth) = conn.recv().await else {
                    return;
                };
                let auth: serde_json::Value = serde_json::from_str(&auth).expect("auth json");
                if auth["action"] != "auth"
                    || auth["key"] != ALPACA_KEY
                    || auth["secret"] != ALPACA_SECRET
                {
                    conn.send(r#"[{"T":"error","code":402,"msg":"auth failed"}]"#)
                        .await;
                    let _ = conn.ws.close(None).await;
                    return;
                }
                conn.send(r#"[{"T":"success","msg":"authenticated"}]"#)
                    .await;
                let Some(sub) = conn.recv().await else { return };
                let sub: serde_json::Value = serde_json::from_str(&sub).expect("subscribe json");
                let symbols = sub["trades"].as_array().cloned().unwrap_or_default();
                if symbols.len() > 2 {
                    conn.send(r#"[{"T":"error","code":405,"msg":"symbol limit exceeded"}]"#)
                        .await;
                    conn.hold().await;
                    return;
                }
                conn.send(format!(
                    r#"[{{"T":"subscription","trades":{},"quotes":[],"bars":[]}}]"#,
                    serde_json::Value::Array(symbols)
                ))
                .await;
                match (mode, conn.index) {
                    (AlpacaMode::Drop { cut, .. }, 0) => {
                        conn.send_all(&frames[..cut]).await;
                        conn.cut().await;
                    }
                    (AlpacaMode::Drop { resume, .. }, _) => {
                        conn.send_all(&frames[resume..]).await;
                        conn.hold().await;
                    }
                    (AlpacaMode::ConnectionLimitFirst, 0) => {
                        conn.send(
                            r#"[{"T":"error","code":406,"msg":"connection limit exceeded"}]"#,
                        )
                        .await;
                        conn.hold().await;
                    }
                    (AlpacaMode::ConnectionLimitFirst, _) => {
                        conn.send_all(frames.iter()).await;
                        conn.hold().await;
                    }
                }
            }
        },
    )
    .await
}

const ALPACA_ENV: [(&str, &str); 2] = [
    ("APCA_API_KEY_ID", ALPACA_KEY),
    ("APCA_API_SECRET_KEY", ALPACA_SECRET),
];

#[tokio::test(flavor = "multi_thread")]
async fn alpaca_trades_exact_once_reauthenticated_after_a_drop_and_recorded() {
    let Some(brokers) = common::brokers() else {
        return;
    };
    let (frames, expected) = alpaca_script();
    let frames = Arc::new(frames);
    let cut = frames.len() / 2;
    let resume = cut - 10;
    let resent: usize = frames[resume..cut]
        .iter()
        .map(|f| f.matches(r#""T":"t""#).count())
        .sum();
    let server = alpaca_server(Arc::clone(&frames), AlpacaMode::Drop { cut, resume }).await;
    let args = ("alpaca", "AAPL,MSFT", server.url.as_str());
    let done = ingest_recorded(&brokers, args, &ALPACA_ENV, &expected, Format::AlpacaRaw).await;
    assert_eq!(done.count("duplicates"), resent as u64, "{}", done.log);
    assert_eq!(done.count("parse_errors"), 0);
    assert!(done.count("ignored") > 0, "quotes are passed over");
    let actions: Vec<(usize, String)> = server
        .seen
        .received()
        .into_iter()
        .map(|(c, f)| {
            let v: serde_json::Value = serde_json::from_str(&f).expect("json");
            (c, v["action"].as_str().unwrap_or_default().to_owned())
        })
        .collect();
    assert_eq!(
        actions,
        [(0, "auth"), (0, "subscribe"), (1, "auth"), (1, "subscribe")]
            .map(|(c, a)| (c, a.to_owned()))
    );
    assert!(done.log.contains("subscribed"), "{}", done.log);
    assert!(!done.log.contains(ALPACA_SECRET), "{}", done.log);
}

#[tokio::test(flavor = "multi_thread")]
async fn alpaca_bad_keys_and_symbol_limit_stop_with_what_to_do() {
    let Some(brokers) = common::brokers() else {
        return;
    };
    let unused = common::unique_topic("ingest_unused");
    let server = alpaca_server(Arc::new(Vec::new()), AlpacaMode::Drop { cut: 0, resume: 0 }).await;
    let ingest = Ingest::start(
        "alpaca",
        "AAPL",
        &server.url,
        &unused,
        &brokers,
        &[],
        &[
            ("APCA_API_KEY_ID", ALPACA_KEY),
            ("APCA_API_SECRET_KEY", "wrong-secret-31"),
        ],
    );
    let done = ingest.exit(Duration::from_secs(20)).await;
    assert!(!done.status.success());
    assert!(
        done.log.contains("402") && done.log.contains("APCA_API_KEY_ID"),
        "{}",
        done.log
    );
    assert!(!done.log.contains("wrong-secret-31"), "{}", done.log);
    assert_eq!(
        server.seen.connections(),
        1,
        "retrying cannot help: no reconnect"
    );

    let server = alpaca_server(Arc::new(Vec::new()), AlpacaMode::Drop { cut: 0, resume: 0 }).await;
    let ingest = Ingest::start(
        "alpaca",
        "AAPL,MSFT,TSLA",
        &server.url,
        &unused,
        &brokers,
        &[],
        &ALPACA_ENV,
    );
    let done = ingest.exit(Duration::from_secs(20)).await;
    assert!(!done.status.success());
    assert!(
        done.log.contains("405") && done.log.contains("fewer"),
        "{}",
        done.log
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn alpaca_connection_limit_is_retried_until_the_old_connection_is_gone() {
    let Some(brokers) = common::brokers() else {
        return;
    };
    let (frames, expected) = alpaca_script();
    let server = alpaca_server(Arc::new(frames), AlpacaMode::ConnectionLimitFirst).await;
    let topic = topic(&brokers, "ingest_alpaca406").await;
    let ingest = Ingest::start(
        "alpaca",
        "AAPL,MSFT",
        &server.url,
        &topic,
        &brokers,
        &[],
        &ALPACA_ENV,
    );
    let got = read_ticks(&brokers, &topic, expected.len()).await;
    let done = ingest.stop().await;
    assert_eq!(sorted(got), sorted(expected), "{}", done.log);
    assert!(done.log.contains("406"), "{}", done.log);
    assert_eq!(server.seen.connections(), 2);
}

// ---------------------------------------------------------------------------------------------
// Kafka briefly unreachable: ticks wait in the bounded buffer.

/// A port nothing listens on (yet).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// Forwards `127.0.0.1:port` to the broker: Kafka "coming back" at the address ingest was given.
async fn proxy(port: u16, broker: String) {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("proxy bind");
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let broker = broker.clone();
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(&broker).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
}

/// Ingests a whole session while nothing answers at the Kafka address; returns once every trade
/// is in the buffer.
async fn ingest_without_kafka(s: &Session, topic: &str, port: u16, extra: &[&str]) -> Ingest {
    let server = binance_server(Arc::clone(&s.frames), s.frames.len(), 0, false).await;
    let brokers = format!("127.0.0.1:{port}");
    let ingest = Ingest::start(
        "binance",
        s.symbol,
        &server.url,
        topic,
        &brokers,
        extra,
        &[],
    );
    let all_in = format!("ticks={} ", s.expected.len());
    ingest.wait_log(&all_in, Duration::from_secs(60)).await;
    ingest
}

#[tokio::test(flavor = "multi_thread")]
async fn kafka_unreachable_at_first_ticks_wait_in_the_buffer_and_arrive_once() {
    let (Some(brokers), Some(dir)) = (common::brokers(), common::data_dir()) else {
        return;
    };
    let s = session(&dir, 5);
    let topic = topic(&brokers, "ingest_outage").await;
    let port = free_port();
    let ingest = ingest_without_kafka(&s, &topic, port, &[]).await;
    ingest
        .wait_log("kafka unreachable", Duration::from_secs(30))
        .await;
    proxy(
        port,
        brokers.split(',').next().expect("a broker").to_owned(),
    )
    .await;
    let got = read_ticks(&brokers, &topic, s.expected.len()).await;
    let done = ingest.stop().await;
    assert_eq!(sorted(got), sorted(s.expected), "{}", done.log);
    assert_eq!(done.count("overflow"), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_buffer_drops_the_oldest_ticks_counted_and_logged() {
    let (Some(_), Some(dir)) = (common::brokers(), common::data_dir()) else {
        return;
    };
    let s = session(&dir, 5);
    let small = ["--buffer", "100", "--drain-timeout", "1s"];
    let done = ingest_without_kafka(&s, "unused", free_port(), &small)
        .await
        .stop()
        .await;
    let dropped = s.expected.len() as u64 - 100;
    assert_eq!(done.count("overflow"), dropped, "{}", done.log);
    assert_eq!(done.count("undelivered"), 100);
    assert!(done.log.contains("tick buffer full"), "{}", done.log);
    assert!(!done.status.success(), "undelivered ticks are an error");
    assert!(
        done.log.contains("did not take the 100 buffered ticks"),
        "{}",
        done.log
    );
}

/// Regression: tokio-tungstenite enables rustls without a crypto provider, and the first wss://
/// connection panicked. Against a server that does not speak TLS it must be a logged, retried
/// connection error instead.
#[tokio::test(flavor = "multi_thread")]
async fn wss_without_a_crypto_provider_panicked() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut hello = [0u8; 512];
            let _ = socket.read(&mut hello).await;
            let _ = socket.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
        }
    });
    let url = format!("wss://{addr}");
    let no_kafka = format!("127.0.0.1:{}", free_port());
    let ingest = Ingest::start(
        "binance",
        "BTCUSDT",
        &url,
        "unused",
        &no_kafka,
        &["--drain-timeout", "1s"],
        &[],
    );
    ingest
        .wait_log("reconnecting", Duration::from_secs(20))
        .await;
    let done = ingest.stop().await;
    assert!(!done.log.contains("panicked"), "{}", done.log);
    assert!(done.log.contains("cannot connect"), "{}", done.log);
}

// ---------------------------------------------------------------------------------------------
// Binance: gaps filled over the REST API.

const BINANCE_KEY: &str = "test-binance-key-9c1e";

/// How the local REST server misbehaves before it answers.
#[derive(Clone, Copy)]
struct RestTrouble {
    /// Requests answered 429 with `Retry-After: 1` first.
    rate_limited: usize,
    /// Then requests answered 503.
    unavailable: usize,
}

/// A local Binance REST server: `GET /api/v3/historicalTrades?symbol=&fromId=&limit=` answers
/// from the session's trade CSV as Binance does (up to `limit` trades from `fromId`, at most
/// 1000; the API key in `X-MBX-APIKEY` required). Returns its endpoint and its request count.
async fn binance_rest(
    csv: &Path,
    trouble: RestTrouble,
) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use warp::Filter;
    let text = std::fs::read_to_string(csv).expect("trade csv");
    // local_recv_ts,event_time_ms,trade_time_ms,symbol,trade_id,price,qty,is_buyer_maker
    let trades: Arc<Vec<(String, u64, serde_json::Value)>> = Arc::new(
        text.lines()
            .skip(1)
            .map(|line| {
                let f: Vec<&str> = line.split(',').collect();
                let id: u64 = f[4].parse().expect("trade id");
                let json = serde_json::json!({
                    "id": id,
                    "price": f[5],
                    "qty": f[6],
                    "quoteQty": "0",
                    "time": f[2].parse::<u64>().expect("trade time"),
                    "isBuyerMaker": f[7] == "true",
                    "isBestMatch": true,
                });
                (f[3].to_owned(), id, json)
            })
            .collect(),
    );
    let requests = Arc::new(AtomicUsize::new(0));
    let route = warp::path!("api" / "v3" / "historicalTrades")
        .and(warp::get())
        .and(warp::header::optional::<String>("x-mbx-apikey"))
        .and(warp::query::<std::collections::HashMap<String, String>>())
        .map({
            let requests = Arc::clone(&requests);
            move |key: Option<String>, q: std::collections::HashMap<String, String>| {
                let n = requests.fetch_add(1, Ordering::SeqCst);
                let reply = |status: u16, body: serde_json::Value| {
                    warp::http::Response::builder()
                        .status(status)
                        .header("content-type", "application/json")
                        .header("retry-after", "1")
                        .body(body.to_string())
                        .expect("response")
                };
                if key.as_deref() != Some(BINANCE_KEY) {
                    return reply(401, serde_json::json!({"code": -2014, "msg": "API-key format invalid."}));
                }
                if n < trouble.rate_limited {
                    return reply(429, serde_json::json!({"code": -1003, "msg": "Too many requests."}));
                }
                if n < trouble.rate_limited + trouble.unavailable {
                    return reply(503, serde_json::json!({"code": -1008, "msg": "Server is currently overloaded."}));
                }
                let symbol = q.get("symbol").cloned().unwrap_or_default();
                let from: u64 = q.get("fromId").and_then(|v| v.parse().ok()).unwrap_or(0);
                let limit: usize = q.get("limit").and_then(|v| v.parse().ok()).unwrap_or(500);
                if limit > 1000 {
                    return reply(400, serde_json::json!({"code": -1100, "msg": "limit over 1000"}));
                }
                let page: Vec<&serde_json::Value> = trades
                    .iter()
                    .filter(|(s, id, _)| *s == symbol && *id >= from)
                    .take(limit)
                    .map(|(_, _, j)| j)
                    .collect();
                reply(200, serde_json::json!(page))
            }
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(warp::serve(route).incoming(listener).run());
    (format!("http://{addr}/api/v3/historicalTrades"), requests)
}

/// A session's frames with the second connection resuming `withheld` trades after the cut:
/// `(cut, resume)`.
fn withholding(s: &Session, withheld: usize) -> (usize, usize) {
    let cut = s.frames.len() / 3;
    let mut resume = cut;
    while trade_frames(&s.frames[cut..resume]) < withheld {
        resume += 1;
    }
    (cut, resume)
}

/// Analyzes `input` into `out/<name>.stats` and `.bars`, and returns both.
fn analyze_to(out: &Path, input: &Path, name: &str) -> (String, String) {
    let (stats, bars) = (
        out.join(format!("{name}.stats")),
        out.join(format!("{name}.bars")),
    );
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_gostocks"))
        .args(["--log", "warn", "analyze", "--input"])
        .arg(input)
        .arg("--stats-out")
        .arg(&stats)
        .arg("--bars-out")
        .arg(&bars)
        .stdout(Stdio::null())
        .status()
        .expect("analyze runs");
    assert!(status.success(), "analyze {name}");
    (
        std::fs::read_to_string(stats).expect("stats"),
        std::fs::read_to_string(bars).expect("bars"),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_binance_gap_is_backfilled_over_rest_so_kafka_holds_every_trade_id_once_in_order() {
    let (Some(brokers), Some(dir)) = (common::brokers(), common::data_dir()) else {
        return;
    };
    let s = session(&dir, 1);
    let (cut, resume) = withholding(&s, 2000);
    let (url, requests) = binance_rest(
        &s.csv,
        RestTrouble {
            rate_limited: 0,
            unavailable: 0,
        },
    )
    .await;
    let server = binance_server(Arc::clone(&s.frames), cut, resume, false).await;
    let topic = topic(&brokers, "ingest_backfill").await;
    let ingest = Ingest::start(
        "binance",
        s.symbol,
        &server.url,
        &topic,
        &brokers,
        &["--backfill-url", &url],
        &[("BINANCE_API_KEY", BINANCE_KEY)],
    );
    let got = read_ticks(&brokers, &topic, s.expected.len()).await;
    let done = ingest.stop().await;
    assert!(done.status.success(), "{}", done.log);
    // One symbol, one partition: Kafka's order is the order delivered. Every id once, in order,
    // and each tick exactly the trade CSV's (price, size, time, side, id).
    let ids: Vec<u64> = got.iter().map(|t| t.trade_id.expect("id")).collect();
    assert!(
        ids.windows(2).all(|w| w[1] == w[0] + 1),
        "no gap and no duplicate in Kafka\n{}",
        done.log
    );
    assert_eq!(got, s.expected, "{}", done.log);
    assert_eq!(done.count("gap_ids"), 2000, "{}", done.log);
    assert_eq!(done.count("backfilled"), 2000, "{}", done.log);
    assert_eq!(done.count("unfilled"), 0, "{}", done.log);
    assert_eq!(
        requests.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "two pages of 1000"
    );
    let line = done
        .log
        .lines()
        .find(|l| l.contains("gap in trade ids filled"))
        .expect("the fill is logged");
    eprintln!("backfill of a 2,000-trade gap from the local REST server: {line}");

    // analyze of the ingested topic is byte-identical to analyze of the CSV.
    let out = std::env::temp_dir().join(format!("gostocks-backfill-{}", std::process::id()));
    std::fs::create_dir_all(&out).expect("temp dir");
    let ingested = out.join("ingested.jsonl");
    let lines: Vec<String> = got
        .iter()
        .map(|t| serde_json::to_string(t).expect("json"))
        .collect();
    std::fs::write(&ingested, lines.join("\n") + "\n").expect("write");
    same_lines(
        &analyze_to(&out, &ingested, "kafka"),
        &analyze_to(&out, &s.csv, "csv"),
        "the backfilled topic vs the trade CSV",
    );
    let _ = std::fs::remove_dir_all(&out);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_binance_gap_without_a_key_is_reported_by_range_and_rate_limits_are_waited_out() {
    let (Some(brokers), Some(dir)) = (common::brokers(), common::data_dir()) else {
        return;
    };
    let s = session(&dir, 0);
    let (cut, resume) = withholding(&s, 300);
    let first_missing = s.expected[trade_frames(&s.frames[..cut])]
        .trade_id
        .expect("id");
    let trouble = RestTrouble {
        rate_limited: 1,
        unavailable: 2,
    };
    // Without BINANCE_API_KEY: reported with its range, the rest delivered.
    let (url, requests) = binance_rest(&s.csv, trouble).await;
    let run = ingest_binance(
        &brokers,
        &s,
        (cut, resume, false),
        s.expected.len() - 300,
        &["--backfill-url", &url],
    )
    .await;
    let log = &run.done.log;
    assert_eq!(run.done.count("unfilled"), 300, "{log}");
    assert_eq!(run.done.count("backfilled"), 0, "{log}");
    assert!(
        log.contains(&format!(
            "unfilled_ranges=BTCUSDT:{first_missing}-{}",
            first_missing + 299
        )),
        "{log}"
    );
    assert!(log.contains("set BINANCE_API_KEY"), "{log}");
    assert_eq!(requests.load(std::sync::atomic::Ordering::SeqCst), 0);

    // With the key, through a 429 (Retry-After: 1) and two 503s: filled.
    let (url, requests) = binance_rest(&s.csv, trouble).await;
    let server = binance_server(Arc::clone(&s.frames), cut, resume, false).await;
    let topic = topic(&brokers, "ingest_backfill").await;
    let ingest = Ingest::start(
        "binance",
        s.symbol,
        &server.url,
        &topic,
        &brokers,
        &["--backfill-url", &url],
        &[("BINANCE_API_KEY", BINANCE_KEY)],
    );
    let got = read_ticks(&brokers, &topic, s.expected.len()).await;
    let done = ingest.stop().await;
    assert_eq!(got, s.expected, "{}", done.log);
    assert_eq!(done.count("backfilled"), 300, "{}", done.log);
    assert_eq!(done.count("unfilled"), 0, "{}", done.log);
    assert_eq!(requests.load(std::sync::atomic::Ordering::SeqCst), 4);
    assert!(done.log.contains("rate limited"), "{}", done.log);
    assert!(!done.log.contains(BINANCE_KEY), "the key is never logged");
}

/// With `--quotes-topic`, the bookTicker frames of a real futures session become quotes on
/// their own topic, each once and in order, equal to the session file's (futures frames carry
/// their time), while every trade still arrives.
#[tokio::test(flavor = "multi_thread")]
async fn binance_book_tickers_go_to_the_quotes_topic_each_once_beside_every_trade() {
    let (Some(brokers), Some(dir)) = (common::brokers(), common::data_dir()) else {
        return;
    };
    let s = session(&dir, 5);
    let want: Vec<gostocks_core::quotes::Quote> = gostocks_connectors::file::QuoteFile::open(
        dir.join("crypto/raw_hftbacktest").join(s.name),
        1 << 20,
    )
    .expect("opens")
    .expect("a session with quotes")
    .map(|q| q.expect("the recorded quotes decode"))
    .collect();
    assert!(want.len() > 5_000, "{}", want.len());
    let quotes = topic(&brokers, "ingest_quotes").await;
    let all = s.frames.len();
    let addr = format!("127.0.0.1:{}", free_port());
    let run = ingest_binance(
        &brokers,
        &s,
        (all, all, false),
        s.expected.len(),
        &["--quotes-topic", &quotes, "--metrics-addr", &addr],
    )
    .await;
    // /metrics counts them (scraped once every trade had arrived).
    let m = run.metrics.as_ref().expect("scraped");
    let get = |name: &str| {
        m.samples
            .iter()
            .find(|x| x.metric == name)
            .map(|x| match &x.value {
                prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => *v,
                _ => f64::NAN,
            })
    };
    assert!(get("gostocks_ingest_quotes_total").is_some_and(|n| n > 0.0));
    assert_eq!(get("gostocks_ingest_quote_overflow_total"), Some(0.0));
    assert!(get("gostocks_ingest_quotes_delivered_total").is_some());
    assert_eq!(sorted(run.got), sorted(s.expected.clone()), "every trade");
    assert_eq!(run.done.count("overflow"), 0);
    let line = run
        .done
        .log
        .lines()
        .find(|l| l.starts_with("ingest quotes:"))
        .unwrap_or_else(|| panic!("no quotes line in:\n{}", run.done.log));
    assert_eq!(
        line,
        format!(
            "ingest quotes: quotes={n} quotes_delivered={n} quote_overflow=0 quote_errors=0",
            n = want.len()
        )
    );

    let got: Vec<gostocks_core::quotes::Quote> =
        common::read_records(&brokers, &quotes, want.len())
            .await
            .into_iter()
            .map(|(key, payload)| {
                let quote =
                    gostocks_connectors::kafka::decode_quote(&payload, TickEncoding::Protobuf)
                        .expect("a protobuf quote");
                assert_eq!(
                    key.as_deref(),
                    Some(quote.symbol.as_str().as_bytes()),
                    "keyed by symbol"
                );
                quote
            })
            .collect();
    // One symbol: one partition, in the order received; nothing more (read_records checks).
    assert!(got == want, "the session's quotes, each once, in order");
}

#[test]
fn quotes_topic_needs_binance() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gostocks"))
        .args(["ingest", "--provider", "finnhub", "--symbols", "AAPL"])
        .args(["--quotes-topic", "quotes"])
        .env("FINNHUB_TOKEN", "x")
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--provider binance"), "{stderr}");
}

/// Alpaca quotes with `--quotes-topic`: subscribed beside the trades, valid ones on their own
/// topic each once across a dropped connection, bad ones counted as parse errors naming the
/// field, and the recording replays to the same quotes, `seq` included.
#[tokio::test(flavor = "multi_thread")]
async fn alpaca_quotes_go_to_the_quotes_topic_and_the_recording_replays_to_them() {
    let Some(brokers) = common::brokers() else {
        return;
    };
    let (mut frames, expected) = alpaca_script();
    // The script's quotes lack sizes and times: rejections. Valid ones join every fifth frame.
    let bad: usize = frames
        .iter()
        .map(|f| f.matches(r#"{"T":"q","S":"AAPL","bp""#).count())
        .sum();
    let mut want = Vec::new();
    for (k, f) in frames.iter_mut().enumerate().filter(|(k, _)| k % 5 == 0) {
        let (bid, ask) = (
            format!("400.{:02}", k % 50),
            format!("400.{:02}", k % 50 + 2),
        );
        let q = format!(
            r#"{{"T":"q","S":"MSFT","bx":"V","bp":{bid},"bs":3,"ax":"Q","ap":{ask},"as":2,"t":"2024-06-03T13:31:{:02}.{:09}Z","c":["R"],"z":"C"}}"#,
            k / 10,
            k * 1_000_003
        );
        f.insert_str(f.len() - 1, &format!(",{q}"));
        want.push((
            bid,
            ask,
            1_717_421_460_000_000_000 + (k / 10) as u64 * 1_000_000_000 + (k * 1_000_003) as u64,
        ));
    }
    let frames = Arc::new(frames);
    let all = frames.len();
    let server = alpaca_server(
        Arc::clone(&frames),
        AlpacaMode::Drop {
            cut: all,
            resume: all,
        },
    )
    .await;
    let (ticks, quotes) = (
        topic(&brokers, "ingest_alpaca_ticks").await,
        common::unique_topic("ingest_alpaca_quotes"),
    );
    let record =
        std::env::temp_dir().join(format!("gostocks-alpaca-quotes-{}.raw", std::process::id()));
    let extra = [
        "--record",
        record.to_str().expect("utf-8"),
        "--quotes-topic",
        &quotes,
    ];
    let ingest = Ingest::start(
        "alpaca",
        "AAPL,MSFT",
        &server.url,
        &ticks,
        &brokers,
        &extra,
        &ALPACA_ENV,
    );
    let got_ticks = read_ticks(&brokers, &ticks, expected.len()).await;
    let done = ingest.stop().await;
    assert!(done.status.success(), "{}", done.log);
    assert_eq!(sorted(got_ticks), sorted(expected), "every trade");
    assert_eq!(done.count("parse_errors"), bad as u64, "{}", done.log);
    assert!(
        done.log.contains(&format!(
            "ingest quotes: quotes={n} quotes_delivered={n} quote_overflow=0",
            n = want.len()
        )),
        "{}",
        done.log
    );
    let subscribe = server
        .seen
        .received()
        .into_iter()
        .map(|(_, f)| serde_json::from_str::<serde_json::Value>(&f).expect("json"))
        .find(|v| v["action"] == "subscribe")
        .expect("a subscribe");
    assert_eq!(subscribe["quotes"], serde_json::json!(["AAPL", "MSFT"]));

    let got: Vec<gostocks_core::quotes::Quote> =
        common::read_records(&brokers, &quotes, want.len())
            .await
            .into_iter()
            .map(|(_, payload)| {
                gostocks_connectors::kafka::decode_quote(&payload, TickEncoding::Protobuf)
                    .expect("a protobuf quote")
            })
            .collect();
    let seen: Vec<(String, String, u64)> = got
        .iter()
        .map(|q| (q.bid.to_string(), q.ask.to_string(), q.time_ns))
        .collect();
    let want: Vec<(String, String, u64)> = want
        .into_iter()
        .map(|(b, a, t)| {
            let norm = |s: String| {
                s.parse::<gostocks_core::Fixed>()
                    .expect("decimal")
                    .to_string()
            };
            (norm(b), norm(a), t)
        })
        .collect();
    assert_eq!(seen, want, "exact prices and ns times, in order");
    // The recording's quotes, read as analyze reads them: the same, seq included.
    let replayed: Vec<_> = gostocks_connectors::file::QuoteFile::open(&record, 1 << 20)
        .expect("recording")
        .expect("an Alpaca session")
        .filter_map(Result::ok)
        .collect();
    assert_eq!(replayed, got);
    let _ = std::fs::remove_file(record);
}
