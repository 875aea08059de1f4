//! `gostocks analyze`: the analytics dataflow over recorded files, outputs as JSON lines.

use std::cell::RefCell;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use gostocks_connectors::file::{Opener, Part, Record, Rejected, TickFile, split};
use gostocks_connectors::limits::MAX_RAW_BYTES;
use gostocks_core::Trade;
use gostocks_core::alerts::{AlertEvent, AlertRule, AlertSpec};
use gostocks_core::pipeline::{Inputs, build};
use gostocks_core::stats::{AnalyticsConfig, BarRow, StatsRow};
use gostocks_core::watermark::{Late, Watermark};
use indicatif::{ProgressBar, ProgressStyle};
use timely::dataflow::operators::vec::Broadcast;
use timely::dataflow::operators::{Exchange, Input as _, Inspect};
use timely::dataflow::{InputHandleVec, ProbeHandle};

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
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct SetAside {
    /// Rejected (for `--errors-out`) rather than late (for `--late-out`).
    rejected: bool,
    input: usize,
    /// The part of the input, and the record's 1-based position in it.
    part: usize,
    position: u64,
    line: String,
}

impl SetAside {
    /// The order of the file it goes to. The rejected records of later inputs come first (as
    /// they always have), each input's in record order.
    fn key(&self) -> (bool, usize, usize, u64) {
        let input = if self.rejected {
            usize::MAX - self.input
        } else {
            self.input
        };
        (self.rejected, input, self.part, self.position)
    }
}

