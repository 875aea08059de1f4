//! `gostocks bench`: throughput and memory on a workload built from the real recorded tapes.
//!
//! The workload: every LOBSTER and Binance trade tape in the data folder, each replicated under
//! renamed symbols (`AAPL.0.3` is replica 3 of tape 0) until there are at least `--ticks` ticks,
//! merged in event-time order. Each measurement runs in a child process, so that its peak RSS
//! is its own.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::ValueEnum;
use gostocks_connectors::file::{Format, TickFile};
use gostocks_core::alerts::{AlertRule, Condition, Mode};
use gostocks_core::batch::{Outputs, run_batch_core};
use gostocks_core::operators::symbol_route;
use gostocks_core::stats::AnalyticsConfig;
use gostocks_core::{Fixed, Symbol, Trade};

use crate::cli::{BenchArgs, BenchPhase};

/// The tapes the workload is made of, relative to the data folder.
const TAPES: &[&str] = &[
    "lobster/AAPL_2012-06-21_34200000_57600000_message_1.csv",
    "lobster/GOOG_2012-06-21_34200000_57600000_message_1.csv",
    "crypto/trades/binance_spot_btcusdt_20230405.trades.csv",
    "crypto/trades/binance_spot_btcusdt_20240808.trades.csv",
    "crypto/trades/binance_spot_btcusdt_20240809.trades.csv",
    "crypto/trades/binance_spot_ethusdt_20240808.trades.csv",
    "crypto/trades/binance_spot_ethusdt_20240809.trades.csv",
    "crypto/trades/binance_usdm_btcusdt_20240718.trades.csv",
    "crypto/trades/binance_usdm_btcusdt_20240719.trades.csv",
    "crypto/trades/binance_usdm_btcusdt_20240808.trades.csv",
    "crypto/trades/binance_usdm_ethusdt_20240808.trades.csv",
];

/// The data folder: `--data-dir`, else `GOSTOCKS_DATA_DIR`, else `../shared/data`.
pub fn data_dir(flag: Option<&Path>) -> PathBuf {
    flag.map(Path::to_path_buf)
        .or_else(|| std::env::var_os("GOSTOCKS_DATA_DIR").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("../shared/data"))
}

/// The replicated workload in event-time order, and the number of symbols in it.
pub fn workload(dir: &Path, min_ticks: usize) -> anyhow::Result<(Vec<Trade>, usize)> {
    let mut tapes = Vec::new();
    for rel in TAPES {
        let path = dir.join(rel);
        let file = TickFile::open(&path, Format::Auto).with_context(|| {
            format!(
                "reading {}: set GOSTOCKS_DATA_DIR or --data-dir to the shared data folder",
                path.display()
            )
        })?;
        let trades: Vec<Trade> = file
            .filter_map(Result::ok)
            .filter_map(|t| t.validate().ok())
            .collect();
        tapes.push(trades);
    }
    let per_copy: usize = tapes.iter().map(Vec::len).sum();
    anyhow::ensure!(
        per_copy > 0,
        "the tapes in {} hold no trades",
        dir.display()
    );
    let copies = min_ticks.div_ceil(per_copy).max(1);
    let mut all = Vec::with_capacity(per_copy * copies);
    for (tape, trades) in tapes.iter().enumerate() {
        for copy in 0..copies {
            for t in trades {
                let name = format!("{}.{tape}.{copy}", t.symbol);
                let mut copied = *t;
                copied.symbol = Symbol::new(&name).context("symbol")?;
                all.push(copied);
            }
        }
    }
    all.sort_by_key(|t| (t.time_ns, t.symbol, t.seq));
    Ok((all, TAPES.len() * copies))
}

