//! The one driver every [`Sink`] runs under: a bounded queue, one retry policy, health, and the
//! confirmation of progress marks.
//!
//! Ordering contract of progress marks, from the dataflow to the Kafka commit: the dataflow
//! sets mark `t` on its marks channel only once every output of a grid time below `t` has been
//! sent on the outputs channel; the fan-out ([`super::Sinks::run`]) takes those outputs first
//! and then queues `Mark(t)` behind them in every sink's FIFO queue (and hands `t` on to
//! [`super::Progress`]). The driver writes batches in queue order and raises the sink's
//! confirmation cell to the greatest mark of a batch only after the whole batch is written and
//! flushed; [`super::Progress::durable`] is the least confirmation over the sinks, and the
//! Kafka source commits only records whose grid time is below it.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use prometheus_client::metrics::histogram::Histogram;
use tokio::sync::mpsc::Receiver;

use super::{Output, Sink, SinkError};

/// How every sink queues and retries.
#[derive(Clone, Debug)]
pub struct Policy {
    /// Outputs a sink's queue holds (also the largest batch handed to `write`). When it is full,
    /// the fan-out waits, and with it the dataflow and its intake.
    pub capacity: usize,
    /// A sink degraded (failing transiently) for longer than this makes the runner not ready.
    pub unready_after: Duration,
    /// The first retry's delay.
    pub min_delay: Duration,
    /// The longest delay between retries.
    pub max_delay: Duration,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            capacity: DEFAULT_CAPACITY,
            unready_after: Duration::from_secs(10),
            min_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(5),
        }
    }
}

/// The default capacity of a sink's queue, in outputs (a few MB of rows).
pub const DEFAULT_CAPACITY: usize = 16_384;

impl Policy {
    /// The backoff between retries of a transient failure: exponential (factor 2) from
    /// `min_delay` to `max_delay`, with jitter, for as long as it takes.
    pub fn backoff(&self) -> ExponentialBuilder {
        ExponentialBuilder::new()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay)
            .with_factor(2.0)
            .with_jitter()
            .without_max_times()
    }
}

/// How a sink stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Health {
    /// Writing.
    Ok,
    /// Failing transiently since `since`; retried with backoff.
    Degraded {
        /// When the current run of failures began.
        since: Instant,
        /// The latest failure.
        error: String,
    },
    /// Stopped by a definite failure; its outputs are no longer written.
    Failed(String),
}

/// A sink's health and queue, shared by its driver (writer) and `/readyz` and `/metrics`.
#[derive(Debug)]
pub struct SinkHealth {
    name: String,
    capacity: usize,
    unready_after: Duration,
    health: Mutex<Health>,
    depth: AtomicUsize,
    retries: AtomicU64,
    written: AtomicU64,
    /// Tick-to-sink latency: the wall clock when an output is written minus its event time.
    latency: Histogram,
}

/// A sink's queue and counters at one moment, for `/metrics`.
#[derive(Clone, Debug)]
pub struct SinkSnapshot {
    /// The sink's name.
    pub name: String,
    /// 0 ok, 1 degraded (retrying), 2 failed (stopped).
    pub state: u64,
    /// Outputs waiting in its queue.
    pub depth: usize,
    /// The bound of its queue.
    pub capacity: usize,
    /// Writes retried after a transient failure.
    pub retries: u64,
    /// Outputs written (marks included).
    pub written: u64,
}

impl SinkHealth {
    /// A healthy sink `name` queueing and failing as `policy` says, its tick-to-sink latency
    /// observed in `latency`.
    pub fn new(name: &str, policy: &Policy, latency: Histogram) -> SinkHealth {
        SinkHealth {
            latency,
            name: name.to_owned(),
            capacity: policy.capacity,
            unready_after: policy.unready_after,
            health: Mutex::new(Health::Ok),
            depth: AtomicUsize::new(0),
            retries: AtomicU64::new(0),
            written: AtomicU64::new(0),
        }
    }

    /// The sink's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Outputs waiting in its queue, and the queue's capacity.
    pub fn queue(&self) -> (usize, usize) {
        (self.depth.load(Ordering::Relaxed), self.capacity)
    }

