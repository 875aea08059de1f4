//! `gostocks analyze --quotes-out`: the quotes of the inputs that carry them (LOBSTER order
//! books beside their message files, Binance `@bookTicker` frames, Alpaca `"q"` messages)
//! through the [`QuoteEngine`], on a thread of its own beside the trade dataflow.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use gostocks_connectors::file::{QuoteFile, QuoteRejected};
use gostocks_connectors::limits::MAX_RAW_BYTES;
use gostocks_core::alerts::{AlertEvent, AlertRule};
use gostocks_core::quotes::{MidBarRow, Quote, QuoteEngine, QuoteStatsRow};
use gostocks_core::stats::AnalyticsConfig;
use gostocks_core::watermark::Late;

/// Quotes read from one input before the next choice of input, and between two advances.
const TURN: usize = 8192;

/// What `--quotes-out` did.
pub struct QuoteReport {
    /// Inputs that carried quotes.
    pub inputs: usize,
    /// Quotes read and admitted.
    pub quotes: u64,
    /// Records refused, as `--errors-out` lines.
    pub rejected: Vec<String>,
    /// Quotes beyond the lateness, as `--late-out` lines.
    pub late: Vec<String>,
    /// Rows and bars written.
    pub rows: u64,
    /// Mid bars written.
    pub bars: u64,
    /// Alert events written.
    pub events: u64,
    /// Seconds from the first read to the last write.
    pub seconds: f64,
}

impl QuoteReport {
    /// The summary line.
    pub fn line(&self) -> String {
        format!(
            "analyzed {} quotes from {} inputs ({} rejected, {} late) in {:.2}s: {:.0} quotes/s; wrote {} quote stats rows, {} mid bars, {} spread alert events",
            self.quotes,
            self.inputs,
            self.rejected.len(),
            self.late.len(),
            self.seconds,
            self.quotes as f64 / self.seconds.max(1e-9),
            self.rows,
            self.bars,
            self.events
        )
    }
}

/// Where the quote outputs go.
pub struct QuoteOutputs {
    /// Quote statistics, JSON lines.
    pub stats: Option<PathBuf>,
    /// Mid bars, JSON lines.
    pub mid_bars: Option<PathBuf>,
    /// The alerts judged on quotes (`spread_above`), applying from the start, and where their
    /// events go (JSON lines in `(time, symbol, seq, alert id)` order).
    pub alerts: Option<(Vec<AlertRule>, PathBuf)>,
}

/// Opens the quotes of `inputs` (those that have none are passed over); fails on a file that
/// cannot be read, before any work.
pub fn open(
    inputs: &[PathBuf],
    max_record_bytes: usize,
) -> anyhow::Result<Vec<(usize, QuoteFile)>> {
    let mut files = Vec::new();
    for (i, path) in inputs.iter().enumerate() {
        if let Some(file) = QuoteFile::open(path, max_record_bytes)
            .with_context(|| format!("opening the quotes of {}", path.display()))?
        {
            files.push((i, file));
        }
    }
    Ok(files)
}

fn create(path: &Path) -> anyhow::Result<std::io::BufWriter<std::fs::File>> {
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    Ok(std::io::BufWriter::with_capacity(1 << 20, file))
}

