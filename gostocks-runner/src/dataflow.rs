//! The dataflow `gostocks run` drives: ticks from the sources (through [`Intake`](crate::intake::Intake)) and rule
//! changes in; the pipeline of [`gostocks_core::pipeline`] in the middle; the last prices, stats
//! rows, final bars and alert events out to the sinks (through [`Outlets`]), with progress marks
//! on a channel of their own.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gostocks_core::alerts::AlertRule;
use gostocks_core::operators::{Point, symbol_route};
use gostocks_core::pipeline::{Inputs, build};
use gostocks_core::stats::AnalyticsConfig;
use gostocks_core::watermark::grid_ceil;
use gostocks_core::{Symbol, Trade};
use timely::dataflow::{InputHandleVec, ProbeHandle};

use crate::event_time::{Proposals, Sources};
use crate::intake::{SourceTicks, Taps};
use crate::read_model::LastPrice;
use crate::sinks::Output;
use crate::state::MarketState;

/// Where the dataflow's outputs go: every output on `outputs` (bounded: a full channel holds the
/// dataflow's threads, and with them the intake), and progress marks on `marks`.
///
/// Ordering contract: worker 0 sets mark `t` only once its probe has passed `t`, and the probe
/// follows the operators that send the outputs, so every output of a grid time below `t` has
/// been sent on `outputs` before. A watch channel: only the latest mark matters, so it cannot
/// grow.
pub struct Outlets {
    /// Prices, stats rows, bars and alert events, as computed.
    pub outputs: tokio::sync::mpsc::Sender<Output>,
    /// The greatest `t` such that every output below `t` has been sent on `outputs`.
    pub marks: tokio::sync::watch::Sender<u64>,
}

/// Where this process's workers are: `workers` threads in process `process` of `processes`
/// (1: no cluster), each worker `process * workers + local` in the dataflow.
#[derive(Clone, Copy, Debug)]
pub struct Place {
    /// Worker threads in this process.
    pub workers: usize,
    /// This process, `0..processes`.
    pub process: usize,
    /// The processes of the timely cluster.
    pub processes: usize,
}

#[cfg(test)]
impl Place {
    /// One process of `workers` threads.
    pub fn alone(workers: usize) -> Place {
        Place {
            workers,
            process: 0,
            processes: 1,
        }
    }
}