    /// How the sink stands now.
    pub fn health(&self) -> Health {
        self.health
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn set(&self, to: Health) {
        *self.health.lock().unwrap_or_else(|e| e.into_inner()) = to;
    }

    /// `Ok` unless the sink has failed, or been degraded for longer than its policy's
    /// `unready_after`: then why.
    pub fn readiness(&self) -> Result<(), String> {
        let bound = self.unready_after;
        match self.health() {
            Health::Ok => Ok(()),
            Health::Degraded { since, error } if since.elapsed() > bound => Err(format!(
                "sink {}: failing for {} s, retrying: {error}",
                self.name,
                since.elapsed().as_secs()
            )),
            Health::Degraded { .. } => Ok(()),
            Health::Failed(reason) => Err(format!("sink {}: stopped: {reason}", self.name)),
        }
    }

    /// The sink's queue and counters now.
    pub fn snapshot(&self) -> SinkSnapshot {
        SinkSnapshot {
            name: self.name.clone(),
            state: match self.health() {
                Health::Ok => 0,
                Health::Degraded { .. } => 1,
                Health::Failed(_) => 2,
            },
            depth: self.depth.load(Ordering::Relaxed),
            capacity: self.capacity,
            retries: self.retries.load(Ordering::Relaxed),
            written: self.written.load(Ordering::Relaxed),
        }
    }

    /// Observes the tick-to-sink latency of every output of `batch` that carries the event time
    /// of a tick (prices, stats rows, alert events; a bar's event time is its start).
    fn observe(&self, batch: &[Output]) {
        for o in batch {
            let event_ns = match o {
                Output::Price(_, p) => p.time_ns,
                Output::Stats(row) => row.time_ns,
                Output::Event(e) => e.time_ns,
                Output::Bar(_) | Output::Mark(_) => continue,
            };
            self.latency
                .observe(crate::metrics::seconds_since(event_ns));
        }
    }
}

/// Runs `sink` until its queue closes: takes up to `policy.capacity` queued outputs at a time,
/// writes and flushes them (retrying transient failures with [`Policy::backoff`], the sink
/// degraded meanwhile), then confirms the batch's greatest mark in `confirmed`. A definite
/// failure stops the sink: it is reported, marked failed (the runner is then not ready) and
/// its queue is closed.
pub async fn drive(
    mut sink: impl Sink,
    mut rx: Receiver<Output>,
    health: Arc<SinkHealth>,
    confirmed: Arc<AtomicU64>,
    policy: Policy,
) {
    let mut batch = Vec::with_capacity(policy.capacity);
    loop {
        batch.clear();
        if rx.recv_many(&mut batch, policy.capacity).await == 0 {
            break;
        }
        health.depth.store(rx.len(), Ordering::Relaxed);
        if let Err(e) = write(&mut sink, &batch, &health, &rx, &policy).await {
            tracing::error!(sink = health.name(), error = %e, "the sink failed for good and stops; the runner is not ready");
            health.set(Health::Failed(e.to_string()));
            return;
        }
        health
            .written
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        health.observe(&batch);
        // Written and flushed: every output before the batch's last mark is durable here.
        if let Some(m) = batch
            .iter()
            .filter_map(|o| match o {
                Output::Mark(t) => Some(*t),
                _ => None,
            })
            .max()
        {
            confirmed.fetch_max(m, Ordering::Relaxed);
        }
    }
}

/// Writes and flushes one batch, retrying transient failures; `Err` is definite.
async fn write(
    sink: &mut impl Sink,
    batch: &[Output],
    health: &SinkHealth,
    rx: &Receiver<Output>,
    policy: &Policy,
) -> Result<(), SinkError> {
    let mut delays = policy.backoff().build();
    loop {
        let result = match sink.write(batch).await {
            Ok(()) => sink.flush().await,
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => {
                if health.health() != Health::Ok {
                    tracing::info!(sink = health.name(), "the sink writes again");
                    health.set(Health::Ok);
                }
                return Ok(());
            }
            Err(e) if e.is_transient() => {
                let delay = delays.next().unwrap_or(policy.max_delay);
                let error = e.to_string();
                let since = match health.health() {
                    Health::Degraded { since, .. } => since,
                    _ => {
                        tracing::warn!(sink = health.name(), error, retry_in = ?delay, "writing outputs failed; retrying with backoff");
                        Instant::now()
                    }
                };
                health.set(Health::Degraded { since, error });
                health.retries.fetch_add(1, Ordering::Relaxed);
                health.depth.store(rx.len(), Ordering::Relaxed);
                tokio::time::sleep(delay).await;
            }
            Err(e) => return Err(e),
        }
    }
}