/// What a reader thread hands over: valid trades of a part with their record positions in it
/// (1-based), in file order; `last` on the part's last chunk.
struct Chunk {
    part: usize,
    trades: Vec<(u64, Trade)>,
    last: bool,
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

/// The size of the parts an input is cut into when several workers read it: a few per worker,
/// so that every worker's reader is busy from the start, and small enough that a part held in
/// memory while its greatest time is published (see [`spawn_reader`]) stays small.
fn part_bytes(len: u64, peers: usize) -> u64 {
    (len / (peers as u64 * 8)).clamp(1 << 20, PART_BYTES_MAX)
}

/// The largest part (see [`part_bytes`]).
const PART_BYTES_MAX: u64 = 1 << 20;

/// The worker that reads part `part` of input `input`: parts go round the workers, each input
/// starting at a different one (so that files that are one part each spread out as well).
fn owner(input: usize, part: usize, peers: usize) -> usize {
    (input + part) % peers
}

/// What a worker's reader threads have found out for the other workers: the greatest event
/// time of a part, `(input, part, max)`, as soon as the part is parsed.
#[derive(Default)]
struct Outbox {
    maxima: Mutex<Vec<(usize, usize, Option<u64>)>>,
}

/// Totals of one worker and its readers, gathered on worker 0 for the summary.
#[derive(Clone, Copy, Debug, Default, serde::Serialize, serde::Deserialize)]
struct Tally {
    ticks: u64,
    rejected: u64,
    late: u64,
    skipped: u64,
}

/// What every worker sends worker 0 at its end.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
enum Report {
    SetAside(SetAside),
    Tally(Tally),
}

/// Reads, parses and validates the parts `parts` of an input on a thread of its own. Rejected
/// records are counted and set aside here; valid trades go out in chunks, each part's ending
/// with `last`. A part that a later part waits for (every part but the input's last) is parsed
/// whole first, and its greatest event time published on `outbox` (and the worker woken)
/// before any of it is sent: the other workers need it to read on, whatever this worker is
/// doing. The channel closes after the last part.
fn spawn_reader(
    input: usize,
    source: &Input,
    parts: Vec<usize>,
    reader: Reader,
) -> std::sync::mpsc::Receiver<Chunk> {
    let (tx, rx) = std::sync::mpsc::sync_channel(CHUNKS_AHEAD);
    let (opener, path, all) = (
        source.opener.clone(),
        source.path.clone(),
        source.parts.clone(),
    );
    let read_bytes = Arc::clone(&source.read);
    let read = move || {
        let last_part = all.len() - 1;
        for p in parts {
            let mut file = match opener.open_part(&path, &all[p], Arc::clone(&read_bytes)) {
                Ok(file) => file,
                Err(e) => {
                    // Its trades are missing: the run fails at its end, saying why.
                    reader.fail(format!("--input {}: {e}", path.display()));
                    reader.publish(input, p, None);
                    let _ = tx.send(Chunk {
                        part: p,
                        trades: Vec::new(),
                        last: true,
                    });
                    continue;
                }
            };
            let whole = p != last_part;
            let mut trades = Vec::with_capacity(CHUNK);
            let mut max: Option<u64> = None;
            let mut position = 0u64;
            let mut sent_all = true;
            while let Some(record) = file.next_record() {
                position += 1;
                // A tick that decoded but is invalid is refused by the file, which knows its
                // line and text.
                let trade = record.and_then(|record| match record {
                    Record::Trade(trade) => Ok(trade),
                    Record::Tick(tick) => tick.validate().map_err(|why| file.refuse(why)),
                });
                match trade {
                    Ok(trade) => {
                        max = max.max(Some(trade.time_ns));
                        trades.push((position, trade));
                        if !whole && trades.len() == CHUNK {
                            let full = std::mem::replace(&mut trades, Vec::with_capacity(CHUNK));
                            if tx
                                .send(Chunk {
                                    part: p,
                                    trades: full,
                                    last: false,
                                })
                                .is_err()
                            {
                                sent_all = false;
                                break;
                            }
                        }
                    }
                    Err(rejected_record) => reader.reject(input, p, position, &rejected_record),
                }
            }
            reader.skipped(file.counts().skipped);
            if !sent_all {
                return;
            }
            if whole {
                reader.publish(input, p, max);
            }
            // The part's trades, a chunk at a time (moved, not copied); the last one, empty
            // or not, says so.
            loop {
                let rest = if trades.len() > CHUNK {
                    trades.split_off(CHUNK)
                } else {
                    Vec::new()
                };
                let last = rest.is_empty();
                let chunk = std::mem::replace(&mut trades, rest);
                if tx
                    .send(Chunk {
                        part: p,
                        trades: chunk,
                        last,
                    })
                    .is_err()
                {
                    return;
                }
                if last {
                    break;
                }
            }
        }
    };
    if let Err(error) = std::thread::Builder::new()
        .name(format!("gostocks-reader-{input}"))
        .spawn(read)
    {
        tracing::error!(%error, "starting a reader thread");
    }
    rx
}

/// A reader thread's ties to its worker.
#[derive(Clone)]
struct Reader {
    counters: Arc<Counters>,
    tally: Arc<Mutex<Tally>>,
    set_aside: Arc<Mutex<Vec<SetAside>>>,
    outbox: Arc<Outbox>,
    failure: Arc<Mutex<Option<String>>>,
    /// The worker's thread, woken when there is something in the outbox.
    worker: std::thread::Thread,
}

impl Reader {
    fn reject(&self, input: usize, part: usize, position: u64, rejected: &Rejected) {
        self.counters.rejected.fetch_add(1, Ordering::Relaxed);
        lock(&self.tally).rejected += 1;
        lock(&self.set_aside).push(SetAside {
            rejected: true,
            input,
            part,
            position,
            line: error_line(input, rejected),
        });
    }

    fn skipped(&self, n: u64) {
        self.counters.skipped.fetch_add(n, Ordering::Relaxed);
        lock(&self.tally).skipped += n;
    }

    fn publish(&self, input: usize, part: usize, max: Option<u64>) {
        lock(&self.outbox.maxima).push((input, part, max));
        self.worker.unpark();
    }

