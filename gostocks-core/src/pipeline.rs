//! The whole pipeline on a scope, built in one place: trades and alert-rule changes in; the
//! stats changelog, final bars and alert events out. `gostocks analyze`, `gostocks run`,
//! `batch::run_batch` and the benchmarks all build it with [`build`], and consume its
//! [`Outputs`] one of two ways: [`Outputs::in_order`] (one writer, rows sorted, identical for
//! any worker count) or [`Outputs::as_computed`] (each worker takes the rows it computed, as a
//! per-worker sink does). A new output is wired here, once.
//!
//! A program that embeds the pipeline implements [`Sink`] for what it does with the rows, and
//! hands it to [`Outputs::into_sink`]: the sink sees every final time's rows in order, on
//! worker 0, the same whatever the number of workers. (The `gostocks` binary's sinks are
//! asynchronous, with queues, retries and health; they are fed by these same outputs.)

use std::cell::RefCell;
use std::rc::Rc;

use differential_dataflow::AsCollection;
use timely::dataflow::operators::{Input, Inspect, Probe};
use timely::dataflow::{InputHandleVec, ProbeHandle, Scope, StreamVec};

use crate::alerts::{AlertEvent, AlertRule};
use crate::operators::EmitOrdered;
use crate::stats::{AnalyticsConfig, BarRow, StatsRow};
use crate::tick::Trade;
use crate::watermark::grid_ceil;

/// A change of the alert-rule collection: `(rule, time, diff)`, `diff` +1 inserts and -1
/// retracts; the rule applies to the trades of grid times `>= time`.
pub type RuleChange = (AlertRule, u64, isize);

/// The pipeline's inputs. Each advances as its driver says (see `batch::Watermarks` for
/// files); dropping one closes it.
pub struct Inputs {
    /// Trades, each placed at its grid time ([`grid_ceil`] of its event time).
    pub trades: InputHandleVec<u64, Trade>,
    /// Alert-rule changes; drop it when no change will come (with alerts off, it is ignored).
    pub rules: InputHandleVec<u64, RuleChange>,
}

/// The pipeline's outputs, not yet consumed: take them with [`Outputs::in_order`] or
/// [`Outputs::as_computed`], which also give the probe that says how far they are final.
pub struct Outputs<'scope> {
    /// The stats changelog, emitted as each grid time becomes final.
    pub stats: StreamVec<'scope, u64, StatsRow>,
    /// Final bars with their EMA.
    pub bars: StreamVec<'scope, u64, BarRow>,
    /// Alert events, when the pipeline was built with alerts.
    pub events: Option<StreamVec<'scope, u64, AlertEvent>>,
    /// Each bar size, ns (a bar's end is its start plus its size).
    bar_ns: Vec<u64>,
    /// The result grid, ns.
    resolution: u64,
}

/// Builds the analytics of `config` on `scope`: window stats, bars with their EMA and, when
/// `alerts`, alert matching against the rules of [`Inputs::rules`].
///
/// # Examples
/// ```
/// use gostocks_core::pipeline::build;
/// use gostocks_core::stats::AnalyticsConfig;
/// use gostocks_core::{Symbol, Trade};
/// use std::sync::{Arc, Mutex};
///
/// let rows = Arc::new(Mutex::new(Vec::new()));
/// let sink = Arc::clone(&rows);
/// timely::execute(timely::Config::thread(), move |worker| {
///     let sink = Arc::clone(&sink);
///     let (mut inputs, _probe) = worker.dataflow::<u64, _, _>(|scope| {
///         let (inputs, outputs) = build(scope, &AnalyticsConfig::default(), false);
///         let probe = outputs.in_order(
///             move |rows| sink.lock().unwrap().extend(rows.drain(..).map(|r| (r.time_ns, r.window))),
///             |_bars| {},
///             |_events| {},
///         );
///         (inputs, probe)
///     });
///     let sec = 1_000_000_000u64;
///     inputs.trades.advance_to(sec);
///     let p = |s: &str| s.parse().unwrap();
///     inputs.trades.send(Trade::new(Symbol::new("X").unwrap(), sec, 0, p("10"), p("1")));
/// })
/// .unwrap();
/// // The trade's grid time, once per window (60s and 300s), then each window emptying.
/// let rows = rows.lock().unwrap();
/// assert_eq!(rows[..2], [(1_000_000_000, 0), (1_000_000_000, 1)]);
/// ```
pub fn build<'scope>(
    scope: Scope<'scope, u64>,
    config: &AnalyticsConfig,
    alerts: bool,
) -> (Inputs, Outputs<'scope>) {
    let (trades, trade_stream) = scope.new_input::<Vec<Trade>>();
    let (rules, rule_stream) = scope.new_input::<Vec<RuleChange>>();
    // The matcher gives the sequencer back the containers it is done with.
    let spares = crate::operators::sequence::Spares::default();
    let out = crate::operators::analytics_core(trade_stream, config, alerts, Some(spares.clone()));
    let events = out.sequenced.map(|sequenced| {
        crate::operators::alerts::match_alerts_core(
            sequenced,
            rule_stream.as_collection(),
            &config.windows,
            Some(spares),
        )
    });
    let outputs = Outputs {
        stats: out.stats,
        bars: out.bars,
        events,
        bar_ns: config.bars.iter().map(|b| b.ns()).collect(),
        resolution: config.resolution.ns(),
    };
    (Inputs { trades, rules }, outputs)
}

