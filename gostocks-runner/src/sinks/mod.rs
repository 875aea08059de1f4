//! The outputs beyond the process, behind one seam: a [`Sink`] writes batches of [`Output`]s and
//! says whether a failure is worth retrying; the driver ([`driver`]) owns each sink's bounded
//! queue, its retries, its health and its confirmation of progress marks.
//!
//! Adding a sink is one file implementing [`Sink`] (see [`jsonl`] for a small one) and one
//! [`Sinks::add`] line in `run.rs`.

pub mod driver;
pub mod jsonl;
pub mod kafka;
pub mod redis;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use gostocks_core::Symbol;
use gostocks_core::alerts::AlertEvent;
use gostocks_core::stats::{BarRow, StatsRow};
use tokio::sync::mpsc::{Receiver, Sender};

pub use driver::{Policy, SinkHealth};

use crate::state::{LastPrice, MarketState};

/// One output of the dataflow.
#[derive(Clone, Debug)]
pub enum Output {
    /// A symbol's new last price.
    Price(Symbol, LastPrice),
    /// A stats changelog row.
    Stats(StatsRow),
    /// A final bar.
    Bar(BarRow),
    /// A recorded alert event.
    Event(AlertEvent),
    /// Every output of a grid time below this came before this mark.
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

    /// Writes the outputs of `batch` this sink takes (it skips the rest, and every `Mark`).
    fn write(&mut self, batch: &[Output]) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// Makes what `write` wrote durable (a no-op for sinks whose writes are acknowledged).
    fn flush(&mut self) -> impl Future<Output = Result<(), SinkError>> + Send {
        async { Ok(()) }
    }
}

type Driver = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The registered sinks: each with its bounded queue and its driver, started by [`Sinks::run`].
pub struct Sinks {
    state: Arc<MarketState>,
    policy: Policy,
    queues: Vec<(Arc<SinkHealth>, Sender<Output>)>,
    drivers: Vec<Driver>,
}

impl Sinks {
    /// No sinks yet; each added one retries and queues as `policy` says, and reports its health
    /// and confirmations to `state`.
    pub fn new(state: Arc<MarketState>, policy: Policy) -> Sinks {
        Sinks {
            state,
            policy,
            queues: Vec::new(),
            drivers: Vec::new(),
        }
    }

    /// Registers a sink: it gets a confirmation cell (so [`MarketState::durable`] waits for it),
    /// a health entry (`/readyz`, `/metrics`) and a queue of `policy.capacity` outputs.
    pub fn add(&mut self, sink: impl Sink) {
        let health = Arc::new(SinkHealth::new(sink.name(), &self.policy));
        let confirmed = self.state.register_sink();
        self.state.watch_sink(Arc::clone(&health));
        let (tx, rx) = tokio::sync::mpsc::channel(self.policy.capacity);
        self.queues.push((Arc::clone(&health), tx));
        self.drivers.push(Box::pin(driver::drive(
            sink,
            rx,
            health,
            confirmed,
            self.policy.clone(),
        )));
    }

    /// Whether no sink is registered.
    pub fn is_empty(&self) -> bool {
        self.queues.is_empty()
    }

    /// Starts every sink's driver, then copies every output `rx` delivers to each sink's queue
    /// until `rx` closes. A full queue makes this wait, and with it the sender of `rx` (the
    /// dataflow): an outage slows intake instead of growing memory. A sink stopped by a definite
    /// error is left out from then on (its confirmation stands still, so nothing past it is
    /// committed).
    pub async fn run(self, mut rx: Receiver<Output>) {
        let Sinks {
            mut queues,
            drivers,
            ..
        } = self;
        for d in drivers {
            tokio::spawn(d);
        }
        while let Some(o) = rx.recv().await {
            let mut i = 0;
            while i < queues.len() {
                if queues[i].1.send(o.clone()).await.is_err() {
                    tracing::error!(
                        sink = queues[i].0.name(),
                        "the sink has stopped; its outputs are no longer written"
                    );
                    queues.swap_remove(i);
                } else {
                    i += 1;
                }
            }
        }
    }
}