    fn fail(&self, why: String) {
        lock(&self.failure).get_or_insert(why);
    }
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

/// One `--input`, opened (its format detected, its header read) and cut into parts.
struct Input {
    path: std::path::PathBuf,
    opener: Opener,
    parts: Vec<Part>,
    /// Bytes read by this process's readers of it.
    read: Arc<AtomicU64>,
}

/// What every worker shares.
struct Shared {
    config: AnalyticsConfig,
    counters: Arc<Counters>,
    /// This process's late and rejected records; on process 0, at the end, everyone's.
    set_aside: Arc<Mutex<Vec<SetAside>>>,
    /// Worker 0's totals of every worker (the cluster's).
    tallies: Mutex<Tally>,
    failure: Arc<Mutex<Option<String>>>,
    inputs: Vec<Input>,
    rules: Vec<AlertRule>,
    /// To the writer thread (process 0); taken away at the end, so that the writer drains and
    /// ends.
    rows: Mutex<Option<std::sync::mpsc::SyncSender<Rows>>>,
    /// The writer's emptied vectors, back to the workers.
    spares: Arc<Spares>,
    with_bars: bool,
    with_events: bool,
    /// Processes in the cluster.
    processes: usize,
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
    let timely_config = crate::cluster::timely_config(args.workers, &args.cluster)?;
    let peers = args.workers * args.cluster.processes;
    // Process 0 writes every output; the others compute their share and write nothing.
    let writes = args.cluster.process == 0;
    // Every input is opened first, so a missing file or an unknown format fails before any work.
    let inputs = open_inputs(&args, peers)?;
    let files = writes.then(|| Files::create(&args)).transpose()?;
    let rules = match &args.alerts {
        Some(path) => load_alerts(path, &config)?,
        None => Vec::new(),
    };
    // The alerts judged on quotes, and where their events wait to be merged into the rest.
    let quote_rules: Vec<AlertRule> = rules
        .iter()
        .filter(|r| r.condition.on_quotes())
        .cloned()
        .collect();
    let quote_events = match (&args.events_out, quote_rules.is_empty()) {
        (Some(events), false) => Some(events.with_extension("quotes.tmp")),
        _ => None,
    };
    // The quotes of the inputs run on a thread of their own (process 0 only).
    let quotes = match (args.quotes_out.is_some() || quote_events.is_some(), writes) {
        (true, true) => {
            let quote_files = crate::quotes::open(&args.input, args.max_record_bytes)?;
            if quote_files.is_empty() && quote_events.is_some() {
                eprintln!(
                    "warning: --alerts has spread_above alerts, but no input carries quotes (a LOBSTER order book beside its message file, Binance bookTicker or Alpaca \"q\" frames): they cannot fire"
                );
            }
            let outputs = crate::quotes::QuoteOutputs {
                stats: args.quotes_out.clone(),
                mid_bars: args.mid_bars_out.clone(),
                alerts: quote_events.clone().map(|path| (quote_rules, path)),
            };
            let config = config.clone();
            Some(
                std::thread::Builder::new()
                    .name("gostocks-quotes".into())
                    .spawn(move || crate::quotes::run(quote_files, &config, &outputs))
                    .context("starting the quotes thread")?,
            )
        }
        _ => None,
    };
    let read: Vec<Arc<AtomicU64>> = inputs.iter().map(|i| Arc::clone(&i.read)).collect();
    // This process's share of the bytes, for its progress bar.
    let first_worker = args.cluster.process * args.workers;
    let total: u64 = inputs
        .iter()
        .enumerate()
        .flat_map(|(i, input)| {
            input.parts.iter().enumerate().filter_map(move |(p, part)| {
                let w = owner(i, p, peers);
                (first_worker..first_worker + args.workers)
                    .contains(&w)
                    .then_some(part.end - part.start)
            })
        })
        .sum();
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
    let writer = files
        .as_ref()
        .map(|files| spawn_writer(rows_rx, files, &config, Arc::clone(&spares)))
        .transpose()?;
    let shared = Arc::new(Shared {
        counters: Arc::default(),
        set_aside: Arc::default(),
        tallies: Mutex::default(),
        failure: Arc::default(),
        inputs,
        rules,
        rows: Mutex::new(writes.then_some(rows_tx)),
        spares,
        // From the flags, not the files: every process of a cluster must build the same
        // dataflow (only process 0 has files).
        with_bars: args.bars_out.is_some(),
        with_events: args.events_out.is_some(),
        processes: args.cluster.processes,
        config,
    });
    let guards = {
        let shared = Arc::clone(&shared);
        timely::execute(timely_config, move |worker| run_worker(worker, &shared))
            .map_err(|e| anyhow::anyhow!("starting timely workers: {e}"))?
    };
    // The progress bar runs until the workers are done, or one of them has failed.
    let stop = Arc::new(AtomicBool::new(false));
    let progress = {
        let (counters, stop, workers) = (
            Arc::clone(&shared.counters),
            Arc::clone(&stop),
            args.workers,
        );
        std::thread::spawn(move || show_progress(&counters, &read, total, workers, started, &stop))
    };
    // In a cluster, a process that dies takes the others down: timely's network threads
    // panic on the lost connection, and joining them panics in turn. Caught here, it is an
    // error that says what to do.
    let results = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| guards.join()));
    stop.store(true, Ordering::Relaxed);
    let _ = progress.join();
    let lost = || {
        anyhow::anyhow!(
            "process {} of {}: the cluster lost a process (a connection closed); timely does not re-form a cluster, so start every process again",
            args.cluster.process,
            args.cluster.processes
        )
    };
    for result in results.map_err(|_| lost())? {
        result.map_err(|e| {
            if args.cluster.processes > 1 {
                lost()
            } else {
                anyhow::anyhow!("a timely worker failed: {e}")
            }
        })?;
    }
    // The workers are gone, and with them every sender but the shared one: drop it, and the
    // writer drains and ends.
    drop(lock(&shared.rows).take());
    if let Some(writer) = writer {
        writer
            .join()
            .map_err(|_| anyhow::anyhow!("the output writer panicked"))?;
    }
    if let Some(why) = lock(&shared.failure).take() {
        anyhow::bail!("{why}");
    }
    let Some(files) = files else {
        eprintln!(
            "process {} of {}: done in {:.2}s; process 0 wrote the outputs",
            args.cluster.process,
            args.cluster.processes,
            started.elapsed().as_secs_f64()
        );
        return Ok(());
    };
    write_set_aside(&shared.set_aside, &files)?;
    let quotes = quotes
        .map(|q| {
            q.join()
                .map_err(|_| anyhow::anyhow!("the quotes thread panicked"))?
        })
        .transpose()?;
    if let Some(report) = &quotes {
        for (lines, target) in [
            (&report.rejected, &files.errors),
            (&report.late, &files.late),
        ] {
            if let Some(w) = target {
                let mut w = lock(w);
                for line in lines {
                    writeln!(w, "{line}")?;
                }
            }
        }
    }
    files.flush()?;
    if let (Some(from_quotes), Some(events)) = (&quote_events, &args.events_out) {
        merge_events(events, from_quotes)?;
    }
    // The cluster's totals, as worker 0 gathered them.
    let tally = *lock(&shared.tallies);
    let c = &shared.counters;
    c.ticks.store(tally.ticks, Ordering::Relaxed);
    c.rejected.store(tally.rejected, Ordering::Relaxed);
    c.late.store(tally.late, Ordering::Relaxed);
    c.skipped.store(tally.skipped, Ordering::Relaxed);
    summary(c, started, args.errors_out.is_none());
    if let Some(report) = quotes {
        eprintln!("{}", report.line());
    }
    Ok(())
}

