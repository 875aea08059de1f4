//! The outputs beyond the process, behind one seam: a [`Sink`] writes batches of [`Output`]s and
//! says whether a failure is worth retrying; the driver ([`driver`]) owns each sink's bounded
//! queue, its retries, its health and its confirmation of progress marks.
//!
//! Adding a sink is one file implementing [`Sink`] (see [`jsonl`] for a small one) and one
//! [`Sinks::add`] line in `run.rs`.
//!
//! Every output goes through here: the in-process read model ([`read_model`]) and the alert
//! store ([`alert_events`]) are sinks like Redis, Kafka and the JSON-lines file.

pub mod alert_events;
pub mod driver;
pub mod jsonl;
pub mod kafka;
pub mod progress;
pub mod push;
pub mod read_model;
pub mod redis;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use gostocks_core::Symbol;
use gostocks_core::alerts::AlertEvent;
use gostocks_core::stats::{BarRow, StatsRow};
use tokio::sync::mpsc::{Receiver, Sender};
use tokio::sync::watch;

pub use driver::{Policy, SinkHealth};
pub use progress::Progress;

use crate::read_model::LastPrice;

/// One output of the dataflow.
#[derive(Clone, Debug)]
pub enum Output {
    /// A symbol's new last price.
    Price(Symbol, LastPrice),
    /// A stats changelog row.
    Stats(StatsRow),
    /// A final bar.
    Bar(BarRow),
    /// An alert event the dataflow fired.
    Event(AlertEvent),
    /// Every output of a grid time below this came before this mark. Marks travel on their
    /// own channel out of the dataflow; [`Sinks::run`] puts them in each sink's queue.
    Mark(u64),
}

/// Why a sink could not write a batch, and whether trying again may help.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SinkError {
    /// The service is down or overloaded: the driver backs off, retries the same batch and
    /// marks the sink degraded meanwhile.
    #[error("{0:#}")]
    Transient(anyhow::Error),
    /// Retrying repeats the failure (bad configuration, refused data): the driver stops the sink,
    /// reports it and fails readiness.
    #[error("{0:#}")]
    Definite(anyhow::Error),
}

impl SinkError {
    /// Whether backing off and retrying may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, SinkError::Transient(_))
    }
}

impl From<gostocks_connectors::Error> for SinkError {
    fn from(e: gostocks_connectors::Error) -> SinkError {
        if e.is_transient() {
            SinkError::Transient(e.into())
        } else {
            SinkError::Definite(e.into())
        }
    }
}

/// Where the dataflow's outputs go. The driver calls `write` with each batch taken from the
/// sink's queue, in queue order, and `flush` after it; a batch that failed transiently is
/// written again, whole, so writes must be idempotent (Redis guards on event time, Kafka
/// consumers deduplicate by key and time, the JSON-lines file is read as a changelog).
pub trait Sink: Send + 'static {
    /// A short name for logs, `/readyz` and `/metrics` (`redis`, `kafka`, ...).
    fn name(&self) -> &str;

    /// Which outputs this sink takes into its queue (marks always go in), and whether it is
    /// shared; asked once, when it is registered. The default: every output, shared.
    fn takes(&self) -> Takes {
        Takes::ALL
    }

    /// Writes the outputs of `batch` this sink takes (it skips the rest, and every `Mark`).
    fn write(&mut self, batch: &[Output]) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// Makes what `write` wrote durable (a no-op for sinks whose writes are acknowledged).
    fn flush(&mut self) -> impl Future<Output = Result<(), SinkError>> + Send {
        async { Ok(()) }
    }
}

/// Which outputs a sink takes (see [`Sink::takes`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Takes {
    /// Last prices.
    pub prices: bool,
    /// Stats changelog rows.
    pub stats: bool,
    /// Final bars.
    pub bars: bool,
    /// Alert events.
    pub events: bool,
    /// What the sink writes outlives the process and is shared with the other runners of a
    /// Kafka consumer group: it is not handed the outputs another runner owns, nor those it
    /// wrote before a restart. An in-process sink (false) gets them all.
    pub shared: bool,
}

impl Takes {
    /// Every output, shared.
    pub const ALL: Takes = Takes {
        prices: true,
        stats: true,
        bars: true,
        events: true,
        shared: true,
    };

    /// Whether `o` goes into the queue (marks always do).
    fn accepts(&self, o: &Output) -> bool {
        match o {
            Output::Price(..) => self.prices,
            Output::Stats(_) => self.stats,
            Output::Bar(_) => self.bars,
            Output::Event(_) => self.events,
            Output::Mark(_) => true,
        }
    }
}

