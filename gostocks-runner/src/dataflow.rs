//! The dataflow `gostocks run` drives: trades in; the analytics (window stats, bars) and the
//! last price per symbol (an arrangement) out into [`MarketState`].

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use differential_dataflow::AsCollection;
use gostocks_core::alerts::{AlertEvent, AlertRule};
use gostocks_core::feed::{Late, Watermark, grid_ceil};
use gostocks_core::operators::{MatchAlerts, Point, analytics};
use gostocks_core::stats::AnalyticsConfig;
use gostocks_core::{Symbol, Tick, Trade};
use timely::dataflow::operators::{Input, Inspect, Probe};

use crate::alerts::RuleChange;
use crate::state::MarketState;

/// Ticks from one source: a Kafka partition, or the replayed file (source 0). An empty batch
/// announces a source.
pub struct Batch {
    /// Which source; each has its own watermark.
    pub source: u32,
    /// The ticks, in the source's order.
    pub ticks: Vec<Tick>,
    /// The source is gone (a partition revoked by a rebalance): it no longer takes part in
    /// event time.
    pub retired: bool,
}

impl Batch {
    /// Ticks of `source`.
    pub fn of(source: u32, ticks: Vec<Tick>) -> Batch {
        Batch {
            source,
            ticks,
            retired: false,
        }
    }
}

/// The dataflow's alert channels: rule changes in, fired events out.
pub struct Alerting {
    /// Rule changes from the alert service.
    pub rules: Receiver<RuleChange>,
    /// Where fired events go (to be recorded and broadcast), with progress marks.
    pub events: tokio::sync::mpsc::UnboundedSender<Fired>,
}

/// What the dataflow tells the alert hub, in order.
#[derive(Clone, Debug)]
pub enum Fired {
    /// An alert fired.
    Event(AlertEvent),
    /// Every output of a grid time below this has been handed on (to the state, the sinks
    /// and this channel).
    Mark(u64),
}

/// The watermarks of the live sources. A source that has sent nothing for `idle` stops holding
/// event time back (a quiet Kafka partition must not stall every result).
struct Sources {
    lateness: u64,
    resolution: u64,
    idle: Duration,
    marks: HashMap<u32, (Watermark, Instant)>,
    /// Sources taken away (revoked partitions): kept with their history, in case they come
    /// back, but out of event time meanwhile.
    retired: std::collections::HashSet<u32>,
}

impl Sources {
    fn new(lateness: u64, resolution: u64, idle: Duration) -> Sources {
        Sources {
            lateness,
            resolution,
            idle,
            marks: HashMap::new(),
            retired: std::collections::HashSet::new(),
        }
    }

    /// A source that exists but has not sent yet: it holds event time back (until it goes idle),
    /// so its first ticks are not late merely for arriving after another source's.
    fn register(&mut self, source: u32) {
        self.retired.remove(&source);
        let (lateness, resolution) = (self.lateness, self.resolution);
        // An announcement is activity: a partition assigned after a long rebalance holds time
        // back again from the moment it is announced, before its first records arrive.
        self.marks
            .entry(source)
            .or_insert_with(|| (Watermark::new(lateness, resolution), Instant::now()))
            .1 = Instant::now();
    }

    fn admit(&mut self, source: u32, t: u64) -> Result<u64, Late> {
        let (lateness, resolution) = (self.lateness, self.resolution);
        let entry = self
            .marks
            .entry(source)
            .or_insert_with(|| (Watermark::new(lateness, resolution), Instant::now()));
        entry.1 = Instant::now();
        entry.0.admit(t)
    }

    /// The least watermark over active sources; when all are idle, past the greatest grid time
    /// seen (everything seen is final, as nothing more is coming).
    fn input_time(&self) -> Option<u64> {
        let current = || {
            self.marks
                .iter()
                .filter(|(s, _)| !self.retired.contains(s))
                .map(|(_, m)| m)
        };
        let active = current()
            .filter(|(_, seen)| seen.elapsed() < self.idle)
            .map(|(w, _)| w.input_time())
            .min();
        active.or_else(|| current().map(|(w, _)| w.closed_time()).max())
    }
}