/// Runs the dataflow on this process's threads (a timely cluster if `place` says so, with
/// `timely` its configuration) until the intake closes. Each worker reads the sources
/// [`Intake`](crate::intake::Intake) routes to it; trades are routed to workers by symbol
/// inside the dataflow, across the cluster. The first worker of each process takes that
/// process's rule changes (`(rule, +1 | -1)`) and sets its progress marks.
///
/// In a cluster the workers also gossip, over a dataflow of their own: each worker's view of
/// event time (so that a worker in one process without sources follows the sources of
/// another), how far each process's sinks have written (see [`MarketState::durable`]), and the
/// last prices, sent to the worker that owns their symbol, whose process writes them.
#[allow(clippy::too_many_arguments)]
pub fn run(
    timely: timely::Config,
    place: Place,
    config: AnalyticsConfig,
    idle: Duration,
    taps: Taps,
    rules: Receiver<(AlertRule, isize)>,
    outlets: Outlets,
    state: Arc<MarketState>,
) -> anyhow::Result<()> {
    let rules = Arc::new(Mutex::new(Some(rules)));
    let taps = Arc::new(taps);
    let proposals = Arc::new(Proposals::new((place.workers * place.processes).max(1)));
    let outlets = Arc::new(outlets);
    if place.processes > 1 {
        state.peers.join(place.processes);
    }
    let guards = timely::execute(timely, move |worker| {
        let index = worker.index();
        let local = index % place.workers.max(1);
        let (pipeline, probe) = worker.dataflow::<u64, _, _>(|scope| {
            let (pipeline, out) = build(scope, &config, true);
            let (s1, s2, s3) = (state.clone(), state.clone(), state.clone());
            let (o1, o2, o3) = (outlets.clone(), outlets.clone(), outlets.clone());
            let probe = out.as_computed(
                move |rows| {
                    s1.counters
                        .stats_rows
                        .fetch_add(rows.len() as u64, Ordering::Relaxed);
                    rows.iter().for_each(|r| send_on(&o1, Output::Stats(*r)));
                },
                move |rows| {
                    s2.counters
                        .bar_rows
                        .fetch_add(rows.len() as u64, Ordering::Relaxed);
                    rows.iter().for_each(|r| send_on(&o2, Output::Bar(*r)));
                },
                move |rows| {
                    s3.counters
                        .alert_events
                        .fetch_add(rows.len() as u64, Ordering::Relaxed);
                    rows.iter()
                        .for_each(|e| send_on(&o3, Output::Event(e.clone())));
                },
            );
            (pipeline, probe)
        });
        let gossip =
            (place.processes > 1).then(|| gossip(worker, place, &proposals, &state, &outlets));
        taps.wakers.register(local);
        let Some(rx) = taps
            .receivers
            .get(local)
            .and_then(|r| r.lock().ok().and_then(|mut r| r.take()))
        else {
            return;
        };
        // Rule changes enter at each process's first worker; the others close their
        // rules input.
        let rules_rx = (local == 0)
            .then(|| rules.lock().ok().and_then(|mut r| r.take()))
            .flatten();
        let Inputs { trades, rules } = pipeline;
        let mut w = Worker {
            index,
            local,
            gossip,
            said: (NONE, NONE, NONE),
            trades,
            rules: rules_rx.map(|rx| (rx, rules)),
            probe,
            sources: Sources::new(config.lateness, config.resolution.ns(), idle),
            proposals: Arc::clone(&proposals),
            taps: Arc::clone(&taps),
            state: Arc::clone(&state),
            outlets: Arc::clone(&outlets),
            resolution: config.resolution.ns(),
            newest: HashMap::new(),
            marked: 0,
            last_report: Instant::now(),
        };
        while w.take_in(&rx) {
            w.advance_event_time();
            w.catch_up(worker);
            // Nothing to do: sleep until a batch, a message from another worker, or the next
            // look at idle sources.
            worker.step_or_park(Some(Duration::from_millis(20)));
            w.mark();
        }
        w.finish(worker);
    })
    .map_err(|e| anyhow::anyhow!("starting timely workers: {e}"))?;
    drop(guards);
    Ok(())
}

/// Sends an output to the sinks, waiting while their queues are full.
fn send_on(outlets: &Outlets, output: Output) {
    // Err: the sinks have stopped (shutdown); nothing waits for outputs any more.
    let _ = outlets.outputs.blocking_send(output);
}

/// The pipeline's input of rule changes.
type RulesInput = InputHandleVec<u64, gostocks_core::pipeline::RuleChange>;

/// What a worker says to every worker of the cluster: its event time proposal (active,
/// closed; [`NONE`] for none) and, from a process's first worker, how far the process's sinks
/// have written ([`NONE`]: not said).
type Gossip = (u32, u64, u64, u64);

/// An absent value in [`Gossip`].
const NONE: u64 = u64::MAX;

/// The inputs of a cluster worker's gossip dataflow.
struct GossipInputs {
    said: InputHandleVec<u64, Gossip>,
    prices: InputHandleVec<u64, (Symbol, Point)>,
}

/// Ships what an input of the gossip dataflow holds at once.
trait Ship {
    fn ship(&mut self);
}

impl<D: Clone + 'static> Ship for InputHandleVec<u64, D> {
    /// Its time means nothing: it moves on by one, because only closing a time makes timely
    /// push what the input's exchange holds to the other workers and wake them.
    fn ship(&mut self) {
        let next = self.time() + 1;
        self.advance_to(next);
    }
}