type Driver = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A registered sink's queue, as the fan-out sees it.
struct Queue {
    health: Arc<SinkHealth>,
    tx: Sender<Output>,
    takes: Takes,
}

/// Which outputs the shared sinks must not be handed (see [`Takes::shared`]).
pub type Suppress = Box<dyn Fn(&Output) -> bool + Send + Sync>;

/// The registered sinks: each with its bounded queue and its driver, started by [`Sinks::run`].
pub struct Sinks {
    progress: Arc<Progress>,
    policy: Policy,
    queues: Vec<Queue>,
    drivers: Vec<Driver>,
}

impl Sinks {
    /// No sinks yet; each added one retries and queues as `policy` says, and reports its health
    /// and confirmations to `progress`.
    pub fn new(progress: Arc<Progress>, policy: Policy) -> Sinks {
        Sinks {
            progress,
            policy,
            queues: Vec::new(),
            drivers: Vec::new(),
        }
    }

    /// Registers a sink: it gets a confirmation cell (so [`Progress::durable`] waits for it),
    /// a health entry (`/readyz`, `/metrics`) and a queue of `policy.capacity` outputs.
    pub fn add(&mut self, sink: impl Sink) {
        let latency = self.progress.latency_of(sink.name());
        let health = Arc::new(SinkHealth::new(sink.name(), &self.policy, latency));
        let confirmed = self.progress.register(Arc::clone(&health));
        let (tx, rx) = tokio::sync::mpsc::channel(self.policy.capacity);
        self.queues.push(Queue {
            health: Arc::clone(&health),
            tx,
            takes: sink.takes(),
        });
        self.drivers.push(Box::pin(driver::drive(
            sink,
            rx,
            health,
            confirmed,
            self.policy.clone(),
        )));
    }

    /// Starts every sink's driver, then copies every output `outputs` delivers to the queue of
    /// each sink that wants it until `outputs` closes, and each new progress mark of `marks` to
    /// every queue. A full queue makes this wait, and with it the sender of `outputs` (the
    /// dataflow): an outage slows intake instead of growing memory. A sink stopped by a
    /// definite error is left out from then on (its confirmation stands still, so nothing past
    /// it is committed). `suppress` says which outputs the shared sinks must not be handed.
    ///
    /// Ordering contract of the marks: the dataflow sets mark `t` only once it has sent every
    /// output of a grid time below `t` on `outputs` (its probe has passed `t`, and the probe
    /// follows the operators that send). So on seeing a new mark, this first takes every output
    /// already waiting in `outputs`, then queues the mark behind them: each sink's FIFO queue
    /// holds every output below `t` before `Mark(t)`. See `driver.rs` for the rest of the way.
    pub async fn run(
        self,
        mut outputs: Receiver<Output>,
        mut marks: watch::Receiver<u64>,
        suppress: Suppress,
    ) {
        let Sinks {
            mut queues,
            drivers,
            progress,
            ..
        } = self;
        for d in drivers {
            tokio::spawn(d);
        }
        let mut marks_open = true;
        loop {
            tokio::select! {
                biased;
                changed = marks.changed(), if marks_open => {
                    if changed.is_err() {
                        marks_open = false;
                        continue;
                    }
                    let t = *marks.borrow_and_update();
                    while let Ok(o) = outputs.try_recv() {
                        fan_out(&mut queues, o, &suppress).await;
                    }
                    progress.hand_on(t);
                    fan_out(&mut queues, Output::Mark(t), &suppress).await;
                }
                o = outputs.recv() => match o {
                    Some(o) => fan_out(&mut queues, o, &suppress).await,
                    None => break,
                },
            }
        }
        // The dataflow is gone; its last mark (if not yet seen) follows everything it sent.
        if marks.has_changed().unwrap_or(true) {
            let t = *marks.borrow_and_update();
            progress.hand_on(t);
            fan_out(&mut queues, Output::Mark(t), &suppress).await;
        }
    }
}

/// Copies `o` to every queue that takes it, waiting while one is full; drops the queues of
/// sinks that have stopped.
async fn fan_out(queues: &mut Vec<Queue>, o: Output, suppress: &Suppress) {
    let suppressed = !matches!(o, Output::Mark(_)) && suppress(&o);
    let mut i = 0;
    while i < queues.len() {
        let q = &queues[i];
        if !q.takes.accepts(&o) || (suppressed && q.takes.shared) {
            i += 1;
            continue;
        }
        if q.tx.send(o.clone()).await.is_err() {
            tracing::error!(
                sink = q.health.name(),
                "the sink has stopped; its outputs are no longer written"
            );
            queues.swap_remove(i);
        } else {
            i += 1;
        }
    }
}