/// Runs `gostocks bench`.
pub fn bench(args: BenchArgs) -> anyhow::Result<()> {
    let dir = data_dir(args.data_dir.as_deref());
    if let Some(phase) = args.phase {
        return run_phase(phase, &args);
    }
    let (trades, symbols) = workload(&dir, args.ticks)?;
    println!(
        "workload: {} ticks, {} symbols (tapes in {} replicated)",
        trades.len(),
        symbols,
        dir.display()
    );
    println!("config: windows 60s 300s, resolution 1s, bars 1s 1m, ema span 20\n");

    let csv = args.workload_out.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("gostocks-bench-{}.csv", std::process::id()))
    });
    write_csv(&csv, &trades)?;
    let alert_files = AlertFiles::write(&trades, args.alerts, args.workload_out.as_deref())?;
    // The same workload twice over, the copy starting a day after the original ends: twice the
    // length at the same concurrency, to show that memory does not grow with the input's length.
    let twice =
        std::env::temp_dir().join(format!("gostocks-bench-twice-{}.csv", std::process::id()));
    let span = trades.last().map_or(0, |t| t.time_ns) - trades.first().map_or(0, |t| t.time_ns);
    let shift = span + 86_400_000_000_000;
    let later: Vec<Trade> = trades
        .iter()
        .map(|t| {
            let mut later = *t;
            later.time_ns += shift;
            later
        })
        .collect();
    let later_len = trades.len() as u64;
    let mut both = trades;
    both.extend(later);
    both.sort_by_key(|t| (t.time_ns, t.symbol, t.seq));
    write_csv(&twice, &both)?;
    drop(both);
    let n = later_len;

    println!(
        "| measurement | ticks | seconds (median of {}) | ticks/s | per worker | best run, per worker | peak RSS |",
        args.runs
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let me = std::env::current_exe()?;
    let out_dir = std::env::temp_dir().join(format!("gostocks-bench-out-{}", std::process::id()));
    std::fs::create_dir_all(&out_dir)?;
    let alerts_label = format!("(c) in memory, {} alerts, 1 worker", args.alerts);
    let every_label = format!(
        "(c) in memory, {} alerts of all {} trade conditions, 1 worker",
        args.alerts,
        Condition::ON_TRADES.len()
    );
    let once_label = format!("(d) analyze, {} once alerts, 1 worker", args.alerts);
    let guarded_label = format!(
        "(d) analyze, {} alerts half rearm, storm guard on, 1 worker",
        args.alerts
    );
    let unguarded_label = format!(
        "(d) analyze, {} alerts half rearm, storm guard off, 1 worker",
        args.alerts
    );
    // Alert events written by each (d) row's runs: (label, events, seconds of the median run).
    let mut event_rows: Vec<(String, u64, f64)> = Vec::new();
    // The rows each in-memory run produced: the same in every one of them.
    let mut rows: Option<(String, String)> = None;
    for (label, workers, input, what) in [
        (
            "(a) in memory, 1 worker",
            1,
            &csv,
            Measure::Phase(BenchPhase::Memory),
        ),
        (
            "(a) in memory, 2 workers",
            2,
            &csv,
            Measure::Phase(BenchPhase::Memory),
        ),
        (
            "(a) in memory, rows gathered in order, 1 worker",
            1,
            &csv,
            Measure::Phase(BenchPhase::Ordered),
        ),
        (
            "(a) in memory, rows gathered in order, 2 workers",
            2,
            &csv,
            Measure::Phase(BenchPhase::Ordered),
        ),
        (
            alerts_label.as_str(),
            1,
            &csv,
            Measure::Phase(BenchPhase::Alerts),
        ),
        (
            every_label.as_str(),
            1,
            &csv,
            Measure::Phase(BenchPhase::AlertsEvery),
        ),
        (
            "(b) analyze from CSV, 1 worker",
            1,
            &csv,
            Measure::Analyze(n),
        ),
        (
            "(b) analyze from CSV, 2 workers",
            2,
            &csv,
            Measure::Analyze(n),
        ),
        (
            "(b) analyze from CSV, a cluster of 2 processes x 1 worker",
            1,
            &csv,
            Measure::AnalyzeCluster(n, 2),
        ),
        (
            "(b) analyze, the workload twice over, 2 workers",
            2,
            &twice,
            Measure::Analyze(2 * n),
        ),
        (
            "(d) analyze, no alerts, events written, 1 worker",
            1,
            &csv,
            Measure::AnalyzeAlerts(n, None),
        ),
        (
            once_label.as_str(),
            1,
            &csv,
            Measure::AnalyzeAlerts(n, Some(&alert_files.once)),
        ),
        (
            guarded_label.as_str(),
            1,
            &csv,
            Measure::AnalyzeAlerts(n, Some(&alert_files.guarded)),
        ),
        (
            unguarded_label.as_str(),
            1,
            &csv,
            Measure::AnalyzeAlerts(n, Some(&alert_files.unguarded)),
        ),
    ] {
        let (mut runs, mut peak, mut ticks) = (Vec::new(), 0, 0);
        for _ in 0..args.runs {
            let (t, secs, rss) =
                measure_once(&me, &args, what, workers, input, &out_dir, &mut rows)
                    .with_context(|| label.to_string())?;
            runs.push(secs);
            peak = peak.max(rss);
            ticks = t;
        }
        runs.sort_by(f64::total_cmp);
        let (median, best) = (runs[runs.len() / 2], runs[0]);
        if let Measure::AnalyzeAlerts(..) = what {
            event_rows.push((
                label.to_string(),
                count_lines(&out_dir.join("events.jsonl"))?,
                median,
            ));
        }
        let rate = |secs: f64| ticks as f64 / secs / 1e6;
        println!(
            "| {label} | {ticks} | {median:.2} | {:.2} M | {:.2} M | {:.2} M | {} MB |",
            rate(median),
            rate(median) / workers as f64,
            rate(best) / workers as f64,
            peak / 1024
        );
    }
    // (c) against (a) at 1 worker, each (c) between two runs of (a), one right after the
    // other: the rows above are measured minutes apart, and a host whose speed drifts moves
    // their ratio; (c) against the mean of the (a) before and after it cancels a steady drift.
    // The (a) after one (c) is the (a) before the next.
    let mut ratios = Vec::new();
    let mut once = |phase| {
        measure_once(
            &me,
            &args,
            Measure::Phase(phase),
            1,
            &csv,
            &out_dir,
            &mut rows,
        )
        .map(|(_, secs, _)| secs)
    };
    if args.runs > 0 {
        let mut before = once(BenchPhase::Memory).context("(a) before a (c)")?;
        for _ in 0..args.runs {
            let c = once(BenchPhase::Alerts).context("(c) between two (a)")?;
            let after = once(BenchPhase::Memory).context("(a) after a (c)")?;
            ratios.push(c / ((before + after) / 2.0).max(1e-9));
            before = after;
        }
    }
    ratios.sort_by(f64::total_cmp);
    if let (Some(least), Some(most)) = (ratios.first(), ratios.last()) {
        println!(
            "\n(c) with {} alerts against (a), 1 worker, each (c) against the (a) run just before and just after it, {} times: {:.2}x (median; from {least:.2}x to {most:.2}x)",
            args.alerts,
            ratios.len(),
            ratios[ratios.len() / 2],
        );
    }
    if let Some((stats, bars)) = rows {
        println!("\nevery in-memory run produced {stats} stats rows and {bars} bar rows");
    }
    if !event_rows.is_empty() {
        // The event path's own rate: the events over the seconds they add to the run
        // without alerts (matching, ordering and writing them).
        let base = event_rows
            .iter()
            .find(|(_, events, _)| *events == 0)
            .map(|(_, _, secs)| *secs);
        println!(
            "\n| (d) measurement | alert events written | events/s of the run | events/s beyond the run without alerts |"
        );
        println!("|---|---:|---:|---:|");
        for (label, events, secs) in &event_rows {
            let beyond = match base {
                Some(base) if *events > 0 && *secs > base => {
                    format!("{:.2} M", *events as f64 / (secs - base) / 1e6)
                }
                _ => String::new(),
            };
            println!(
                "| {label} | {events} | {:.2} M | {beyond} |",
                *events as f64 / secs.max(1e-9) / 1e6
            );
        }
    }
    alert_files.remove();
    let _ = std::fs::remove_dir_all(&out_dir);
    if args.workload_out.is_none() {
        let _ = std::fs::remove_file(&csv);
    }
    let _ = std::fs::remove_file(&twice);
    Ok(())
}