/// Opens every `--input` and cuts each into parts for `peers` workers (one part for one
/// worker, or for a gzip file).
fn open_inputs(args: &AnalyzeArgs, peers: usize) -> anyhow::Result<Vec<Input>> {
    args.input
        .iter()
        .map(|path| {
            let context = || format!("--input {}", path.display());
            let file = TickFile::open_core(path, args.format, args.max_record_bytes)
                .with_context(context)?;
            let len = std::fs::metadata(path).with_context(context)?.len();
            let parts = if peers > 1 {
                split(path, args.max_record_bytes, part_bytes(len, peers)).with_context(context)?
            } else {
                vec![Part::whole(len)]
            };
            tracing::info!(path = %path.display(), format = %file.format(), parts = parts.len(), "reading");
            Ok(Input {
                path: path.clone(),
                opener: file.opener(),
                parts,
                read: Arc::default(),
            })
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

/// The greatest event times of the parts of every input, as the workers publish them: part
/// `p` of an input can be read once every part before it is known.
struct Carries {
    /// Per input, per part: `Some(max)` once known.
    maxima: Vec<Vec<Option<Option<u64>>>>,
    /// Per input: `prefix[k]` is the greatest time of parts `0..k`, for every `k` up to the
    /// first part not known yet.
    prefix: Vec<Vec<Option<u64>>>,
}

impl Carries {
    fn new(inputs: &[Input]) -> Carries {
        Carries {
            maxima: inputs.iter().map(|i| vec![None; i.parts.len()]).collect(),
            prefix: inputs.iter().map(|_| vec![None]).collect(),
        }
    }

    fn learn(&mut self, (input, part, max): (usize, usize, Option<u64>)) {
        let (maxima, prefix) = (&mut self.maxima[input], &mut self.prefix[input]);
        maxima[part] = Some(max);
        while let Some(Some(next)) = maxima.get(prefix.len() - 1) {
            let before = prefix[prefix.len() - 1];
            prefix.push(before.max(*next));
        }
    }

    /// The greatest time of parts `0..part`, once all of them are known.
    fn before(&self, input: usize, part: usize) -> Option<Option<u64>> {
        self.prefix[input].get(part).copied()
    }

    /// The greatest time of the longest run of known parts from the start, up to `part`.
    fn known_before(&self, input: usize, part: usize) -> Option<u64> {
        let prefix = &self.prefix[input];
        prefix[part.min(prefix.len() - 1)]
    }
}

/// A worker's reading of one input: the parts it owns, the one being read and its watermark.
struct Feed {
    input: usize,
    rx: std::sync::mpsc::Receiver<Chunk>,
    /// The parts this worker reads, ascending, and how many of them it has finished.
    mine: Vec<usize>,
    next: usize,
    /// The watermark of the part being read: it starts from the greatest time of every part
    /// before, so that a tick is late exactly when it would be in one reading of the file.
    current: Option<Watermark>,
}

impl Feed {
    fn done(&self) -> bool {
        self.next == self.mine.len()
    }

    /// The least grid time a tick this feed has still to send can have.
    fn input_time(&self, carries: &Carries, lateness: u64, resolution: u64) -> u64 {
        match &self.current {
            Some(w) => w.input_time(),
            None => {
                let seen = carries.known_before(self.input, self.mine[self.next]);
                Watermark::resumed(lateness, resolution, seen).input_time()
            }
        }
    }

    /// Whether the next chunk can be read: the part is under way, or every part before it is
    /// known.
    fn ready(&self, carries: &Carries) -> bool {
        self.current.is_some() || carries.before(self.input, self.mine[self.next]).is_some()
    }
}

/// The side dataflow of a worker's reading: the parts' greatest times go to every worker, and
/// at the end the late and rejected records and the totals go to worker 0.
struct Side {
    maxima: InputHandleVec<u64, (usize, usize, Option<u64>)>,
    reports: InputHandleVec<u64, Report>,
    carries: Rc<RefCell<Carries>>,
    outbox: Arc<Outbox>,
}

impl Side {
    /// Sends what this worker's readers have published to every worker.
    fn pump(&mut self) {
        let maxima = std::mem::take(&mut *lock(&self.outbox.maxima));
        if !maxima.is_empty() {
            for m in maxima {
                self.maxima.send(m);
            }
            self.maxima.flush();
        }
    }
}

/// One timely worker: builds the pipeline, hands its outputs on in order, and reads the parts of
/// the inputs it owns, each input's on a reader thread of its own.
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
    let carries = Rc::new(RefCell::new(Carries::new(&shared.inputs)));
    let gathered: Rc<RefCell<Vec<Report>>> = Rc::default();
    let mut side = {
        let (learn, gather) = (Rc::clone(&carries), Rc::clone(&gathered));
        worker.dataflow::<u64, _, _>(|scope| {
            let (maxima, published) = scope.new_input::<Vec<(usize, usize, Option<u64>)>>();
            published
                .broadcast()
                .inspect(move |m| learn.borrow_mut().learn(*m));
            let (reports, sent) = scope.new_input::<Vec<Report>>();
            sent.exchange(|_| 0)
                .inspect(move |r| gather.borrow_mut().push(r.clone()));
            Side {
                maxima,
                reports,
                carries: Rc::clone(&carries),
                outbox: Arc::default(),
            }
        })
    };
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
    let tally = Arc::new(Mutex::new(Tally::default()));
    let set_aside: Arc<Mutex<Vec<SetAside>>> = Arc::default();
    let reader = Reader {
        counters: Arc::clone(counters),
        tally: Arc::clone(&tally),
        set_aside: Arc::clone(&set_aside),
        outbox: Arc::clone(&side.outbox),
        failure: Arc::clone(&shared.failure),
        worker: std::thread::current(),
    };
    let mut feeds: Vec<Feed> = shared
        .inputs
        .iter()
        .enumerate()
        .filter_map(|(i, input)| {
            let mine: Vec<usize> = (0..input.parts.len())
                .filter(|&p| owner(i, p, peers) == index)
                .collect();
            (!mine.is_empty()).then(|| Feed {
                input: i,
                rx: spawn_reader(i, input, mine.clone(), reader.clone()),
                mine,
                next: 0,
                current: None,
            })
        })
        .collect();
    let config = &shared.config;
    let (lateness, resolution) = (config.lateness, config.resolution.ns());
    let mut aside = Vec::new();
    let mut admitted: Vec<Trade> = Vec::with_capacity(STEP);
    let mut local = Tally::default();
    let mut pace = Pace::new(shared.processes);
    loop {
        side.pump();
        let live: Vec<usize> = (0..feeds.len()).filter(|&f| !feeds[f].done()).collect();
        if live.is_empty() {
            break;
        }
        // The laggard first, to keep inputs in step; if it waits for other workers' parts,
        // any input that can go on.
        let chosen = {
            let carries = side.carries.borrow();
            let mut by_time = live.clone();
            by_time.sort_by_key(|&f| feeds[f].input_time(&carries, lateness, resolution));
            by_time.into_iter().find(|&f| feeds[f].ready(&carries))
        };
        let Some(f) = chosen else {
            // Every input waits for a part of another worker: take part in the dataflow (and
            // in the side dataflow, which brings the parts' times) until one arrives.
            advance(
                &mut trades,
                &feeds,
                &side.carries.borrow(),
                lateness,
                resolution,
            );
            worker.step_or_park(Some(Duration::from_millis(5)));
            continue;
        };
        let feed = &mut feeds[f];
        if feed.current.is_none() {
            let before = side
                .carries
                .borrow()
                .before(feed.input, feed.mine[feed.next]);
            feed.current = Some(Watermark::resumed(lateness, resolution, before.flatten()));
        }
        let chunk = loop {
            match feed.rx.recv_timeout(Duration::from_millis(1)) {
                Ok(chunk) => break Some(chunk),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    side.pump();
                    worker.step();
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break None,
            }
        };
        let Some(chunk) = chunk else {
            // The reader is gone (it failed to start): nothing more comes from it.
            feed.next = feed.mine.len();
            continue;
        };
        debug_assert_eq!(chunk.part, feed.mine[feed.next]);
        let input = feed.input;
        for part in chunk.trades.chunks(STEP) {
            let watermark = feeds[f].current.as_mut().expect("a part under way");
            for &(position, trade) in part {
                match watermark.admit(trade.time_ns) {
                    Ok(_) => admitted.push(trade),
                    Err(late) => {
                        counters.late.fetch_add(1, Ordering::Relaxed);
                        local.late += 1;
                        aside.push(SetAside {
                            rejected: false,
                            input,
                            part: chunk.part,
                            position,
                            line: late_line(&trade, &late),
                        });
                    }
                }
            }
            counters
                .ticks
                .fetch_add(admitted.len() as u64, Ordering::Relaxed);
            local.ticks += admitted.len() as u64;
            // One message per step. A sent container comes back holding anything.
            trades.send_batch(&mut admitted);
            admitted.clear();
            release(
                &mut trades,
                &probe,
                &mut side,
                &feeds,
                worker,
                &mut pace,
                lateness,
                resolution,
            );
        }
        if chunk.last {
            let feed = &mut feeds[f];
            feed.current = None;
            feed.next += 1;
            release(
                &mut trades,
                &probe,
                &mut side,
                &feeds,
                worker,
                &mut pace,
                lateness,
                resolution,
            );
        }
    }
    drop(trades);
    // Worker 0 gathers every worker's late and rejected records and totals.
    {
        let mut tally = *lock(&tally);
        tally.ticks += local.ticks;
        tally.late += local.late;
        let reports = std::mem::take(&mut *lock(&set_aside))
            .into_iter()
            .chain(aside)
            .map(Report::SetAside)
            .chain(std::iter::once(Report::Tally(tally)));
        for report in reports {
            side.reports.send(report);
        }
    }
    let Side {
        maxima, reports, ..
    } = side;
    drop((maxima, reports));
    while worker.step_or_park(None) {}
    for report in gathered.borrow_mut().drain(..) {
        match report {
            Report::SetAside(a) => lock(&shared.set_aside).push(a),
            Report::Tally(t) => {
                let mut all = lock(&shared.tallies);
                all.ticks += t.ticks;
                all.rejected += t.rejected;
                all.late += t.late;
                all.skipped += t.skipped;
            }
        }
    }
    counters.workers_done.fetch_add(1, Ordering::Relaxed);
}

/// Advances the worker's input to the least time any of its feeds can still send.
fn advance(
    trades: &mut InputHandleVec<u64, Trade>,
    feeds: &[Feed],
    carries: &Carries,
    lateness: u64,
    resolution: u64,
) {
    let least = feeds
        .iter()
        .filter(|f| !f.done())
        .map(|f| f.input_time(carries, lateness, resolution))
        .min();
    // With every feed done, the input is dropped by the caller.
    if let Some(t) = least.filter(|t| t > trades.time()) {
        trades.advance_to(t);
    }
}

/// How far a worker's input may run ahead of its dataflow: the input times of the last steps
/// sent, and how many of them may be in flight.
struct Pace {
    sent: std::collections::VecDeque<u64>,
    lag: usize,
}

impl Pace {
    /// One step in flight in one process (steps of [`STEP`] trades stay in the core's cache,
    /// and more in flight measured no faster); in a cluster, [`CLUSTER_LAG`] (each step's
    /// progress crosses the network and back, which one step in flight would wait for every
    /// time).
    fn new(processes: usize) -> Pace {
        let lag = if processes > 1 { CLUSTER_LAG } else { 1 };
        Pace {
            sent: std::collections::VecDeque::with_capacity(lag),
            lag,
        }
    }
}

/// Steps a worker of a cluster may have in flight.
const CLUSTER_LAG: usize = 16;

/// After a step was sent: advances the input, then steps the worker until the dataflow has
/// caught up with where the input was [`Pace::lag`] steps ago, so that memory stays bounded.
/// Meanwhile, what this worker's readers publish goes out: another worker may be waiting for
/// it to move its own input on.
#[allow(clippy::too_many_arguments)]
fn release(
    trades: &mut InputHandleVec<u64, Trade>,
    probe: &ProbeHandle<u64>,
    side: &mut Side,
    feeds: &[Feed],
    worker: &mut timely::worker::Worker,
    pace: &mut Pace,
    lateness: u64,
    resolution: u64,
) {
    pace.sent.push_back(*trades.time());
    advance(trades, feeds, &side.carries.borrow(), lateness, resolution);
    if pace.sent.len() < pace.lag {
        return;
    }
    let Some(before) = pace.sent.pop_front() else {
        return;
    };
    while probe.less_than(&before) {
        side.pump();
        // Parks while other workers hold the frontier back; their messages (or this worker's
        // readers) wake it.
        worker.step_or_park(Some(Duration::from_millis(5)));
        advance(trades, feeds, &side.carries.borrow(), lateness, resolution);
    }
}

/// Shows a progress bar on a terminal until every worker is done.
fn show_progress(
    counters: &Counters,
    read: &[Arc<AtomicU64>],
    total: u64,
    workers: usize,
    started: Instant,
    stop: &AtomicBool,
) {
    let bar = ProgressBar::new(total.max(1));
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:40} {percent:>3}% {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    while counters.workers_done.load(Ordering::Relaxed) < workers && !stop.load(Ordering::Relaxed) {
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
    aside.sort_by_key(SetAside::key);
    for a in &aside {
        let target = if a.rejected {
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

/// Merges the spread alert events of `from_quotes` into `events` (both in `(time, symbol,
/// seq, alert id)` order), then removes `from_quotes`. Streams both: memory stays a line each.
fn merge_events(events: &Path, from_quotes: &Path) -> anyhow::Result<()> {
    use std::io::BufRead;
    type Key = (u64, String, u64, String);
    fn key(line: &str) -> anyhow::Result<Key> {
        #[derive(serde::Deserialize)]
        struct Event {
            time_ns: u64,
            symbol: String,
            seq: u64,
            alert_id: String,
        }
        let e: Event = serde_json::from_str(line).context("reading back an alert event")?;
        Ok((e.time_ns, e.symbol, e.seq, e.alert_id))
    }
    let open = |p: &Path| -> anyhow::Result<_> {
        let file = std::fs::File::open(p).with_context(|| format!("reading {}", p.display()))?;
        Ok(std::io::BufReader::new(file).lines())
    };
    let merged = events.with_extension("merging.tmp");
    {
        let file = std::fs::File::create(&merged)
            .with_context(|| format!("creating {}", merged.display()))?;
        let mut out = std::io::BufWriter::new(file);
        let (mut a, mut b) = (open(events)?, open(from_quotes)?);
        let next = |it: &mut std::io::Lines<_>| -> anyhow::Result<Option<(Key, String)>> {
            match it.next().transpose()? {
                Some(line) => Ok(Some((key(&line)?, line))),
                None => Ok(None),
            }
        };
        let (mut x, mut y) = (next(&mut a)?, next(&mut b)?);
        loop {
            let take_x = match (&x, &y) {
                (None, None) => break,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (Some((kx, _)), Some((ky, _))) => kx <= ky,
            };
            let (slot, it) = if take_x {
                (&mut x, &mut a)
            } else {
                (&mut y, &mut b)
            };
            if let Some((_, line)) = slot.take() {
                writeln!(out, "{line}")?;
            }
            *slot = next(it)?;
        }
        out.flush()?;
    }
    std::fs::rename(&merged, events).with_context(|| format!("writing {}", events.display()))?;
    std::fs::remove_file(from_quotes)
        .with_context(|| format!("removing {}", from_quotes.display()))?;
    Ok(())
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
