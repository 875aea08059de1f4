//! The dataflow `gostocks run` drives: trades in; the analytics (window stats, bars) and the
//! last price per symbol (an arrangement) out into [`MarketState`].

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError};
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

/// The sources' way into the dataflow: one bounded channel per timely worker. Each source (a
/// Kafka partition, or the replayed file) is read by exactly one worker, `source % workers`,
/// which validates its ticks, keeps its watermark and feeds them in; inside the dataflow the
/// ticks are exchanged by symbol.
#[derive(Clone)]
pub struct Feeds {
    senders: Vec<SyncSender<Batch>>,
    wakers: Arc<Wakers>,
    unread: Arc<Vec<AtomicUsize>>,
}

/// The worker threads, to wake one when a batch is waiting for it.
#[derive(Default)]
struct Wakers(Mutex<Vec<Option<std::thread::Thread>>>);

impl Wakers {
    fn register(&self, index: usize) {
        let mut threads = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if threads.len() <= index {
            threads.resize(index + 1, None);
        }
        threads[index] = Some(std::thread::current());
    }

    fn wake(&self, index: usize) {
        let threads = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(Some(thread)) = threads.get(index) {
            thread.unpark();
        }
    }

    fn wake_all_but(&self, index: usize) {
        let threads = self.0.lock().unwrap_or_else(|e| e.into_inner());
        for (i, thread) in threads.iter().enumerate() {
            if let Some(thread) = thread.as_ref().filter(|_| i != index) {
                thread.unpark();
            }
        }
    }
}

/// The receiving ends of [`Feeds`], one per worker, for [`run`].
pub struct Taps {
    receivers: Vec<Mutex<Option<Receiver<Batch>>>>,
    wakers: Arc<Wakers>,
    /// Batches sent to each worker and not yet taken in. A worker with unread batches may
    /// have a source announced there that it does not know yet, so it does not follow the
    /// others' event time until it has read them.
    unread: Arc<Vec<AtomicUsize>>,
}

impl Feeds {
    /// Channels for `workers` workers, each holding up to `capacity` batches in total.
    pub fn new(workers: usize, capacity: usize) -> (Feeds, Taps) {
        let workers = workers.max(1);
        let wakers = Arc::new(Wakers::default());
        let (senders, receivers) = (0..workers)
            .map(|_| {
                let (tx, rx) = std::sync::mpsc::sync_channel((capacity / workers).max(1));
                (tx, Mutex::new(Some(rx)))
            })
            .unzip();
        let unread: Arc<Vec<AtomicUsize>> =
            Arc::new((0..workers).map(|_| AtomicUsize::new(0)).collect());
        let taps = Taps {
            receivers,
            wakers: Arc::clone(&wakers),
            unread: Arc::clone(&unread),
        };
        (
            Feeds {
                senders,
                wakers,
                unread,
            },
            taps,
        )
    }

    /// Hands `batch` to the worker that reads its source; `false` once the dataflow is gone.
    pub fn send(&self, batch: Batch) -> bool {
        let index = batch.source as usize % self.senders.len();
        // Counted before it is sent: from now on the worker knows it has something to read.
        self.unread[index].fetch_add(1, Ordering::SeqCst);
        let sent = self.senders[index].send(batch).is_ok();
        if !sent {
            self.unread[index].fetch_sub(1, Ordering::SeqCst);
        }
        self.wakers.wake(index);
        sent
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

    fn current(&self) -> impl Iterator<Item = &(Watermark, Instant)> {
        self.marks
            .iter()
            .filter(|(s, _)| !self.retired.contains(s))
            .map(|(_, m)| m)
    }

    /// The least watermark over active (not idle) sources.
    fn active_time(&self) -> Option<u64> {
        self.current()
            .filter(|(_, seen)| seen.elapsed() < self.idle)
            .map(|(w, _)| w.input_time())
            .min()
    }

    /// Past the greatest grid time seen: once every source is idle, everything seen is final,
    /// as nothing more is coming.
    fn closed_time(&self) -> Option<u64> {
        self.current().map(|(w, _)| w.closed_time()).max()
    }
}

/// What each worker's sources say of event time, shared so that the workers agree: the least
/// watermark of its active sources, and the greatest grid time its sources have closed
/// (`NONE` where there is none).
struct Proposals {
    active: Vec<AtomicU64>,
    closed: Vec<AtomicU64>,
}

const NONE: u64 = u64::MAX;

impl Proposals {
    fn new(workers: usize) -> Proposals {
        let none = || (0..workers).map(|_| AtomicU64::new(NONE)).collect();
        Proposals {
            active: none(),
            closed: none(),
        }
    }