/// Runs one measurement in a child process: its ticks, seconds and peak RSS (kB). The rows of
/// every in-memory run must be the same (`rows` holds the first run's).
fn measure_once(
    me: &Path,
    args: &BenchArgs,
    what: Measure,
    workers: usize,
    input: &Path,
    out_dir: &Path,
    rows: &mut Option<(String, String)>,
) -> anyhow::Result<(u64, f64, u64)> {
    {
        let mut cmd = Command::new(me);
        cmd.args(["--log", "warn"]);
        let mut others = Vec::new();
        match what {
            // The dataflow alone: the child loads the ticks, then times only the dataflow.
            Measure::Phase(phase) => {
                cmd.arg("bench")
                    .arg("--alerts")
                    .arg(args.alerts.to_string())
                    .arg("--phase")
                    .arg(
                        phase
                            .to_possible_value()
                            .context("every phase has a name")?
                            .get_name(),
                    )
                    .arg("--workers")
                    .arg(workers.to_string())
                    .arg("--csv")
                    .arg(input);
            }
            // End to end with alert matching, every event written.
            Measure::AnalyzeAlerts(_, alerts) => {
                cmd.arg("analyze")
                    .arg("--workers")
                    .arg(workers.to_string())
                    .arg("--input")
                    .arg(input)
                    .arg("--stats-out")
                    .arg(out_dir.join("stats.jsonl"))
                    .arg("--bars-out")
                    .arg(out_dir.join("bars.jsonl"));
                let empty = out_dir.join("no-alerts.json");
                let alerts = match alerts {
                    Some(path) => path.to_path_buf(),
                    None => {
                        std::fs::write(&empty, "[]")?;
                        empty
                    }
                };
                cmd.arg("--alerts")
                    .arg(alerts)
                    .arg("--events-out")
                    .arg(out_dir.join("events.jsonl"));
            }
            // A cluster: the other processes start first, in the background; process 0 is
            // the one measured.
            Measure::AnalyzeCluster(_, processes) => {
                let hostfile = out_dir.join("hosts");
                std::fs::write(&hostfile, free_ports(processes)?.join("\n"))?;
                let process = |cmd: &mut Command, i: usize| {
                    cmd.arg("analyze")
                        .arg("--workers")
                        .arg(workers.to_string())
                        .args(["--processes", &processes.to_string()])
                        .args(["--process", &i.to_string()])
                        .arg("--hostfile")
                        .arg(&hostfile)
                        .arg("--input")
                        .arg(input)
                        .arg("--stats-out")
                        .arg(out_dir.join("stats.jsonl"))
                        .arg("--bars-out")
                        .arg(out_dir.join("bars.jsonl"));
                };
                for i in 1..processes {
                    let mut other = Command::new(me);
                    other.args(["--log", "warn"]);
                    process(&mut other, i);
                    other.stdout(Stdio::null()).stderr(Stdio::null());
                    others.push(other.spawn().context("starting a cluster process")?);
                }
                process(&mut cmd, 0);
            }
            // End to end: parsing, the dataflow and writing every output.
            Measure::Analyze(_) => {
                cmd.arg("analyze")
                    .arg("--workers")
                    .arg(workers.to_string())
                    .arg("--input")
                    .arg(input);
                cmd.arg("--stats-out")
                    .arg(out_dir.join("stats.jsonl"))
                    .arg("--bars-out")
                    .arg(out_dir.join("bars.jsonl"));
            }
        }
        let started = Instant::now();
        let (stdout, rss) = measure(cmd)?;
        for mut other in others {
            anyhow::ensure!(other.wait()?.success(), "a cluster process failed");
        }
        let (ticks, secs) = match what {
            Measure::Analyze(t) | Measure::AnalyzeAlerts(t, _) | Measure::AnalyzeCluster(t, _) => {
                (t, started.elapsed().as_secs_f64())
            }
            Measure::Phase(phase) => {
                let words: Vec<&str> = stdout.split_whitespace().collect();
                let [ticks, secs, stats, bars, _events] = words[..] else {
                    anyhow::bail!("unexpected phase output: {stdout:?}");
                };
                if !matches!(phase, BenchPhase::Alerts | BenchPhase::AlertsEvery) {
                    let these = (stats.to_string(), bars.to_string());
                    let first = rows.get_or_insert_with(|| these.clone());
                    anyhow::ensure!(
                        *first == these,
                        "{stats} stats and {bars} bar rows, against {} and {} before",
                        first.0,
                        first.1
                    );
                }
                (
                    ticks.parse().context("phase output")?,
                    secs.parse().context("phase output")?,
                )
            }
        };
        Ok((ticks, secs, rss))
    }
}

