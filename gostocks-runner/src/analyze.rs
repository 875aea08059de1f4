//! `gostocks analyze`: the analytics dataflow over recorded files, outputs as JSON lines.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use gostocks_connectors::file::{Record, Rejected, TickFile};
use gostocks_connectors::limits::MAX_RAW_BYTES;
use gostocks_core::Trade;
use gostocks_core::alerts::{AlertEvent, AlertRule, AlertSpec};
use gostocks_core::batch::Watermarks;
use gostocks_core::pipeline::{Inputs, build};
use gostocks_core::stats::{AnalyticsConfig, BarRow, StatsRow};
use gostocks_core::watermark::Late;
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::AnalyzeArgs;

/// Totals for the closing summary.
#[derive(Default)]
struct Counters {
    ticks: AtomicU64,
    rejected: AtomicU64,
    late: AtomicU64,
    skipped: AtomicU64,
    stats_rows: AtomicU64,
    events: AtomicU64,
    bar_rows: AtomicU64,
    workers_done: AtomicUsize,
}

type Writer = Arc<Mutex<BufWriter<Box<dyn Write + Send>>>>;

fn create(path: &Path) -> anyhow::Result<Writer> {
    let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    Ok(Arc::new(Mutex::new(BufWriter::with_capacity(
        1 << 20,
        Box::new(file),
    ))))
}

fn lock<T: ?Sized>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Output rows on their way to the writer thread.
enum Rows {
    Stats(Vec<StatsRow>),
    Bars(Vec<BarRow>),
    Events(Vec<AlertEvent>),
}

/// Emptied row vectors on their way back from the writer to the workers: a worker hands a full
/// vector over and keeps an emptied one in its place, so that buffers (and the pages under
/// them) are reused instead of allocated afresh for every grid time (fresh pages, zeroed by the
/// kernel, were a tenth of an event storm's time).
struct Spare<T>(Mutex<Vec<Vec<T>>>);

impl<T> Spare<T> {
    /// At most this many emptied vectors wait.
    const KEPT: usize = 16;

    fn new() -> Spare<T> {
        Spare(Mutex::new(Vec::new()))
    }

    /// Swaps `rows` for an emptied vector; returns the full one.
    fn exchange(&self, rows: &mut Vec<T>) -> Vec<T> {
        let empty = lock(&self.0).pop().unwrap_or_default();
        std::mem::replace(rows, empty)
    }

    /// Keeps `rows`, emptied, for a worker.
    fn keep(&self, mut rows: Vec<T>) {
        rows.clear();
        let mut spare = lock(&self.0);
        if spare.len() < Self::KEPT {
            spare.push(rows);
        }
    }
}

/// The vectors of every kind of row going back to the workers.
struct Spares {
    stats: Spare<StatsRow>,
    bars: Spare<BarRow>,
    events: Spare<AlertEvent>,
}

/// The writer thread: formats rows as JSON lines, in the order they come.
fn write_rows(
    rows: std::sync::mpsc::Receiver<Rows>,
    stats_out: &Writer,
    bars_out: Option<&Writer>,
    events_out: Option<&Writer>,
    window_labels: &[String],
    bar_labels: &[String],
    spares: &Spares,
) {
    let mut line = String::with_capacity(1 << 16);
    for batch in rows {
        line.clear();
        let target = match &batch {
            Rows::Stats(rows) => {
                for row in rows {
                    row.write_json(&mut line, &window_labels[row.window as usize]);
                    line.push('\n');
                }
                Some(stats_out)
            }
            Rows::Bars(rows) => {
                for row in rows {
                    row.write_json(&mut line, &bar_labels[row.bar as usize]);
                    line.push('\n');
                }
                bars_out
            }
            Rows::Events(rows) => {
                for event in rows {
                    event.write_json(&mut line);
                    line.push('\n');
                }
                events_out
            }
        };
        if let Some(w) = target
            && let Err(e) = lock(w).write_all(line.as_bytes())
        {
            tracing::error!(error = %e, "writing outputs");
        }
        match batch {
            Rows::Stats(rows) => spares.stats.keep(rows),
            Rows::Bars(rows) => spares.bars.keep(rows),
            Rows::Events(rows) => spares.events.keep(rows),
        }
    }
}

/// One late or rejected record, kept to be written in input order at the end.
struct SetAside {
    input: usize,
    position: u64,
    line: String,
}