    /// Publishes worker `index`'s view; true if it changed.
    fn publish(&self, index: usize, active: Option<u64>, closed: Option<u64>) -> bool {
        let active = self.active[index].swap(active.unwrap_or(NONE), Ordering::Relaxed)
            != active.unwrap_or(NONE);
        let closed = self.closed[index].swap(closed.unwrap_or(NONE), Ordering::Relaxed)
            != closed.unwrap_or(NONE);
        active || closed
    }

    /// The dataflow's input time: the least watermark over the active sources of every
    /// worker; when every source is idle, past the greatest grid time any has closed.
    fn global(&self) -> Option<u64> {
        let load = |v: &Vec<AtomicU64>| {
            v.iter()
                .map(|a| a.load(Ordering::Relaxed))
                .filter(|&t| t != NONE)
                .collect::<Vec<_>>()
        };
        load(&self.active)
            .into_iter()
            .min()
            .or_else(|| load(&self.closed).into_iter().max())
    }
}

/// Runs the dataflow on `workers` threads until every feed is closed. Each worker reads the
/// sources [`Feeds`] route to it; trades are routed to workers by symbol inside the dataflow.
/// Worker 0 also takes the rule changes and reports progress marks.
pub fn run(
    workers: usize,
    config: AnalyticsConfig,
    idle: Duration,
    taps: Taps,
    alerts: Alerting,
    state: Arc<MarketState>,
) -> anyhow::Result<()> {
    let resolution = config.resolution.ns();
    let rules = Arc::new(Mutex::new(Some(alerts.rules)));
    let taps = Arc::new(taps);
    let proposals = Arc::new(Proposals::new(workers.max(1)));
    let fired = alerts.events;
    let guards = timely::execute(
        gostocks_core::batch::timely_config(workers),
        move |worker| {
            let index = worker.index();
            let state_out = Arc::clone(&state);
            let (fired, fired_state) = (fired.clone(), Arc::clone(&state));
            let marks = fired.clone();
            let (mut input, rules_input, probe) = worker.dataflow::<u64, _, _>(|scope| {
                let (input, trades) = scope.new_input::<Vec<Trade>>();
                let (rules_input, rules) = scope.new_input::<Vec<(AlertRule, u64, isize)>>();
                let out = analytics(trades, &config, true);
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
                    .expect("kept for alert matching")
                    .match_alerts(rules.as_collection(), &config.windows)
                    .inspect(move |event| {
                        fired_state.alert_events.fetch_add(1, Ordering::Relaxed);
                        let _ = fired.send(Fired::Event(event.clone()));
                    })
                    .probe_with(&probe);
                (input, rules_input, probe)
            });
            taps.wakers.register(index);
            let Some(rx) = taps
                .receivers
                .get(index)
                .and_then(|r| r.lock().ok().and_then(|mut r| r.take()))
            else {
                return;
            };
            // Rule changes enter at worker 0; the others close their rules input.
            let rules_rx = (index == 0)
                .then(|| rules.lock().ok().and_then(|mut r| r.take()))
                .flatten();
            let mut rules_input = rules_rx.is_some().then_some(rules_input);
            let mut sources = Sources::new(config.lateness, resolution, idle);
            let slack = resolution.max(1_000_000_000);
            let mut newest: HashMap<Symbol, Point> = HashMap::new();
            let mut marked = 0u64;
            let mut last_report = Instant::now();
            'feed: loop {
                // Rule changes apply from the current input time on: to every trade not yet final.
                if let (Some(rules_rx), Some(rules_input)) = (&rules_rx, &mut rules_input) {
                    while let Ok(change) = rules_rx.try_recv() {
                        let at = *rules_input.time();
                        rules_input.send((change.rule, at, change.diff));
                    }
                }
                // Take what has arrived; a bounded number of batches, so the dataflow keeps up.
                for _ in 0..64 {
                    let batch = match rx.try_recv() {
                        Ok(batch) => batch,
                        Err(TryRecvError::Empty) => break,
                        Err(TryRecvError::Disconnected) => break 'feed,
                    };
                    let Batch {
                        source,
                        ticks,
                        retired,
                    } = batch;
                    taps.unread[index].fetch_sub(1, Ordering::SeqCst);
                    if retired {
                        sources.marks.remove(&source);
                        continue;
                    }
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
                // Event time: this worker's active sources decide its input's; a worker whose
                // sources are all idle, or that has none, follows the others.
                let own = sources.active_time();
                if proposals.publish(index, own, sources.closed_time()) {
                    // A worker parked without active sources of its own must follow promptly.
                    taps.wakers.wake_all_but(index);
                }
                // With batches still unread it waits: one may announce a source of its own.
                let unread = taps.unread[index].load(Ordering::SeqCst) > 0;
                let target = own.or_else(|| (!unread).then(|| proposals.global()).flatten());
                if let Some(t) = target.filter(|t| t > input.time()) {
                    input.advance_to(t);
                    if let Some(rules_input) = &mut rules_input {
                        rules_input.advance_to(t);
                    }
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
                    tracing::debug!(
                        worker = index,
                        input_time = *input.time(),
                        ?marks,
                        "event time"
                    );
                }
                // Catch up with the input, but come back for new ticks after a millisecond while
                // the dataflow is at most `slack` of event time behind: a tick's price goes out as
                // it is taken in and should not wait for the stats of earlier grid times. Further
                // behind, the input waits (and the bounded channel holds the source back). Only as
                // far as every worker's input has come: waiting for a worker whose partitions lag
                // would stop this one reading, and with it the feed that serves both.
                let floor = || {
                    proposals
                        .global()
                        .map_or(*input.time(), |f| f.min(*input.time()))
                };
                let catching_up = Instant::now();
                // The floor moves as other workers go on: looked up again at every step.
                while probe.less_than(&floor()) && worker.step() {
                    if catching_up.elapsed() > Duration::from_millis(1) {
                        let done = probe.with_frontier(|f| f.iter().min().copied());
                        if done.is_some_and(|d| floor().saturating_sub(d) <= slack) {
                            break;
                        }
                    }
                }
                // Nothing to do: sleep until a batch, a message from another worker, or the next
                // look at idle sources.
                worker.step_or_park(Some(Duration::from_millis(20)));
                if index == 0 {
                    let done = probe.with_frontier(|f| f.iter().min().copied());
                    if let Some(done) = done.filter(|d| *d > marked) {
                        marked = done;
                        let _ = marks.send(Fired::Mark(done));
                    }
                }
            }
            // This worker's sources are closed: it no longer holds event time back.
            proposals.publish(index, None, None);
            taps.wakers.wake_all_but(index);
            drop(input);
            drop(rules_input);
            while worker.step_or_park(Some(Duration::from_millis(20))) {}
            if index == 0 {
                let _ = marks.send(Fired::Mark(u64::MAX));
            }
        },
    )
    .map_err(|e| anyhow::anyhow!("starting timely workers: {e}"))?;
    drop(guards);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tick(symbol: &str, time_ns: i64, seq: u64) -> Tick {
        Tick {
            symbol: symbol.into(),
            price: "100.5".parse().expect("price"),
            size: "2".parse().expect("size"),
            time_ns,
            seq,
            source: "test".into(),
            side: None,
            trade_id: None,
            conditions: Vec::new(),
        }
    }

    /// Worker 0's partition runs hours of event time ahead while worker 1's partition is
    /// announced and silent. Worker 0 must keep reading (its channel holds 2 batches); were it
    /// to wait for the dataflow to reach its own input time, which worker 1 holds back, the
    /// feed would block on it and nothing would move again.
    #[test]
    fn a_worker_whose_partition_runs_ahead_keeps_reading_while_another_lags() {
        let config = AnalyticsConfig::default();
        let state = Arc::new(MarketState::new(16, &config));
        let (feeds, taps) = Feeds::new(2, 4);
        let (_rules_tx, rules_rx) = std::sync::mpsc::channel();
        let (events_tx, _events_rx) = tokio::sync::mpsc::unbounded_channel();
        let alerting = Alerting {
            rules: rules_rx,
            events: events_tx,
        };
        let dataflow = {
            let state = Arc::clone(&state);
            std::thread::spawn(move || {
                run(2, config, Duration::from_secs(3600), taps, alerting, state)
            })
        };
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let start = 1_700_000_000_000_000_000i64;
            // Source 1 is read by worker 1, source 0 by worker 0.
            assert!(feeds.send(Batch::of(1, Vec::new())));
            for i in 0..300 {
                let t = start + i * 60_000_000_000;
                assert!(feeds.send(Batch::of(0, vec![tick("AHEAD", t, i as u64)])));
            }
            assert!(feeds.send(Batch::of(1, vec![tick("LAGS", start, 0)])));
            drop(feeds);
            let _ = done_tx.send(());
        });
        done_rx
            .recv_timeout(Duration::from_secs(60))
            .expect("every batch was taken in: no worker waited on another's partition");
        dataflow
            .join()
            .expect("no panic")
            .expect("the dataflow ran");
        assert_eq!(state.counts(), (301, 0));
        let ahead = state.price("AHEAD").expect("a price");
        assert_eq!(ahead.seq, 299);
    }
}
