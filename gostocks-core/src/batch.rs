//! Driving the analytics over inputs that are already in memory or read by the caller: the
//! multi-input [`Watermarks`] and [`run_batch`].
//!
//! [`run_batch`] is the shortest way from trades to rows: it builds the pipeline on as many
//! workers as asked, feeds each input with its own watermark (so out-of-order ticks within the
//! lateness are placed exactly, and later ones are reported as late), and returns every output
//! sorted ([`BatchOutput`]), the same for any number of workers. A program that reads its
//! inputs as it goes uses [`Watermarks`] the same way with [`crate::pipeline::build`].

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use timely::dataflow::{InputHandleVec, ProbeHandle};

use crate::alerts::AlertEvent;
use crate::pipeline::{Inputs, RuleChange, build};
use crate::stats::{AnalyticsConfig, BarRow, StatsRow};
use crate::tick::Trade;
use crate::watermark::{Late, Watermark};

/// The watermarks of one worker's inputs. A worker's timely input may advance to
/// [`Watermarks::input_time`]: no admitted tick of any of its live inputs can fall below it.
#[derive(Clone, Debug)]
pub struct Watermarks {
    marks: Vec<Watermark>,
    live: Vec<bool>,
}

impl Watermarks {
    /// `inputs` inputs, each with the allowed `lateness`, on a grid of `resolution` (ns).
    pub fn new(inputs: usize, lateness: u64, resolution: u64) -> Watermarks {
        Watermarks {
            marks: vec![Watermark::new(lateness, resolution); inputs],
            live: vec![true; inputs],
        }
    }

    /// Admits a tick at `t` from `input`, or says why it is late.
    pub fn admit(&mut self, input: usize, t: u64) -> Result<u64, Late> {
        self.marks[input].admit(t)
    }

    /// Marks `input` exhausted: it no longer holds time back.
    pub fn finish(&mut self, input: usize) {
        self.live[input] = false;
    }

    /// The live input whose watermark is furthest behind (read it next to keep inputs in step).
    pub fn laggard(&self) -> Option<usize> {
        (0..self.marks.len())
            .filter(|&i| self.live[i])
            .min_by_key(|&i| self.marks[i].input_time())
    }

    /// The least grid time a future tick of a live input can have; `None` when all are done.
    pub fn input_time(&self) -> Option<u64> {
        (0..self.marks.len())
            .filter(|&i| self.live[i])
            .map(|i| self.marks[i].input_time())
            .min()
    }

    /// After a chunk was sent: advances `input` to [`Watermarks::input_time`], then steps `worker`
    /// until the dataflow has caught up with where the input was before, so that about one chunk
    /// is in flight and memory stays bounded.
    pub fn release(
        &self,
        input: &mut InputHandleVec<u64, Trade>,
        probe: &ProbeHandle<u64>,
        worker: &mut timely::worker::Worker,
    ) {
        let before = *input.time();
        if let Some(t) = self.input_time().filter(|&t| t > before) {
            input.advance_to(t);
        }
        while probe.less_than(&before) {
            // Parks while other workers hold the frontier back; their messages wake it.
            worker.step_or_park(None);
        }
    }
}

/// What [`run_batch`] computed, each in output order.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct BatchOutput {
    /// The stats changelog, sorted by `(time, symbol, window)`.
    pub stats: Vec<StatsRow>,
    /// Final bars, sorted by `(end time, symbol, bar)`.
    pub bars: Vec<BarRow>,
    /// Late ticks and why, in the order their inputs were read.
    pub late: Vec<(Trade, Late)>,
    /// Alert events, sorted by `(time, symbol, seq, alert id)`.
    pub events: Vec<AlertEvent>,
    /// How many rows of each output the dataflow produced, counted whether or not they were
    /// collected.
    pub counts: RowCounts,
}

/// What [`run_batch`] does with the rows the dataflow produces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outputs {
    /// Worker 0 gathers every output in order into the [`BatchOutput`].
    Collect,
    /// Worker 0 gathers every output in order, as `analyze` does to write its files, and
    /// drops it (benchmarks).
    Order,
    /// Each worker consumes the rows it computed where it computed them, as a per-worker sink
    /// (Redis, Kafka) does, and drops them (benchmarks).
    Count,
}

/// Rows produced by [`run_batch`], per output.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RowCounts {
    /// Stats changelog rows.
    pub stats: usize,
    /// Bar rows.
    pub bars: usize,
    /// Alert events.
    pub events: usize,
}

impl RowCounts {
    /// The counts of each output.
    pub fn new(stats: usize, bars: usize, events: usize) -> RowCounts {
        RowCounts {
            stats,
            bars,
            events,
        }
    }
}

/// Shared row counters of the workers, one per output.
#[derive(Default)]
struct Counters {
    stats: AtomicUsize,
    bars: AtomicUsize,
    events: AtomicUsize,
}

impl Counters {
    fn get(&self) -> RowCounts {
        RowCounts {
            stats: self.stats.load(Ordering::Relaxed),
            bars: self.bars.load(Ordering::Relaxed),
            events: self.events.load(Ordering::Relaxed),
        }
    }
}

/// The timely configuration for `workers` threads in this process. One worker gets the
/// single-thread allocator: its channels are plain queues, without the locks and wake-ups
/// that threads exchanging data need.
///
/// ```
/// let config = gostocks_core::batch::timely_config(1);
/// let sum = timely::execute(config, |worker| worker.index()).unwrap().join();
/// assert_eq!(sum.len(), 1);
/// ```
pub fn timely_config(workers: usize) -> timely::Config {
    if workers <= 1 {
        timely::Config::thread()
    } else {
        timely::Config::process(workers)
    }
}