/// What a reader thread hands over: valid trades with their record positions (1-based), in
/// file order.
struct Chunk {
    trades: Vec<(u64, Trade)>,
}

/// Trades per chunk, and chunks a reader may be ahead of the dataflow (enough that the worker
/// rarely waits for the parser).
const CHUNK: usize = 16_384;
const CHUNKS_AHEAD: usize = 16;

/// Trades sent to a worker's input between two releases, as one message: a small step keeps
/// what is in flight (the trades, their cells, window updates and rows) in the core's cache. On
/// the bench workload, 1,024 ran about 20% faster than 16,384 with one worker; with two, sent as
/// one message per step, also faster than whole chunks (0.90 s against 1.15 s).
const STEP: usize = 1_024;

/// Reads, parses and validates `file` on a thread of its own. Rejected records are counted and
/// set aside here; valid trades go out in chunks. The channel closes at the end of the file.
fn spawn_reader(
    id: usize,
    mut file: TickFile,
    counters: Arc<Counters>,
    set_aside: Arc<Mutex<Vec<SetAside>>>,
) -> std::sync::mpsc::Receiver<Chunk> {
    let (tx, rx) = std::sync::mpsc::sync_channel(CHUNKS_AHEAD);
    let read = move || {
        let mut position = 0u64;
        let mut rejected = Vec::new();
        loop {
            let mut trades = Vec::with_capacity(CHUNK);
            while trades.len() < CHUNK {
                let Some(record) = file.next_record() else {
                    break;
                };
                position += 1;
                // A tick that decoded but is invalid is refused by the file, which knows its
                // line and text.
                let trade = record.and_then(|record| match record {
                    Record::Trade(trade) => Ok(trade),
                    Record::Tick(tick) => tick.validate().map_err(|why| file.refuse(why)),
                });
                match trade {
                    Ok(trade) => trades.push((position, trade)),
                    Err(rejected_record) => {
                        counters.rejected.fetch_add(1, Ordering::Relaxed);
                        rejected.push(SetAside {
                            input: usize::MAX - id,
                            position,
                            line: error_line(id, &rejected_record),
                        });
                    }
                }
            }
            let end = trades.len() < CHUNK;
            if (!trades.is_empty() && tx.send(Chunk { trades }).is_err()) || end {
                break;
            }
        }
        counters
            .skipped
            .fetch_add(file.counts().skipped, Ordering::Relaxed);
        set_aside
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .append(&mut rejected);
    };
    if let Err(error) = std::thread::Builder::new()
        .name(format!("gostocks-reader-{id}"))
        .spawn(read)
    {
        tracing::error!(%error, "starting a reader thread");
    }
    rx
}

/// The output files of a run (`None`: not asked for).
struct Files {
    stats: Writer,
    bars: Option<Writer>,
    events: Option<Writer>,
    late: Option<Writer>,
    errors: Option<Writer>,
}

impl Files {
    fn create(args: &AnalyzeArgs) -> anyhow::Result<Files> {
        let optional = |p: &Option<std::path::PathBuf>| p.as_deref().map(create).transpose();
        Ok(Files {
            stats: create(&args.stats_out)?,
            bars: optional(&args.bars_out)?,
            events: optional(&args.events_out)?,
            late: optional(&args.late_out)?,
            errors: optional(&args.errors_out)?,
        })
    }

    fn flush(&self) -> anyhow::Result<()> {
        let all = [&self.bars, &self.events, &self.late, &self.errors];
        for w in std::iter::once(&self.stats).chain(all.into_iter().flatten()) {
            lock(w).flush().context("flushing outputs")?;
        }
        Ok(())
    }
}

/// What every worker shares.
struct Shared {
    config: AnalyticsConfig,
    counters: Arc<Counters>,
    set_aside: Arc<Mutex<Vec<SetAside>>>,
    /// The inputs, each taken by the worker that reads it.
    inputs: Vec<Mutex<Option<TickFile>>>,
    rules: Vec<AlertRule>,
    /// To the writer thread; taken away at the end, so that the writer drains and ends.
    rows: Mutex<Option<std::sync::mpsc::SyncSender<Rows>>>,
    /// The writer's emptied vectors, back to the workers.
    spares: Arc<Spares>,
    with_bars: bool,
    with_events: bool,
}

