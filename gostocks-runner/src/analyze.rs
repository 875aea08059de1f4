//! `gostocks analyze`: the analytics dataflow over recorded files, outputs as JSON lines.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use differential_dataflow::AsCollection;
use gostocks_connectors::file::{Record, Rejected, TickFile};
use gostocks_connectors::limits::MAX_RAW_BYTES;
use gostocks_core::Trade;
use gostocks_core::alerts::{AlertEvent, AlertRule, AlertSpec};
use gostocks_core::batch::Feeder;
use gostocks_core::feed::Late;
use gostocks_core::feed::grid_ceil;
use gostocks_core::operators::{EmitOrdered, MatchAlerts, analytics};
use gostocks_core::stats::{AnalyticsConfig, BarRow, StatsRow};
use indicatif::{ProgressBar, ProgressStyle};
use timely::dataflow::operators::ToStream;
use timely::dataflow::operators::{Input, Probe};

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

fn lock(w: &Writer) -> std::sync::MutexGuard<'_, BufWriter<Box<dyn Write + Send>>> {
    w.lock().unwrap_or_else(|e| e.into_inner())
}

/// Output rows on their way to the writer thread.
enum Rows {
    Stats(Vec<StatsRow>),
    Bars(Vec<BarRow>),
}

/// The writer thread: formats rows as JSON lines, in the order they come.
fn write_rows(
    rows: std::sync::mpsc::Receiver<Rows>,
    stats_out: &Writer,
    bars_out: Option<&Writer>,
    window_labels: &[String],
    bar_labels: &[String],
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
        };
        if let Some(w) = target
            && let Err(e) = lock(w).write_all(line.as_bytes())
        {
            tracing::error!(error = %e, "writing outputs");
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

/// Trades fed to a worker between two releases, as one message: a small step keeps what is in
/// flight (the trades, their cells, window updates and rows) in the core's cache. On the bench
/// workload, 1,024 ran about 20% faster than 16,384 with one worker; with two, sent as one
/// message per step, also faster than whole chunks (0.90 s against 1.15 s).
const FEED: usize = 1_024;

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

/// Runs `gostocks analyze`.
pub fn analyze(args: AnalyzeArgs) -> anyhow::Result<()> {
    let config = AnalyticsConfig {
        windows: args.window.clone(),
        resolution: args.resolution.clone(),
        bars: args.bar.clone(),
        ema_span: args.ema_span,
        lateness: args.lateness.as_ref().map_or(0, |l| l.ns()),
    };
    config.validate()?;
    anyhow::ensure!(args.workers >= 1, "--workers must be at least 1");

    // Open every input first, so a missing file or an unknown format fails before any work.
    let mut files = Vec::new();
    for path in &args.input {
        let file = TickFile::open_with_limit(path, args.format, args.max_record_bytes)
            .with_context(|| format!("--input {}", path.display()))?;
        tracing::info!(path = %path.display(), format = %file.format(), "reading");
        files.push(file);
    }
    let total_bytes: u64 = args
        .input
        .iter()
        .map(|p| std::fs::metadata(p).map_or(0, |m| m.len()))
        .sum();
    let progress: Vec<Arc<AtomicU64>> = files.iter().map(TickFile::bytes_read).collect();

    let stats_out = create(&args.stats_out)?;
    let bars_out = args.bars_out.as_deref().map(create).transpose()?;
    let late_out = args.late_out.as_deref().map(create).transpose()?;
    let errors_out = args.errors_out.as_deref().map(create).transpose()?;
    let rules = match &args.alerts {
        Some(path) => load_alerts(path, &config.windows)?,
        None => Vec::new(),
    };
    let events_out = args.events_out.as_deref().map(create).transpose()?;

    let counters = Arc::new(Counters::default());
    let set_aside: Arc<Mutex<Vec<SetAside>>> = Arc::default();
    let started = Instant::now();
    let workers = args.workers;
    let inputs: Vec<Mutex<Option<TickFile>>> =
        files.into_iter().map(|f| Mutex::new(Some(f))).collect();
    let inputs = Arc::new(inputs);
    // Formatting and writing the stats and bars runs on a thread of its own, so the worker does
    // not also format every output line. Bounded: a slow disk holds the dataflow back rather
    // than filling memory; but roomy (a batch is one grid time's rows), so that the worker does
    // not stop for the writer at every burst (64 cost 10% of the run on the bench workload).
    let (rows_tx, rows_rx) = std::sync::mpsc::sync_channel::<Rows>(1024);
    let writer = {
        let (stats_out, bars_out) = (Arc::clone(&stats_out), bars_out.clone());
        let window_labels: Vec<String> = config.windows.iter().map(ToString::to_string).collect();
        let bar_labels: Vec<String> = config.bars.iter().map(ToString::to_string).collect();
        std::thread::Builder::new()
            .name("gostocks-writer".into())
            .spawn(move || {
                write_rows(
                    rows_rx,
                    &stats_out,
                    bars_out.as_ref(),
                    &window_labels,
                    &bar_labels,
                )
            })
            .context("starting the output writer")?
    };
    let with_bars = bars_out.is_some();
    let shared = (
        Arc::clone(&counters),
        Arc::clone(&set_aside),
        rows_tx,
        events_out.clone(),
    );
    let rules = Arc::new(rules);
    let guards = timely::execute(
        gostocks_core::batch::timely_config(workers),
        move |worker| {
            let (counters, set_aside, rows_tx, events_out) = shared.clone();
            let my_rules: Vec<(AlertRule, u64, isize)> = if worker.index() == 0 {
                rules.iter().map(|r| (r.clone(), 0, 1)).collect()
            } else {
                Vec::new()
            };
            let (index, peers) = (worker.index(), worker.peers());
            let (mut input, probe) = worker.dataflow::<u64, _, _>(|scope| {
                let (input, trades) = scope.new_input::<Vec<Trade>>();
                let out = analytics(trades, &config, events_out.is_some());
                // Rows go to the writer thread in output order; formatting them is its work.
                let stats_counter = Arc::clone(&counters);
                let stats_tx = rows_tx.clone();
                let bar_sizes: Vec<u64> = config.bars.iter().map(|b| b.ns()).collect();
                // The probe passes each stream through: a second consumer of a stream would
                // get a copy of every row.
                let (probe, stats) = out.stats.probe();
                stats.emit_ordered(
                    |r: &StatsRow| r.time_ns,
                    move |_, rows| {
                        stats_counter
                            .stats_rows
                            .fetch_add(rows.len() as u64, Ordering::Relaxed);
                        let _ = stats_tx.send(Rows::Stats(std::mem::take(rows)));
                    },
                );
                let bar_counter = Arc::clone(&counters);
                let bars_tx = rows_tx.clone();
                let bar_end = move |r: &BarRow| r.start_ns + bar_sizes[r.bar as usize];
                out.bars.probe_with(&probe).emit_ordered(
                    bar_end,
                    move |_, rows: &mut Vec<BarRow>| {
                        bar_counter
                            .bar_rows
                            .fetch_add(rows.len() as u64, Ordering::Relaxed);
                        if with_bars {
                            let _ = bars_tx.send(Rows::Bars(std::mem::take(rows)));
                        }
                    },
                );
                if let Some(w) = events_out {
                    let resolution = config.resolution.ns();
                    let events = out
                        .sequenced
                        .expect("kept for the alert events")
                        .match_alerts(my_rules.to_stream(scope).as_collection(), &config.windows);
                    let event_counter = Arc::clone(&counters);
                    let mut lines = String::new();
                    events.probe_with(&probe).emit_ordered(
                        move |e: &AlertEvent| grid_ceil(e.time_ns, resolution),
                        move |_, rows| {
                            event_counter
                                .events
                                .fetch_add(rows.len() as u64, Ordering::Relaxed);
                            lines.clear();
                            for e in rows.iter() {
                                lines.push_str(&e.to_json());
                                lines.push('\n');
                            }
                            if let Err(e) = lock(&w).write_all(lines.as_bytes()) {
                                tracing::error!(error = %e, "writing alert events");
                            }
                        },
                    );
                }
                (input, probe)
            });

            // This worker reads inputs index, index + peers, ...; each on a reader thread of its
            // own that parses and validates ahead, so the dataflow does not wait for the parser.
            let mine: Vec<(usize, TickFile)> = (index..inputs.len())
                .step_by(peers)
                .filter_map(|i| {
                    inputs[i]
                        .lock()
                        .ok()
                        .and_then(|mut f| f.take())
                        .map(|f| (i, f))
                })
                .collect();
            let readers: Vec<(usize, std::sync::mpsc::Receiver<Chunk>)> = mine
                .into_iter()
                .map(|(id, file)| {
                    (
                        id,
                        spawn_reader(id, file, Arc::clone(&counters), Arc::clone(&set_aside)),
                    )
                })
                .collect();
            let mut feeder = Feeder::new(readers.len(), config.lateness, config.resolution.ns());
            let mut aside = Vec::new();
            let mut admitted: Vec<Trade> = Vec::with_capacity(FEED);
            while let Some(i) = feeder.laggard() {
                let (id, rx) = &readers[i];
                // A reader that is gone has sent everything it had.
                let Ok(chunk) = rx.recv() else {
                    feeder.finish(i);
                    continue;
                };
                for part in chunk.trades.chunks(FEED) {
                    for &(position, trade) in part {
                        match feeder.admit(i, trade.time_ns) {
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
                    input.send_batch(&mut admitted);
                    admitted.clear();
                    feeder.release(&mut input, &probe, worker);
                }
            }
            drop(input);
            while worker.step_or_park(None) {}
            set_aside
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .append(&mut aside);
            counters.workers_done.fetch_add(1, Ordering::Relaxed);
        },
    )
    .map_err(|e| anyhow::anyhow!("starting timely workers: {e}"))?;

    let bar = ProgressBar::new(total_bytes.max(1));
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:40} {percent:>3}% {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    while counters.workers_done.load(Ordering::Relaxed) < workers {
        let read: u64 = progress.iter().map(|b| b.load(Ordering::Relaxed)).sum();
        let ticks = counters.ticks.load(Ordering::Relaxed);
        let rate = ticks as f64 / started.elapsed().as_secs_f64().max(1e-9);
        bar.set_position(read.min(total_bytes));
        bar.set_message(format!("{ticks} ticks, {:.0}k ticks/s", rate / 1e3));
        std::thread::sleep(Duration::from_millis(10));
    }
    for result in guards.join() {
        result.map_err(|e| anyhow::anyhow!("a timely worker failed: {e}"))?;
    }
    // The workers are gone, and with them every sender: the writer drains and ends.
    writer
        .join()
        .map_err(|_| anyhow::anyhow!("the output writer panicked"))?;
    bar.finish_and_clear();

    let mut aside = std::mem::take(&mut *set_aside.lock().unwrap_or_else(|e| e.into_inner()));
    aside.sort_by_key(|a| (a.input, a.position));
    for a in &aside {
        let target = if a.input > usize::MAX / 2 {
            &errors_out
        } else {
            &late_out
        };
        if let Some(w) = target {
            writeln!(lock(w), "{}", a.line)?;
        }
    }
    for w in [
        Some(&stats_out),
        bars_out.as_ref(),
        events_out.as_ref(),
        late_out.as_ref(),
        errors_out.as_ref(),
    ]
    .into_iter()
    .flatten()
    {
        lock(w).flush().context("flushing outputs")?;
    }

    let elapsed = started.elapsed().as_secs_f64();
    let c = &counters;
    let ticks = c.ticks.load(Ordering::Relaxed);
    let rejected = c.rejected.load(Ordering::Relaxed);
    if rejected > 0 && args.errors_out.is_none() {
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
    Ok(())
}

/// Reads an `--alerts` file: a JSON array of alert specs, each applying from the start.
fn load_alerts(path: &Path, windows: &[gostocks_core::Span]) -> anyhow::Result<Vec<AlertRule>> {
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
            spec.to_rule(id, 0, windows)
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