/// Where an embedding program's rows go: each method is called with one final grid time's rows
/// of its output, in order (see [`Outputs::in_order`]), and may take them out of the vector.
/// Every method has a default that drops the rows, so a sink implements what it wants.
///
/// # Examples
/// ```
/// use gostocks_core::pipeline::{Sink, build};
/// use gostocks_core::stats::{AnalyticsConfig, BarRow};
/// use gostocks_core::{Symbol, Trade};
/// use std::sync::{Arc, Mutex};
///
/// /// Counts the bars it is given.
/// struct CountBars(Arc<Mutex<usize>>);
///
/// impl Sink for CountBars {
///     fn bars(&mut self, rows: &mut Vec<BarRow>) {
///         *self.0.lock().unwrap() += rows.len();
///     }
/// }
///
/// let count = Arc::new(Mutex::new(0));
/// let shared = Arc::clone(&count);
/// gostocks_core::timely::execute(gostocks_core::timely::Config::thread(), move |worker| {
///     let sink = CountBars(Arc::clone(&shared));
///     let mut inputs = worker.dataflow::<u64, _, _>(|scope| {
///         let (inputs, outputs) = build(scope, &AnalyticsConfig::default(), false);
///         outputs.into_sink(sink);
///         inputs
///     });
///     let (sec, p) = (1_000_000_000u64, |s: &str| s.parse().unwrap());
///     inputs.trades.advance_to(sec);
///     inputs.trades.send(Trade::new(Symbol::new("X").unwrap(), sec, 0, p("10"), p("1")));
/// })
/// .unwrap();
/// // One 1s bar and one 1m bar.
/// assert_eq!(*count.lock().unwrap(), 2);
/// ```
pub trait Sink: 'static {
    /// One final grid time's stats changelog rows, sorted by `(symbol, window)`.
    fn stats(&mut self, rows: &mut Vec<StatsRow>) {
        rows.clear();
    }

    /// The bars that ended at one final time, sorted by `(symbol, bar, start)`.
    fn bars(&mut self, rows: &mut Vec<BarRow>) {
        rows.clear();
    }

    /// One final grid time's alert events, sorted by `(time, symbol, seq, alert id)`.
    fn events(&mut self, rows: &mut Vec<AlertEvent>) {
        rows.clear();
    }
}

impl Outputs<'_> {
    /// [`Outputs::in_order`] into one [`Sink`], which lives on worker 0 (the other workers'
    /// copies are dropped unused).
    pub fn into_sink(self, sink: impl Sink) -> ProbeHandle<u64> {
        let sink = Rc::new(RefCell::new(sink));
        let (s1, s2) = (Rc::clone(&sink), Rc::clone(&sink));
        self.in_order(
            move |rows| s1.borrow_mut().stats(rows),
            move |rows| s2.borrow_mut().bars(rows),
            move |rows| sink.borrow_mut().events(rows),
        )
    }

    /// Routes every output to worker 0 and calls each closure there with one final time's rows,
    /// sorted (stats by time, bars by end time, events by the grid time of their tick): the
    /// same calls whatever the number of workers. Rows left in the vector are dropped. The probe
    /// sees the outputs before they are ordered; they are all written once the dataflow ends.
    pub fn in_order(
        self,
        mut stats: impl FnMut(&mut Vec<StatsRow>) + 'static,
        mut bars: impl FnMut(&mut Vec<BarRow>) + 'static,
        mut events: impl FnMut(&mut Vec<AlertEvent>) + 'static,
    ) -> ProbeHandle<u64> {
        // The probe passes each stream through: a second consumer of a stream would get a copy
        // of every row. The stats, the longest path, pace the intake.
        let (probe, stats_stream) = self.stats.probe();
        stats_stream.emit_ordered(|r: &StatsRow| r.time_ns, move |_, rows| stats(rows));
        let bar_ns = self.bar_ns;
        let bar_end = move |r: &BarRow| r.start_ns + bar_ns[r.bar as usize];
        self.bars
            .probe_with(&probe)
            .emit_ordered(bar_end, move |_, rows| bars(rows));
        if let Some(stream) = self.events {
            let resolution = self.resolution;
            stream.probe_with(&probe).emit_ordered(
                move |e: &AlertEvent| grid_ceil(e.time_ns, resolution),
                move |_, rows| events(rows),
            );
        }
        probe
    }

    /// Calls each closure on the worker that computed the rows, with each batch as it comes (in
    /// no particular order across workers and times), then probes: when the probe has passed
    /// a time, every row of an earlier time has been through its closure.
    pub fn as_computed(
        self,
        mut stats: impl FnMut(&[StatsRow]) + 'static,
        mut bars: impl FnMut(&[BarRow]) + 'static,
        mut events: impl FnMut(&[AlertEvent]) + 'static,
    ) -> ProbeHandle<u64> {
        let (probe, _) = self
            .stats
            .inspect_core(move |c| {
                if let Ok((_, rows)) = c {
                    stats(rows)
                }
            })
            .probe();
        self.bars
            .inspect_core(move |c| {
                if let Ok((_, rows)) = c {
                    bars(rows)
                }
            })
            .probe_with(&probe);
        if let Some(stream) = self.events {
            stream
                .inspect_core(move |c| {
                    if let Ok((_, rows)) = c {
                        events(rows)
                    }
                })
                .probe_with(&probe);
        }
        probe
    }
}