fn write_csv(path: &Path, trades: &[Trade]) -> anyhow::Result<()> {
    let mut w = BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    writeln!(w, "symbol,time_ns,seq,price,size")?;
    for t in trades {
        writeln!(
            w,
            "{},{},{},{},{}",
            t.symbol, t.time_ns, t.seq, t.price, t.size
        )?;
    }
    w.flush()?;
    Ok(())
}

/// `n` ports of 127.0.0.1 free a moment ago, as `host:port`.
fn free_ports(n: usize) -> anyhow::Result<Vec<String>> {
    let listeners = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr()?.to_string()))
        .collect()
}

/// Runs a command, sampling its peak RSS; returns its stdout and the peak in kB.
fn measure(mut cmd: Command) -> anyhow::Result<(String, u64)> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("starting a measurement")?;
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak = 0u64;
    loop {
        if let Ok(status) = std::fs::read_to_string(&status_path)
            && let Some(kb) = status
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        {
            peak = peak.max(kb);
        }
        if child.try_wait()?.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output()?;
    anyhow::ensure!(out.status.success(), "a measurement failed: {:?}", cmd);
    Ok((String::from_utf8_lossy(&out.stdout).into_owned(), peak))
}

/// How a row of the table is measured.
#[derive(Clone, Copy)]
enum Measure<'a> {
    /// A `bench --phase` child, which times the dataflow alone and reports its figures.
    Phase(BenchPhase),
    /// `analyze` end to end on this many ticks, timed from outside.
    Analyze(u64),
    /// The same with `--alerts` (this file, or none) and every event written.
    AnalyzeAlerts(u64, Option<&'a Path>),
    /// `analyze` end to end as a cluster of this many processes on 127.0.0.1 (each of the
    /// row's workers), timed from outside until process 0, which writes the outputs, is done.
    AnalyzeCluster(u64, usize),
}