/// Builds the gossip dataflow (see [`run`]): every worker hears every [`Gossip`], and the last
/// prices go to their symbol's worker, which sends them to its process's sinks. Its times mean
/// nothing (see [`Ship`]); no frontier of it is waited for.
fn gossip(
    worker: &mut timely::worker::Worker,
    place: Place,
    proposals: &Arc<Proposals>,
    state: &Arc<MarketState>,
    outlets: &Arc<Outlets>,
) -> GossipInputs {
    use timely::dataflow::operators::vec::Broadcast;
    use timely::dataflow::operators::{Exchange, Input, Inspect};
    let (proposals, state, outlets) = (
        Arc::clone(proposals),
        Arc::clone(state),
        Arc::clone(outlets),
    );
    worker.dataflow::<u64, _, _>(move |scope| {
        let (said, heard) = scope.new_input::<Vec<Gossip>>();
        heard
            .broadcast()
            .inspect(move |&(from, active, closed, durable): &Gossip| {
                let process = from as usize / place.workers.max(1);
                // This process's own workers publish directly.
                if process != place.process {
                    let some = |v: u64| (v != NONE).then_some(v);
                    proposals.publish(from as usize, some(active), some(closed));
                }
                if durable != NONE {
                    state.peers.said(process, durable);
                }
            });
        let (prices, stream) = scope.new_input::<Vec<(Symbol, Point)>>();
        stream
            .exchange(|(symbol, _): &(Symbol, Point)| symbol_route(symbol))
            .inspect(move |&(symbol, p): &(Symbol, Point)| {
                let price = LastPrice {
                    price: p.price,
                    time_ns: p.time_ns,
                    seq: p.seq,
                };
                send_on(&outlets, Output::Price(symbol, price));
            });
        GossipInputs { said, prices }
    })
}

/// One timely worker of [`run`]: its inputs, its sources' event time, and what it reports.
struct Worker {
    /// Its index in the dataflow (across the cluster).
    index: usize,
    /// Its index in this process.
    local: usize,
    /// In a cluster: its gossip inputs.
    gossip: Option<GossipInputs>,
    /// The last [`Gossip`] it said (active, closed, durable).
    said: (u64, u64, u64),
    trades: InputHandleVec<u64, Trade>,
    /// Worker 0's rule changes and the input they enter by.
    rules: Option<(Receiver<(AlertRule, isize)>, RulesInput)>,
    probe: ProbeHandle<u64>,
    sources: Sources,
    proposals: Arc<Proposals>,
    taps: Arc<Taps>,
    state: Arc<MarketState>,
    outlets: Arc<Outlets>,
    resolution: u64,
    /// The newest admitted trade of each symbol in the batch being taken in.
    newest: HashMap<Symbol, Point>,
    /// The latest progress mark set (worker 0).
    marked: u64,
    last_report: Instant,
}