/// Runs the quotes of `files` (input index, file) through one engine and writes the outputs.
pub fn run(
    mut files: Vec<(usize, QuoteFile)>,
    config: &AnalyticsConfig,
    outputs: &QuoteOutputs,
) -> anyhow::Result<QuoteReport> {
    let started = Instant::now();
    let mut stats_out = outputs.stats.as_deref().map(create).transpose()?;
    let mut bars_out = outputs.mid_bars.as_deref().map(create).transpose()?;
    let mut events_out = match &outputs.alerts {
        Some((_, path)) => Some(create(path)?),
        None => None,
    };
    let window_labels: Vec<String> = config.windows.iter().map(ToString::to_string).collect();
    let bar_labels: Vec<String> = config.bars.iter().map(ToString::to_string).collect();
    let bar_ns: Vec<u64> = config.bars.iter().map(|b| b.ns()).collect();
    let mut engine = QuoteEngine::new(config.clone(), files.len());
    for rule in outputs.alerts.iter().flat_map(|(rules, _)| rules) {
        engine.change_rule(rule.clone(), 0, 1);
    }
    let mut report = QuoteReport {
        inputs: files.len(),
        quotes: 0,
        rejected: Vec::new(),
        late: Vec::new(),
        rows: 0,
        bars: 0,
        events: 0,
        seconds: 0.0,
    };
    let mut open: Vec<bool> = vec![true; files.len()];
    let mut line = String::new();
    let mut write = |engine_out: (Vec<QuoteStatsRow>, Vec<MidBarRow>),
                     events: Vec<AlertEvent>,
                     report: &mut QuoteReport|
     -> anyhow::Result<()> {
        let (rows, mut bars) = engine_out;
        if let Some(out) = stats_out.as_mut() {
            for row in &rows {
                line.clear();
                row.write_json(&mut line, &window_labels[usize::from(row.window)]);
                line.push('\n');
                out.write_all(line.as_bytes())?;
            }
            report.rows += rows.len() as u64;
        }
        if let Some(out) = events_out.as_mut() {
            for event in &events {
                line.clear();
                event.write_json(&mut line);
                line.push('\n');
                out.write_all(line.as_bytes())?;
            }
            report.events += events.len() as u64;
        }
        if let Some(out) = bars_out.as_mut() {
            // In order of end time, as the trade bars.
            bars.sort_by_key(|b| (b.start_ns + bar_ns[usize::from(b.bar)], b.symbol, b.bar));
            for bar in &bars {
                line.clear();
                bar.write_json(&mut line, &bar_labels[usize::from(bar.bar)]);
                line.push('\n');
                out.write_all(line.as_bytes())?;
            }
            report.bars += bars.len() as u64;
        }
        Ok(())
    };
    // The input whose reading is furthest behind in event time goes next, so that the engine's
    // frontier keeps up and the quotes held back stay about TURN per input (plus the lateness),
    // however far apart the inputs' times are.
    let mut reached: Vec<u64> = vec![0; files.len()];
    while let Some(k) = (0..files.len())
        .filter(|&k| open[k])
        .min_by_key(|&k| reached[k])
    {
        let (input, file) = &mut files[k];
        for _ in 0..TURN {
            match file.next() {
                None => {
                    open[k] = false;
                    engine.close(k);
                    break;
                }
                Some(Ok(quote)) => {
                    reached[k] = reached[k].max(quote.time_ns);
                    match engine.push(k, quote) {
                        Ok(()) => report.quotes += 1,
                        Err(late) => report.late.push(late_line(&quote, &late)),
                    }
                }
                Some(Err(rejected)) => report.rejected.push(error_line(*input, &rejected)),
            }
        }
        let out = engine.advance();
        write(out, engine.take_events(), &mut report)?;
    }
    let out = engine.advance_to(u64::MAX);
    write(out, engine.take_events(), &mut report)?;
    if let Some(out) = stats_out.as_mut() {
        out.flush().context("writing --quotes-out")?;
    }
    if let Some(out) = events_out.as_mut() {
        out.flush().context("writing the spread alert events")?;
    }
    if let Some(out) = bars_out.as_mut() {
        out.flush().context("writing --mid-bars-out")?;
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// A quote's line of `--errors-out`: as a tick's, with `"record":"quote"`.
fn error_line(input: usize, r: &QuoteRejected) -> String {
    // `raw` is an excerpt of at most MAX_RAW_BYTES already.
    debug_assert!(r.raw.len() <= MAX_RAW_BYTES);
    serde_json::json!({
        "record": "quote",
        "input": input,
        "line": r.line,
        "reason": r.reason.to_string(),
        "raw": r.raw,
    })
    .to_string()
}

/// A quote's line of `--late-out`.
fn late_line(q: &Quote, late: &Late) -> String {
    serde_json::json!({
        "record": "quote",
        "symbol": q.symbol.as_str(),
        "time_ns": q.time_ns,
        "seq": q.seq,
        "reason": late.to_string(),
    })
    .to_string()
}