/// Runs the dataflow on `workers` threads until `ticks` closes. Worker 0 reads the channel;
/// trades are routed to workers by symbol inside the dataflow.
pub fn run(
    workers: usize,
    config: AnalyticsConfig,
    idle: Duration,
    ticks: Receiver<Batch>,
    alerts: Alerting,
    state: Arc<MarketState>,
) -> anyhow::Result<()> {
    let resolution = config.resolution.ns();
    let ticks = Arc::new(Mutex::new(Some((ticks, alerts.rules))));
    let fired = alerts.events;
    let guards = timely::execute(timely::Config::process(workers), move |worker| {
        let state_out = Arc::clone(&state);
        let (fired, fired_state) = (fired.clone(), Arc::clone(&state));
        let marks = fired.clone();
        let (mut input, mut rules_input, probe) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, trades) = scope.new_input::<Vec<Trade>>();
            let (rules_input, rules) = scope.new_input::<Vec<(AlertRule, u64, isize)>>();
            let out = analytics(trades, &config);
            let (stats_state, bars_state) = (Arc::clone(&state_out), Arc::clone(&state_out));
            let probe = out
                .stats
                .inspect(move |row| stats_state.apply_stats(row))
                .probe()
                .0;
            out.bars
                .inspect(move |row| bars_state.apply_bar(row))
                .probe_with(&probe);
            out.sequenced
                .clone()
                .match_alerts(rules.as_collection(), &config.windows)
                .inspect(move |event| {
                    fired_state.alert_events.fetch_add(1, Ordering::Relaxed);
                    let _ = fired.send(Fired::Event(event.clone()));
                })
                .probe_with(&probe);
            (input, rules_input, probe)
        });
        let Some((rx, rules_rx)) = (worker.index() == 0)
            .then(|| ticks.lock().ok().and_then(|mut r| r.take()))
            .flatten()
        else {
            // Other workers contribute no input: close theirs and serve the exchange.
            drop(input);
            drop(rules_input);
            while worker.step_or_park(None) {}
            return;
        };
        let mut sources = Sources::new(config.lateness, resolution, idle);
        let slack = resolution.max(1_000_000_000);
        let mut newest: HashMap<Symbol, Point> = HashMap::new();
        let mut marked = 0u64;
        let mut last_report = Instant::now();
        loop {
            // Rule changes apply from the current input time on: to every trade not yet final.
            while let Ok(change) = rules_rx.try_recv() {
                let at = *rules_input.time();
                rules_input.send((change.rule, at, change.diff));
            }
            // While the dataflow still has work, only look for more ticks; otherwise wait.
            let next = if probe.less_than(input.time()) {
                rx.try_recv().map_err(|e| match e {
                    TryRecvError::Empty => RecvTimeoutError::Timeout,
                    TryRecvError::Disconnected => RecvTimeoutError::Disconnected,
                })
            } else {
                rx.recv_timeout(Duration::from_millis(20))
            };
            match next {
                Ok(Batch {
                    source,
                    retired: true,
                    ..
                }) => {
                    sources.marks.remove(&source);
                }
                Ok(Batch { source, ticks, .. }) => {
                    sources.register(source);
                    for tick in ticks {
                        let trade = match tick.validate() {
                            Ok(trade) => trade,
                            Err(reason) => {
                                state.rejected.fetch_add(1, Ordering::Relaxed);
                                tracing::debug!(symbol = %tick.symbol, %reason, "rejected tick");
                                continue;
                            }
                        };
                        // Below the input's time it can no longer count (its source's watermark, or
                        // an idle source coming back after time moved on without it).
                        let admitted = sources.admit(source, trade.time_ns);
                        if admitted.is_err() || grid_ceil(trade.time_ns, resolution) < *input.time()
                        {
                            state.late.fetch_add(1, Ordering::Relaxed);
                            tracing::debug!(
                                source,
                                time_ns = trade.time_ns,
                                input_time = *input.time(),
                                watermark_late = admitted.is_err(),
                                "late tick"
                            );
                            continue;
                        }
                        state.observe(trade.time_ns);
                        // The last price goes out as the tick is taken in, not when its grid
                        // time is final: it is the newest admitted tick in (t, seq) order, and
                        // every write of it is guarded on that order, so the final price is the
                        // same whatever the arrival order.
                        // Coalesced per batch: the newest of each symbol.
                        let point = Point::from(&trade);
                        newest
                            .entry(trade.symbol)
                            .and_modify(|p: &mut Point| *p = (*p).max(point))
                            .or_insert(point);
                        input.send(trade);
                        state.accepted.fetch_add(1, Ordering::Relaxed);
                        state.publish(tick);
                    }
                    input.flush();
                    for (symbol, point) in newest.drain() {
                        state.apply_last(&symbol, &point);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            if let Some(t) = sources.input_time().filter(|t| t > input.time()) {
                input.advance_to(t);
                rules_input.advance_to(t);
            }
            if last_report.elapsed() > Duration::from_secs(5) {
                last_report = Instant::now();
                let marks: Vec<_> = sources
                    .marks
                    .iter()
                    .map(|(s, (w, seen))| {
                        (
                            *s,
                            w.closed_time(),
                            seen.elapsed().as_secs(),
                            sources.retired.contains(s),
                        )
                    })
                    .collect();
                tracing::debug!(input_time = *input.time(), ?marks, "event time");
            }
            // Catch up with the input, but come back for new ticks after a millisecond while
            // the dataflow is at most `slack` of event time behind: a tick's price goes out as
            // it is taken in and should not wait for the stats of earlier grid times. Further
            // behind, the input waits (and the bounded channel holds the Kafka source back).
            let catching_up = Instant::now();
            while probe.less_than(input.time()) && worker.step() {
                if catching_up.elapsed() > Duration::from_millis(1) {
                    let done = probe.with_frontier(|f| f.iter().min().copied());
                    if done.is_some_and(|d| input.time().saturating_sub(d) <= slack) {
                        break;
                    }
                }
            }
            worker.step();
            let done = probe.with_frontier(|f| f.iter().min().copied());
            if let Some(done) = done.filter(|d| *d > marked) {
                marked = done;
                let _ = marks.send(Fired::Mark(done));
            }
        }
        drop(input);
        drop(rules_input);
        while worker.step() {}
        let _ = marks.send(Fired::Mark(u64::MAX));
    })
    .map_err(|e| anyhow::anyhow!("starting timely workers: {e}"))?;
    drop(guards);
    Ok(())
}