/// Runs `gostocks analyze`.
pub fn analyze(args: AnalyzeArgs) -> anyhow::Result<()> {
    let config = AnalyticsConfig::default()
        .with_windows(args.window.clone())
        .with_resolution(args.resolution.clone())
        .with_bars(args.bar.clone())
        .with_ema_span(args.ema_span)
        .with_lateness(args.lateness.as_ref().map_or(0, |l| l.ns()));
    config.validate()?;
    anyhow::ensure!(args.workers >= 1, "--workers must be at least 1");
    // Every input is opened first, so a missing file or an unknown format fails before any work.
    let inputs = open_inputs(&args)?;
    let files = Files::create(&args)?;
    let rules = match &args.alerts {
        Some(path) => load_alerts(path, &config)?,
        None => Vec::new(),
    };
    let read: Vec<Arc<AtomicU64>> = inputs.iter().map(TickFile::bytes_read).collect();
    let started = Instant::now();
    // Formatting and writing the stats and bars runs on a thread of its own, so the worker does
    // not also format every output line. Bounded: a slow disk holds the dataflow back rather
    // than filling memory; but roomy (a message is one grid time's rows), so that the worker does
    // not stop for the writer at every burst (64 cost 10% of the run on the bench workload).
    let (rows_tx, rows_rx) = std::sync::mpsc::sync_channel::<Rows>(1024);
    let spares = Arc::new(Spares {
        stats: Spare::new(),
        bars: Spare::new(),
        events: Spare::new(),
    });
    let writer = spawn_writer(rows_rx, &files, &config, Arc::clone(&spares))?;
    let shared = Arc::new(Shared {
        counters: Arc::default(),
        set_aside: Arc::default(),
        inputs: inputs.into_iter().map(|f| Mutex::new(Some(f))).collect(),
        rules,
        rows: Mutex::new(Some(rows_tx)),
        spares,
        with_bars: files.bars.is_some(),
        with_events: files.events.is_some(),
        config,
    });
    let guards = {
        let shared = Arc::clone(&shared);
        timely::execute(
            gostocks_core::batch::timely_config(args.workers),
            move |worker| run_worker(worker, &shared),
        )
        .map_err(|e| anyhow::anyhow!("starting timely workers: {e}"))?
    };
    let total: u64 = args
        .input
        .iter()
        .map(|p| std::fs::metadata(p).map_or(0, |m| m.len()))
        .sum();
    show_progress(&shared.counters, &read, total, args.workers, started);
    for result in guards.join() {
        result.map_err(|e| anyhow::anyhow!("a timely worker failed: {e}"))?;
    }
    // The workers are gone, and with them every sender but the shared one: drop it, and the
    // writer drains and ends.
    drop(lock(&shared.rows).take());
    writer
        .join()
        .map_err(|_| anyhow::anyhow!("the output writer panicked"))?;
    write_set_aside(&shared.set_aside, &files)?;
    files.flush()?;
    summary(&shared.counters, started, args.errors_out.is_none());
    Ok(())
}

/// Opens every `--input`.
fn open_inputs(args: &AnalyzeArgs) -> anyhow::Result<Vec<TickFile>> {
    args.input
        .iter()
        .map(|path| {
            let file = TickFile::open_core(path, args.format, args.max_record_bytes)
                .with_context(|| format!("--input {}", path.display()))?;
            tracing::info!(path = %path.display(), format = %file.format(), "reading");
            Ok(file)
        })
        .collect()
}

/// Starts the thread that formats and writes the stats and bars.
fn spawn_writer(
    rows: std::sync::mpsc::Receiver<Rows>,
    files: &Files,
    config: &AnalyticsConfig,
    spares: Arc<Spares>,
) -> anyhow::Result<std::thread::JoinHandle<()>> {
    let (stats_out, bars_out, events_out) = (
        Arc::clone(&files.stats),
        files.bars.clone(),
        files.events.clone(),
    );
    let window_labels: Vec<String> = config.windows.iter().map(ToString::to_string).collect();
    let bar_labels: Vec<String> = config.bars.iter().map(ToString::to_string).collect();
    std::thread::Builder::new()
        .name("gostocks-writer".into())
        .spawn(move || {
            write_rows(
                rows,
                &stats_out,
                bars_out.as_ref(),
                events_out.as_ref(),
                &window_labels,
                &bar_labels,
                &spares,
            )
        })
        .context("starting the output writer")
}