impl Worker {
    /// Takes in the rule changes and the batches that have arrived (a bounded number, so the
    /// dataflow keeps up); false once the intake has closed.
    fn take_in(&mut self, rx: &Receiver<SourceTicks>) -> bool {
        // Rule changes apply from the current input time on: to every trade not yet final.
        if let Some((rules_rx, rules)) = &mut self.rules {
            while let Ok((rule, diff)) = rules_rx.try_recv() {
                let at = *rules.time();
                rules.send((rule, at, diff));
            }
        }
        for _ in 0..64 {
            match rx.try_recv() {
                Ok(batch) => {
                    self.taps.unread[self.local].fetch_sub(1, Ordering::SeqCst);
                    self.admit(batch);
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return false,
            }
        }
        true
    }

    /// Validates a batch's ticks and sends those in time into the dataflow; the newest price
    /// of each symbol goes out at once.
    fn admit(&mut self, batch: SourceTicks) {
        let SourceTicks {
            source,
            ticks,
            retired,
        } = batch;
        if retired {
            self.sources.retire(source);
            return;
        }
        let now = Instant::now();
        self.sources.register(source, now);
        let counters = &self.state.counters;
        for tick in ticks {
            let trade = match tick.validate() {
                Ok(trade) => trade,
                Err(reason) => {
                    counters.rejected.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(symbol = %tick.symbol, %reason, "rejected tick");
                    continue;
                }
            };
            // Below the input's time it can no longer count (its source's watermark, or an idle
            // source coming back after time moved on without it).
            let admitted = self.sources.admit(source, trade.time_ns, now);
            let input_time = *self.trades.time();
            if admitted.is_err() || grid_ceil(trade.time_ns, self.resolution) < input_time {
                counters.late.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(
                    source,
                    time_ns = trade.time_ns,
                    input_time,
                    watermark_late = admitted.is_err(),
                    "late tick"
                );
                continue;
            }
            counters.observe(trade.time_ns);
            // The last price goes out as the tick is taken in, not when its grid time is final:
            // it is the newest admitted tick in (t, seq) order, and every write of it is guarded
            // on that order, so the final price is the same whatever the arrival order.
            // Coalesced per batch: the newest of each symbol.
            let point = Point::from(&trade);
            self.newest
                .entry(trade.symbol)
                .and_modify(|p: &mut Point| *p = (*p).max(point))
                .or_insert(point);
            self.trades.send(trade);
            counters.accepted.fetch_add(1, Ordering::Relaxed);
            self.state.read.publish(tick);
        }
        self.trades.flush();
        match &mut self.gossip {
            // To the worker of the symbol, whose process writes its outputs.
            Some(gossip) => {
                for (symbol, p) in self.newest.drain() {
                    gossip.prices.send((symbol, p));
                }
                gossip.prices.ship();
            }
            None => {
                for (symbol, p) in self.newest.drain() {
                    let price = LastPrice {
                        price: p.price,
                        time_ns: p.time_ns,
                        seq: p.seq,
                    };
                    send_on(&self.outlets, Output::Price(symbol, price));
                }
            }
        }
    }

    /// Event time: this worker's active sources decide its input's; a worker whose sources are
    /// all idle, or that has none, follows the others.
    fn advance_event_time(&mut self) {
        let now = Instant::now();
        let own = self.sources.active_time(now);
        let closed = self.sources.closed_time();
        if self.proposals.publish(self.index, own, closed) {
            // A worker parked without active sources of its own must follow promptly.
            self.taps.wakers.wake_all_but(self.local);
        }
        self.say(own, closed);
        // With batches still unread it waits: one may announce a source of its own. So it does
        // before its process's sources are first announced.
        let unread = self.taps.unread[self.local].load(Ordering::SeqCst) > 0
            || !self.taps.ready.load(Ordering::SeqCst);
        let target = own.or_else(|| (!unread).then(|| self.proposals.global()).flatten());
        if let Some(t) = target.filter(|t| t > self.trades.time()) {
            self.trades.advance_to(t);
            if let Some((_, rules)) = &mut self.rules {
                rules.advance_to(t);
            }
        }
        if self.last_report.elapsed() > Duration::from_secs(5) {
            self.last_report = Instant::now();
            tracing::debug!(
                worker = self.index,
                input_time = *self.trades.time(),
                sources = ?self.sources.describe(now),
                "event time"
            );
        }
    }

    /// Catches up with the input, but comes back for new ticks after a millisecond while the
    /// dataflow is at most `slack` of event time behind: a tick's price goes out as it is taken
    /// in and should not wait for the stats of earlier grid times. Further behind, the input
    /// waits (and the bounded channel holds the source back). Only as far as every worker's
    /// input has come: waiting for a worker whose partitions lag would stop this one reading,
    /// and with it the source that serves both.
    fn catch_up(&self, worker: &mut timely::worker::Worker) {
        let slack = self.resolution.max(1_000_000_000);
        let input_time = *self.trades.time();
        let floor = || {
            self.proposals
                .global()
                .map_or(input_time, |f| f.min(input_time))
        };
        let catching_up = Instant::now();
        // The floor moves as other workers go on: looked up again at every step.
        while self.probe.less_than(&floor()) && worker.step() {
            if catching_up.elapsed() > Duration::from_millis(1) {
                let done = self.probe.with_frontier(|f| f.iter().min().copied());
                if done.is_some_and(|d| floor().saturating_sub(d) <= slack) {
                    break;
                }
            }
        }
    }

    /// In a cluster, tells every worker what changed of its event time, and (a process's first
    /// worker) how far its process's sinks have written.
    fn say(&mut self, active: Option<u64>, closed: Option<u64>) {
        let Some(gossip) = &mut self.gossip else {
            return;
        };
        let durable = if self.local == 0 {
            self.state.progress.durable()
        } else {
            NONE
        };
        let now = (active.unwrap_or(NONE), closed.unwrap_or(NONE), durable);
        if now != self.said {
            self.said = now;
            gossip.said.send((self.index as u32, now.0, now.1, now.2));
            gossip.said.ship();
        }
    }

    /// Each process's first worker sets its progress mark to where the probe is (see
    /// [`Outlets`]).
    fn mark(&mut self) {
        if self.local != 0 {
            return;
        }
        let done = self.probe.with_frontier(|f| f.iter().min().copied());
        if let Some(done) = done.filter(|d| *d > self.marked) {
            self.marked = done;
            self.outlets.marks.send_replace(done);
        }
    }

    /// This worker's sources are closed: it no longer holds event time back; the dataflow
    /// finishes what it holds, and worker 0 marks everything done.
    fn finish(mut self, worker: &mut timely::worker::Worker) {
        self.proposals.publish(self.index, None, None);
        self.taps.wakers.wake_all_but(self.local);
        self.say(None, None);
        let Worker {
            local,
            trades,
            rules,
            outlets,
            gossip,
            ..
        } = self;
        drop(trades);
        drop(rules);
        drop(gossip);
        while worker.step_or_park(Some(Duration::from_millis(20))) {}
        if local == 0 {
            outlets.marks.send_replace(u64::MAX);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intake::Intake;
    use gostocks_core::Tick;

    fn tick(symbol: &str, time_ns: i64, seq: u64) -> Tick {
        Tick::new(
            symbol,
            "100.5".parse().expect("price"),
            "2".parse().expect("size"),
            time_ns,
            seq,
        )
        .with_source("test")
    }

    /// Worker 0's partition runs hours of event time ahead while worker 1's partition is
    /// announced and silent. Worker 0 must keep reading (its channel holds 2 batches); were it
    /// to wait for the dataflow to reach its own input time, which worker 1 holds back, the
    /// source would block on it and nothing would move again.
    #[test]
    fn a_worker_whose_partition_runs_ahead_keeps_reading_while_another_lags() {
        let config = AnalyticsConfig::default();
        let state = Arc::new(MarketState::new(16, &config));
        let (intake, taps) = Intake::new(2, 4);
        intake.announced();
        let (_rules_tx, rules_rx) = std::sync::mpsc::channel();
        // Roomy enough for every output of the test: nothing drains it until the end.
        let (outputs, mut outputs_rx) = tokio::sync::mpsc::channel(1 << 16);
        let outlets = Outlets {
            outputs,
            marks: tokio::sync::watch::channel(0).0,
        };
        let dataflow = {
            let state = Arc::clone(&state);
            std::thread::spawn(move || {
                run(
                    gostocks_core::batch::timely_config(2),
                    Place::alone(2),
                    config,
                    Duration::from_secs(3600),
                    taps,
                    rules_rx,
                    outlets,
                    state,
                )
            })
        };
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let start = 1_700_000_000_000_000_000i64;
            // Source 1 is read by worker 1, source 0 by worker 0.
            assert!(intake.send(SourceTicks::of(1, Vec::new())));
            for i in 0..300 {
                let t = start + i * 60_000_000_000;
                assert!(intake.send(SourceTicks::of(0, vec![tick("AHEAD", t, i as u64)])));
            }
            assert!(intake.send(SourceTicks::of(1, vec![tick("LAGS", start, 0)])));
            drop(intake);
            let _ = done_tx.send(());
        });
        done_rx
            .recv_timeout(Duration::from_secs(60))
            .expect("every batch was taken in: no worker waited on another's partition");
        dataflow
            .join()
            .expect("no panic")
            .expect("the dataflow ran");
        assert_eq!(state.counters.counts(), (301, 0));
        let mut newest = None;
        while let Ok(output) = outputs_rx.try_recv() {
            if let Output::Price(symbol, p) = output
                && symbol.as_str() == "AHEAD"
            {
                newest = newest.max(Some(p.seq));
            }
        }
        assert_eq!(newest, Some(299));
    }
}
