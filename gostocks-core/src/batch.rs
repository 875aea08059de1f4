//! Driving the analytics over inputs that are already in memory or read by the caller: the
//! multi-input [`Feeder`] and [`run_batch`].

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::Input;
use timely::dataflow::operators::Probe;
use timely::dataflow::operators::generic::operator::Operator;
use timely::dataflow::{InputHandleVec, ProbeHandle, StreamVec};

use differential_dataflow::AsCollection;
use timely::dataflow::operators::ToStream;

use crate::alerts::{AlertEvent, AlertRule};
use crate::feed::{Late, Watermark, grid_ceil};
use crate::operators::{EmitOrdered, MatchAlerts, analytics};
use crate::stats::{AnalyticsConfig, BarRow, StatsRow};
use crate::tick::Trade;

/// The watermarks of one worker's inputs. A worker's timely input may advance to
/// [`Feeder::input_time`]: no admitted tick of any of its live inputs can fall below it.
#[derive(Clone, Debug)]
pub struct Feeder {
    marks: Vec<Watermark>,
    live: Vec<bool>,
}

impl Feeder {
    /// `inputs` inputs, each with the allowed `lateness`, on a grid of `resolution` (ns).
    pub fn new(inputs: usize, lateness: u64, resolution: u64) -> Feeder {
        Feeder {
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

    /// After a chunk was sent: advances `input` to [`Feeder::input_time`], then steps `worker`
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
pub struct RowCounts {
    /// Stats changelog rows.
    pub stats: usize,
    /// Bar rows.
    pub bars: usize,
    /// Alert events.
    pub events: usize,
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

/// Consumes `stream` on the worker that computed it, counting its rows into `counter`: the
/// outputs of a benchmark that keeps nothing, as a per-worker sink (Redis, Kafka) takes them.
fn count_rows<D: 'static>(
    stream: StreamVec<'_, u64, D>,
    counters: &Arc<Counters>,
    counter: fn(&Counters) -> &AtomicUsize,
) {
    let counters = Arc::clone(counters);
    stream.sink(Pipeline, "CountRows", move |(input, _frontier)| {
        let mut n = 0;
        input.for_each_stamp(|_cap, data| {
            for container in data {
                n += container.len();
                container.clear();
            }
        });
        if n > 0 {
            counter(&counters).fetch_add(n, Ordering::Relaxed);
        }
    });
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
    run_batch_with_alerts(inputs, Vec::new(), config, workers, outputs)
}

/// [`run_batch`] with alert rules: `rules` are changes `(rule, time, diff)` of the rule
/// collection (a rule inserted at time `T` applies to the trades of grid times `>= T`).
pub fn run_batch_with_alerts(
    inputs: Vec<Vec<Trade>>,
    rules: Vec<(AlertRule, u64, isize)>,
    config: &AnalyticsConfig,
    workers: usize,
    outputs: Outputs,
) -> BatchOutput {
    let no_rules = rules.is_empty();
    let rules = Arc::new(rules);
    let out = Arc::new(Mutex::new(BatchOutput::default()));
    let inputs = Arc::new(inputs);
    let config = config.clone();
    let shared = Arc::clone(&out);
    let all_counters = Arc::new(Counters::default());
    let counters = Arc::clone(&all_counters);
    timely::execute(timely_config(workers), move |worker| {
        let (index, peers) = (worker.index(), worker.peers());
        let (stats_sink, bars_sink) = (Arc::clone(&shared), Arc::clone(&shared));
        let events_sink = Arc::clone(&shared);
        let mine_rules: Vec<(AlertRule, u64, isize)> = if index == 0 {
            rules.to_vec()
        } else {
            Vec::new()
        };
        let (mut input, probe) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, trades) = scope.new_input::<Vec<Trade>>();
            let out = analytics(trades, &config, !no_rules);
            // Without rules (the same on every worker) there is nothing to match.
            let events = (!no_rules).then(|| {
                out.sequenced
                    .clone()
                    .expect("kept when there are rules")
                    .match_alerts(mine_rules.to_stream(scope).as_collection(), &config.windows)
            });
            // The probe passes each stream through: a second consumer of a stream would
            // get a copy of every row. The stats, the longest path, pace the feeders.
            let (probe, stats) = out.stats.probe();
            let bars = out.bars;
            let events = events.map(|events| events.probe_with(&probe));
            if outputs == Outputs::Count {
                count_rows(stats, &counters, |c| &c.stats);
                count_rows(bars, &counters, |c| &c.bars);
                if let Some(events) = events {
                    count_rows(events, &counters, |c| &c.events);
                }
                return (input, probe);
            }
            if let Some(events) = events {
                let resolution = config.resolution.ns();
                let counters = Arc::clone(&counters);
                events.emit_ordered(
                    move |e: &AlertEvent| grid_ceil(e.time_ns, resolution),
                    move |_, rows| {
                        counters.events.fetch_add(rows.len(), Ordering::Relaxed);
                        if outputs == Outputs::Collect {
                            events_sink
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .events
                                .append(rows);
                        }
                    },
                );
            }
            let stats_counters = Arc::clone(&counters);
            stats.emit_ordered(
                |r: &StatsRow| r.time_ns,
                move |_, rows| {
                    stats_counters
                        .stats
                        .fetch_add(rows.len(), Ordering::Relaxed);
                    if outputs == Outputs::Collect {
                        stats_sink
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .stats
                            .append(rows);
                    }
                },
            );
            let bar_sizes: Vec<u64> = config.bars.iter().map(|b| b.ns()).collect();
            let bar_end = move |r: &BarRow| r.start_ns + bar_sizes[r.bar as usize];
            let counters = Arc::clone(&counters);
            bars.emit_ordered(bar_end, move |_, rows: &mut Vec<BarRow>| {
                counters.bars.fetch_add(rows.len(), Ordering::Relaxed);
                if outputs == Outputs::Collect {
                    bars_sink
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .bars
                        .append(rows);
                }
            });
            (input, probe)
        });
        let mine: Vec<&Vec<Trade>> = inputs.iter().skip(index).step_by(peers).collect();
        let mut feeder = Feeder::new(mine.len(), config.lateness, config.resolution.ns());
        let mut cursors = vec![0usize; mine.len()];
        let mut late = Vec::new();
        // Small steps keep what is in flight in the core's cache (see `analyze`'s FEED).
        const CHUNK: usize = 1_024;
        let mut admitted: Vec<Trade> = Vec::with_capacity(CHUNK);
        while let Some(i) = feeder.laggard() {
            let slice = &mine[i][cursors[i]..(cursors[i] + CHUNK).min(mine[i].len())];
            for trade in slice {
                match feeder.admit(i, trade.time_ns) {
                    Ok(_) => admitted.push(*trade),
                    Err(why) => late.push((*trade, why)),
                }
            }
            // One message per chunk. A sent container comes back holding anything: empty it.
            input.send_batch(&mut admitted);
            admitted.clear();
            admitted.reserve(CHUNK);
            cursors[i] += slice.len();
            if cursors[i] == mine[i].len() {
                feeder.finish(i);
            }
            feeder.release(&mut input, &probe, worker);
        }
        drop(input);
        while worker.step_or_park(None) {}
        // Late ticks are kept whatever `outputs` says: a benchmark checks there are none.
        shared
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .late
            .append(&mut late);
    })
    .expect("timely workers start");
    let mut out = std::mem::take(&mut *out.lock().unwrap_or_else(|e| e.into_inner()));
    out.counts = all_counters.get();
    out
}