/// One timely worker: builds the pipeline, hands its outputs on in order, and reads inputs
/// `index`, `index + peers`, ..., each parsed ahead on a reader thread of its own.
fn run_worker(worker: &mut timely::worker::Worker, shared: &Shared) {
    let (index, peers) = (worker.index(), worker.peers());
    let counters = &shared.counters;
    let (pipeline, probe) = worker.dataflow::<u64, _, _>(|scope| {
        let (pipeline, out) = build(scope, &shared.config, shared.with_events);
        // Every output goes to the writer thread; formatting it is that thread's work (a storm
        // of alert events is as many lines as the stats).
        let (stats_count, bars_count) = (Arc::clone(counters), Arc::clone(counters));
        let rows = lock(&shared.rows).clone();
        let (stats_tx, bars_tx, events_tx) = (rows.clone(), rows.clone(), rows);
        let (stats_spares, bars_spares, events_spares) = (
            Arc::clone(&shared.spares),
            Arc::clone(&shared.spares),
            Arc::clone(&shared.spares),
        );
        let events_count = Arc::clone(counters);
        let (with_bars, with_events) = (shared.with_bars, shared.with_events);
        let probe = out.in_order(
            move |rows| {
                stats_count
                    .stats_rows
                    .fetch_add(rows.len() as u64, Ordering::Relaxed);
                if let Some(tx) = &stats_tx {
                    let _ = tx.send(Rows::Stats(stats_spares.stats.exchange(rows)));
                }
            },
            move |rows| {
                bars_count
                    .bar_rows
                    .fetch_add(rows.len() as u64, Ordering::Relaxed);
                if let Some(tx) = bars_tx.as_ref().filter(|_| with_bars) {
                    let _ = tx.send(Rows::Bars(bars_spares.bars.exchange(rows)));
                }
            },
            move |rows| {
                events_count
                    .events
                    .fetch_add(rows.len() as u64, Ordering::Relaxed);
                if let Some(tx) = events_tx.as_ref().filter(|_| with_events) {
                    let _ = tx.send(Rows::Events(events_spares.events.exchange(rows)));
                }
            },
        );
        (pipeline, probe)
    });
    // The rules apply from the start; they enter at worker 0.
    let Inputs {
        mut trades,
        mut rules,
    } = pipeline;
    if index == 0 {
        for rule in &shared.rules {
            rules.send((rule.clone(), 0, 1));
        }
    }
    drop(rules);
    let readers: Vec<(usize, std::sync::mpsc::Receiver<Chunk>)> = (index..shared.inputs.len())
        .step_by(peers)
        .filter_map(|i| {
            let file = shared.inputs[i].lock().ok().and_then(|mut f| f.take())?;
            let set_aside = Arc::clone(&shared.set_aside);
            Some((i, spawn_reader(i, file, Arc::clone(counters), set_aside)))
        })
        .collect();
    let config = &shared.config;
    let mut watermarks = Watermarks::new(readers.len(), config.lateness, config.resolution.ns());
    let mut aside = Vec::new();
    let mut admitted: Vec<Trade> = Vec::with_capacity(STEP);
    while let Some(i) = watermarks.laggard() {
        let (id, rx) = &readers[i];
        // A reader that is gone has sent everything it had.
        let Ok(chunk) = rx.recv() else {
            watermarks.finish(i);
            continue;
        };
        for part in chunk.trades.chunks(STEP) {
            for &(position, trade) in part {
                match watermarks.admit(i, trade.time_ns) {
                    Ok(_) => admitted.push(trade),
                    Err(late) => {
                        counters.late.fetch_add(1, Ordering::Relaxed);
                        aside.push(SetAside {
                            input: *id,
                            position,
                            line: late_line(&trade, &late),
                        });
                    }
                }
            }
            counters
                .ticks
                .fetch_add(admitted.len() as u64, Ordering::Relaxed);
            // One message per step. A sent container comes back holding anything.
            trades.send_batch(&mut admitted);
            admitted.clear();
            watermarks.release(&mut trades, &probe, worker);
        }
    }
    drop(trades);
    while worker.step_or_park(None) {}
    lock(&shared.set_aside).append(&mut aside);
    counters.workers_done.fetch_add(1, Ordering::Relaxed);
}