/// Runs the analytics over `inputs` (each in its arrival order, each with its own watermark) on
/// `workers` threads; input `i` is read by worker `i % workers`. `outputs` says where the rows
/// go; [`BatchOutput::counts`] has their numbers whatever it says.
pub fn run_batch(
    inputs: Vec<Vec<Trade>>,
    config: &AnalyticsConfig,
    workers: usize,
    outputs: Outputs,
) -> BatchOutput {
    run_batch_core(inputs, Vec::new(), config, workers, outputs)
}

/// [`run_batch`] with alert rules: `rules` are changes `(rule, time, diff)` of the rule
/// collection (a rule inserted at time `T` applies to the trades of grid times `>= T`). Without
/// rules, nothing is matched.
pub fn run_batch_core(
    inputs: Vec<Vec<Trade>>,
    rules: Vec<RuleChange>,
    config: &AnalyticsConfig,
    workers: usize,
    outputs: Outputs,
) -> BatchOutput {
    let alerts = !rules.is_empty();
    // Taken once, by worker 0: moved into the dataflow rather than cloned rule by rule.
    let (rules, inputs) = (Arc::new(Mutex::new(Some(rules))), Arc::new(inputs));
    let out = Arc::new(Mutex::new(BatchOutput::default()));
    let counters = Arc::new(Counters::default());
    let config = config.clone();
    let (shared, all_counters) = (Arc::clone(&out), Arc::clone(&counters));
    timely::execute(timely_config(workers), move |worker| {
        let (index, peers) = (worker.index(), worker.peers());
        let (mut pipeline, probe) = worker.dataflow::<u64, _, _>(|scope| {
            let (pipeline, out) = build(scope, &config, alerts);
            (pipeline, consume(out, outputs, &counters, &shared))
        });
        // The rules apply from their own times on: they enter at worker 0, once.
        if index == 0
            && let Some(mut all) = lock(&rules).take()
        {
            pipeline.rules.send_batch(&mut all);
        }
        let Inputs { mut trades, rules } = pipeline;
        drop(rules);
        let mine: Vec<&Vec<Trade>> = inputs.iter().skip(index).step_by(peers).collect();
        let mut late = send_inputs(&mine, &config, &mut trades, &probe, worker);
        drop(trades);
        while worker.step_or_park(None) {}
        // Late ticks are kept whatever `outputs` says: a benchmark checks there are none.
        lock(&shared).late.append(&mut late);
    })
    .expect("timely workers start");
    let mut out = std::mem::take(&mut *lock(&out));
    out.counts = all_counters.get();
    out
}

/// Takes the pipeline's outputs as `outputs` says, counting them: the probe that paces the input.
fn consume(
    out: crate::pipeline::Outputs<'_>,
    outputs: Outputs,
    counters: &Arc<Counters>,
    shared: &Arc<Mutex<BatchOutput>>,
) -> ProbeHandle<u64> {
    let (c1, c2, c3) = (counters.clone(), counters.clone(), counters.clone());
    if outputs == Outputs::Count {
        return out.as_computed(
            move |rows| {
                c1.stats.fetch_add(rows.len(), Ordering::Relaxed);
            },
            move |rows| {
                c2.bars.fetch_add(rows.len(), Ordering::Relaxed);
            },
            move |rows| {
                c3.events.fetch_add(rows.len(), Ordering::Relaxed);
            },
        );
    }
    let keep = outputs == Outputs::Collect;
    let (s1, s2, s3) = (shared.clone(), shared.clone(), shared.clone());
    out.in_order(
        move |rows| {
            c1.stats.fetch_add(rows.len(), Ordering::Relaxed);
            if keep {
                lock(&s1).stats.append(rows);
            }
        },
        move |rows| {
            c2.bars.fetch_add(rows.len(), Ordering::Relaxed);
            if keep {
                lock(&s2).bars.append(rows);
            }
        },
        move |rows| {
            c3.events.fetch_add(rows.len(), Ordering::Relaxed);
            if keep {
                lock(&s3).events.append(rows);
            }
        },
    )
}

/// Sends this worker's inputs into `trades`, each in its order and with its own watermark, the
/// laggard first, a chunk at a time; returns the late ticks.
fn send_inputs(
    mine: &[&Vec<Trade>],
    config: &AnalyticsConfig,
    trades: &mut InputHandleVec<u64, Trade>,
    probe: &ProbeHandle<u64>,
    worker: &mut timely::worker::Worker,
) -> Vec<(Trade, Late)> {
    let mut watermarks = Watermarks::new(mine.len(), config.lateness, config.resolution.ns());
    let mut cursors = vec![0usize; mine.len()];
    let mut late = Vec::new();
    // Small steps keep what is in flight in the core's cache (see `analyze`'s STEP).
    const CHUNK: usize = 1_024;
    let mut admitted: Vec<Trade> = Vec::with_capacity(CHUNK);
    while let Some(i) = watermarks.laggard() {
        let slice = &mine[i][cursors[i]..(cursors[i] + CHUNK).min(mine[i].len())];
        for trade in slice {
            match watermarks.admit(i, trade.time_ns) {
                Ok(_) => admitted.push(*trade),
                Err(why) => late.push((*trade, why)),
            }
        }
        // One message per chunk. A sent container comes back holding anything: empty it.
        trades.send_batch(&mut admitted);
        admitted.clear();
        admitted.reserve(CHUNK);
        cursors[i] += slice.len();
        if cursors[i] == mine[i].len() {
            watermarks.finish(i);
        }
        watermarks.release(trades, probe, worker);
    }
    late
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