/// The `--alerts` files of the (d) rows, next to the workload.
struct AlertFiles {
    once: PathBuf,
    guarded: PathBuf,
    unguarded: PathBuf,
    /// Kept beside the workload rather than removed at the end.
    kept: bool,
}

impl AlertFiles {
    /// `n` price, cross and sma-cross alerts over the workload's symbols, in proportion to
    /// their trades, thresholds drawn from each symbol's traded range: all `once`; and half
    /// `rearm` with no hysteresis and no cooldown (a price oscillating around a threshold
    /// fires on almost every tick), with the default storm guard and with it off.
    ///
    /// Beside `keep` (the workload kept with `--workload-out`), as `NAME-alerts-once.json` and
    /// so on, the files stay for a later `analyze --alerts`; otherwise they are temporary.
    fn write(trades: &[Trade], n: usize, keep: Option<&Path>) -> anyhow::Result<AlertFiles> {
        use rand::{Rng, SeedableRng};
        let mut range: std::collections::HashMap<Symbol, (i64, i64)> = Default::default();
        for t in trades {
            let r = range.entry(t.symbol).or_insert((i64::MAX, i64::MIN));
            *r = (r.0.min(t.price.units()), r.1.max(t.price.units()));
        }
        // Price, cross and sma-cross conditions.
        let conditions: Vec<Condition> = BENCH_CONDITIONS
            .iter()
            .copied()
            .filter(|c| *c != Condition::VolatilityAbove)
            .collect();
        let base = match keep {
            Some(csv) => csv.with_extension("").into_os_string(),
            None => std::env::temp_dir()
                .join(format!("gostocks-bench-{}", std::process::id()))
                .into_os_string(),
        };
        let file = |kind: &str| {
            let mut path = base.clone();
            path.push(format!("-alerts-{kind}.json"));
            PathBuf::from(path)
        };
        let files = AlertFiles {
            once: file("once"),
            guarded: file("guarded"),
            unguarded: file("unguarded"),
            kept: keep.is_some(),
        };
        for (path, storm_mix, storm) in [
            (&files.once, false, ""),
            (&files.guarded, true, ""),
            (&files.unguarded, true, r#","storm":"off""#),
        ] {
            let mut rng = rand::rngs::StdRng::seed_from_u64(27);
            let mut w = BufWriter::new(std::fs::File::create(path)?);
            write!(w, "[")?;
            for i in 0..n {
                let t = trades[rng.random_range(0..trades.len())];
                let (lo, hi) = range[&t.symbol];
                let condition = conditions[rng.random_range(0..conditions.len())];
                let threshold = Fixed::from_units(rng.random_range(lo..=hi).max(1));
                let rearm = storm_mix && rng.random_bool(0.5);
                let mode = if rearm { "rearm" } else { "once" };
                let window = if condition.needs_window() {
                    r#","window":"60s""#
                } else {
                    ""
                };
                let sep = if i == 0 { "" } else { ",\n" };
                write!(
                    w,
                    r#"{sep}{{"id":"s{i:06}","symbol":"{}","condition":"{}","threshold":"{threshold}","mode":"{mode}"{window}{storm}}}"#,
                    t.symbol, condition
                )?;
            }
            writeln!(w, "]")?;
            w.flush()?;
        }
        Ok(files)
    }

    fn remove(&self) {
        if self.kept {
            return;
        }
        for p in [&self.once, &self.guarded, &self.unguarded] {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Lines in `path` (0 if it is missing).
fn count_lines(path: &Path) -> anyhow::Result<u64> {
    use std::io::BufRead;
    let Ok(file) = std::fs::File::open(path) else {
        return Ok(0);
    };
    let mut n = 0;
    for line in std::io::BufReader::with_capacity(1 << 20, file).split(b'\n') {
        line?;
        n += 1;
    }
    Ok(n)
}

/// A child: measures one phase and prints `ticks seconds`.
fn run_phase(phase: BenchPhase, args: &BenchArgs) -> anyhow::Result<()> {
    let csv = args.csv.clone().context("--csv is required with --phase")?;
    let config = AnalyticsConfig::default();
    match phase {
        BenchPhase::Memory | BenchPhase::Ordered | BenchPhase::Alerts | BenchPhase::AlertsEvery => {
            let trades: Vec<Trade> = TickFile::open(&csv, Format::Csv)?
                .filter_map(Result::ok)
                .filter_map(|t| t.validate().ok())
                .collect();
            let rules = match phase {
                BenchPhase::Alerts => bench_rules(&trades, args.alerts, BENCH_CONDITIONS),
                BenchPhase::AlertsEvery => bench_rules(&trades, args.alerts, Condition::ON_TRADES),
                BenchPhase::Memory | BenchPhase::Ordered => Vec::new(),
            };
            // Each worker reads the symbols it owns, in time order. Sized exactly: the ticks
            // are held twice for a moment, and grown buffers would hold more.
            let owner = |t: &Trade| (symbol_route(&t.symbol) % args.workers as u64) as usize;
            let mut sizes = vec![0usize; args.workers];
            for t in &trades {
                sizes[owner(t)] += 1;
            }
            let mut inputs: Vec<Vec<Trade>> = sizes.into_iter().map(Vec::with_capacity).collect();
            for t in &trades {
                inputs[owner(t)].push(*t);
            }
            let n = trades.len() as u64;
            drop(trades);
            let started = Instant::now();
            let outputs = match phase {
                BenchPhase::Ordered => Outputs::Order,
                BenchPhase::Memory | BenchPhase::Alerts | BenchPhase::AlertsEvery => Outputs::Count,
            };
            let out = run_batch_core(inputs, rules, &config, args.workers, outputs);
            let secs = started.elapsed().as_secs_f64();
            anyhow::ensure!(out.late.is_empty(), "the workload has no late ticks");
            let c = out.counts;
            println!("{n} {secs} {} {} {}", c.stats, c.bars, c.events);
        }
    }
    Ok(())
}

/// `n` rules spread over the symbols in proportion to their trades, of `conditions` and each
/// mode, levels drawn from the prices the symbol trades at (so they fire and rearm): a price
/// level at a traded price, a channel 0.1 % either side of it, a change of 0.01 % to 0.5 %, a
/// volume of 1 to 100 times a traded size.
/// The conditions the bench's alerts draw from: the first seven of [`Condition::ALL`] (price
/// levels, crosses, sma crosses, volatility), the same workload from one release to the next so
/// that its figures compare; the change conditions came later.
const BENCH_CONDITIONS: &[Condition] = Condition::ALL.split_at(7).0;

fn bench_rules(
    trades: &[Trade],
    n: usize,
    conditions: &[Condition],
) -> Vec<(AlertRule, u64, isize)> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    (0..n)
        .map(|i| {
            let t = trades[rng.random_range(0..trades.len())];
            let condition = conditions[rng.random_range(0..conditions.len())];
            let band = t.price.units() / 1000;
            let threshold = match condition {
                Condition::VolatilityAbove => Fixed::from_units(rng.random_range(1_000..100_000)),
                Condition::ChangePctAbove | Condition::ChangePctBelow => {
                    Fixed::from_units(rng.random_range(1_000_000..50_000_000))
                }
                Condition::VolumeAbove => {
                    Fixed::from_units(t.size.units().saturating_mul(rng.random_range(1..100)))
                }
                c if c.needs_upper() => Fixed::from_units(t.price.units() - band),
                _ => t.price,
            };
            let upper = condition
                .needs_upper()
                .then(|| Fixed::from_units(t.price.units() + band));
            let rule = AlertRule::new(format!("b{i:06}"), t.symbol, condition, threshold)
                .with_mode(if rng.random_bool(0.5) {
                    Mode::Rearm
                } else {
                    Mode::Once
                })
                .with_hysteresis(Fixed::from_units(t.price.units() / 1000))
                .with_cooldown_ns(1_000_000_000)
                .with_window(condition.needs_window().then(|| rng.random_range(0..2)))
                .with_upper(upper)
                .with_storm(None);
            (rule, 0, 1)
        })
        .collect()
}