/// Shows a progress bar on a terminal until every worker is done.
fn show_progress(
    counters: &Counters,
    read: &[Arc<AtomicU64>],
    total: u64,
    workers: usize,
    started: Instant,
) {
    let bar = ProgressBar::new(total.max(1));
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:40} {percent:>3}% {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    while counters.workers_done.load(Ordering::Relaxed) < workers {
        let bytes: u64 = read.iter().map(|b| b.load(Ordering::Relaxed)).sum();
        let ticks = counters.ticks.load(Ordering::Relaxed);
        let rate = ticks as f64 / started.elapsed().as_secs_f64().max(1e-9);
        bar.set_position(bytes.min(total));
        bar.set_message(format!("{ticks} ticks, {:.0}k ticks/s", rate / 1e3));
        std::thread::sleep(Duration::from_millis(10));
    }
    bar.finish_and_clear();
}

/// Writes the late and rejected records, each to its file, in input order.
fn write_set_aside(set_aside: &Mutex<Vec<SetAside>>, files: &Files) -> anyhow::Result<()> {
    let mut aside = std::mem::take(&mut *lock(set_aside));
    aside.sort_by_key(|a| (a.input, a.position));
    for a in &aside {
        let target = if a.input > usize::MAX / 2 {
            &files.errors
        } else {
            &files.late
        };
        if let Some(w) = target {
            writeln!(lock(w), "{}", a.line)?;
        }
    }
    Ok(())
}

/// The closing summary line, on stderr.
fn summary(c: &Counters, started: Instant, no_errors_out: bool) {
    let elapsed = started.elapsed().as_secs_f64();
    let ticks = c.ticks.load(Ordering::Relaxed);
    let rejected = c.rejected.load(Ordering::Relaxed);
    if rejected > 0 && no_errors_out {
        tracing::warn!(
            rejected,
            "records were rejected; pass --errors-out FILE to see them and why"
        );
    }
    eprintln!(
        "analyzed {} ticks ({} rejected, {} late, {} non-trade records skipped) in {:.2}s: {:.0} ticks/s; wrote {} stats rows, {} bars, {} alert events",
        ticks,
        rejected,
        c.late.load(Ordering::Relaxed),
        c.skipped.load(Ordering::Relaxed),
        elapsed,
        ticks as f64 / elapsed.max(1e-9),
        c.stats_rows.load(Ordering::Relaxed),
        c.bar_rows.load(Ordering::Relaxed),
        c.events.load(Ordering::Relaxed),
    );
}

/// Reads an `--alerts` file: a JSON array of alert specs, each applying from the start.
fn load_alerts(path: &Path, config: &AnalyticsConfig) -> anyhow::Result<Vec<AlertRule>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading --alerts {}", path.display()))?;
    let specs: Vec<AlertSpec> = serde_json::from_str(&text).with_context(|| {
        format!(
            "--alerts {}: expected a JSON array of {{\"id\",\"symbol\",\"condition\",\"threshold\",...}}",
            path.display()
        )
    })?;
    let mut seen = std::collections::HashSet::new();
    specs
        .iter()
        .enumerate()
        .map(|(i, spec)| {
            let id = spec.id.as_deref().with_context(|| {
                format!("--alerts {}: alert #{i} has no \"id\"", path.display())
            })?;
            anyhow::ensure!(
                seen.insert(id.to_owned()),
                "--alerts {}: the id `{id}` appears twice",
                path.display()
            );
            spec.to_rule_core(id, 0, &config.windows, &config.bars)
                .with_context(|| format!("--alerts {}: alert `{id}`", path.display()))
        })
        .collect()
}

/// A line of `--errors-out`: the input, the line number, why, and the line (an excerpt of at most
/// [`MAX_RAW_BYTES`], with the whole line's length in `bytes` when it is cut).
fn error_line(input: usize, r: &Rejected) -> String {
    let mut line = serde_json::json!({
        "input": input,
        "line": r.line,
        "reason": r.reason.to_string(),
        "raw": r.raw,
    });
    if r.bytes > MAX_RAW_BYTES as u64 {
        line["bytes"] = r.bytes.into();
    }
    line.to_string()
}

fn late_line(trade: &Trade, late: &Late) -> String {
    serde_json::json!({
        "symbol": trade.symbol.as_str(),
        "time_ns": trade.time_ns,
        "seq": trade.seq,
        "reason": late.to_string(),
    })
    .to_string()
}
