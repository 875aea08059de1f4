//! A bounded buffer of ticks in front of a producer, and the task that empties it into Kafka.
//!
//! A live source cannot wait for Kafka: a WebSocket that is not read is cut off by the provider.
//! So ticks go into a bounded buffer that never blocks; while Kafka is unreachable the buffer
//! fills, and when it comes back the delivery task sends everything held. When the buffer is full
//! the oldest tick is dropped (live data ages fast), counted and logged: never silently.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use gostocks_core::Tick;
use tokio::sync::Notify;
use tracing::{error, info, warn};

use super::TickProducer;
use crate::error::Error;

/// Sends awaited at once: enough to keep the producer's batches full.
const IN_FLIGHT: usize = 5_000;
/// At most one overflow warning per this many dropped ticks (the counter has them all).
const OVERFLOW_LOG_EVERY: u64 = 1_000;

/// A bounded, never-blocking queue of ticks awaiting delivery.
#[derive(Debug)]
pub struct TickBuffer {
    queue: Mutex<VecDeque<Tick>>,
    capacity: usize,
    overflow: AtomicU64,
    closed: AtomicBool,
    ready: Notify,
}

impl TickBuffer {
    /// A buffer holding at most `capacity` ticks (at least 1).
    pub fn new(capacity: usize) -> TickBuffer {
        TickBuffer {
            queue: Mutex::new(VecDeque::new()),
            capacity: capacity.max(1),
            overflow: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            ready: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Tick>> {
        // A panic while holding the lock cannot leave the queue half-updated (push/pop only).
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a tick; if the buffer is full, drops the oldest one and returns it.
    pub fn push(&self, tick: Tick) -> Option<Tick> {
        let dropped = {
            let mut q = self.lock();
            let dropped = if q.len() >= self.capacity {
                q.pop_front()
            } else {
                None
            };
            q.push_back(tick);
            dropped
        };
        if let Some(old) = &dropped {
            let n = self.overflow.fetch_add(1, Ordering::Relaxed) + 1;
            if n == 1 || n.is_multiple_of(OVERFLOW_LOG_EVERY) {
                warn!(
                    dropped = n,
                    capacity = self.capacity,
                    symbol = %old.symbol,
                    "tick buffer full (is Kafka down?): dropping the oldest ticks"
                );
            }
        }
        self.ready.notify_one();
        dropped
    }

    /// Puts back a tick whose delivery failed, ahead of the others.
    fn requeue(&self, tick: Tick) {
        let mut q = self.lock();
        if q.len() >= self.capacity {
            self.overflow.fetch_add(1, Ordering::Relaxed);
            return;
        }
        q.push_front(tick);
    }

    fn pop(&self) -> Option<Tick> {
        self.lock().pop_front()
    }

    /// The next tick, waiting for one; `None` once the buffer is closed and empty. For a stage
    /// that takes ticks from this buffer (one consumer: the delivery task is not another).
    pub async fn next(&self) -> Option<Tick> {
        loop {
            if let Some(tick) = self.pop() {
                return Some(tick);
            }
            if self.closed.load(Ordering::Relaxed) {
                // A push may have come just before the close.
                return self.pop();
            }
            // `notify_one` keeps a permit when nobody waits, so no push is missed.
            self.ready.notified().await;
        }
    }

    /// Ticks waiting.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no tick is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Ticks dropped because the buffer was full.
    pub fn overflow(&self) -> u64 {
        self.overflow.load(Ordering::Relaxed)
    }

    /// No more ticks will come: the delivery task ends once the buffer is empty.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
        self.ready.notify_one();
    }
}

/// Delivers the buffer's ticks to `topic` until it is closed and empty; returns the number
/// acknowledged. Failed sends (Kafka unreachable past the producer's timeout) go back to the
/// buffer and are retried after `retry_after`. `delivered` counts acknowledgements as they come.
pub async fn deliver(
    buffer: &TickBuffer,
    producer: &TickProducer,
    topic: &str,
    retry_after: Duration,
    delivered: &AtomicU64,
) -> Result<u64, Error> {
    let mut in_flight = FuturesUnordered::new();
    let mut acked = 0u64;
    let mut failing = false;
    loop {
        while in_flight.len() < IN_FLIGHT {
            let Some(tick) = buffer.pop() else { break };
            let send = producer.send_owned(topic.to_owned(), tick.clone());
            in_flight.push(async move { (send.await, tick) });
        }
        if in_flight.is_empty() {
            if buffer.closed.load(Ordering::Relaxed) && buffer.is_empty() {
                break;
            }
            buffer.ready.notified().await;
            continue;
        }
        tokio::select! {
            Some((result, tick)) = in_flight.next() => match result {
                Ok(_) => {
                    acked += 1;
                    delivered.fetch_add(1, Ordering::Relaxed);
                    if failing {
                        info!(topic, "kafka reachable again; delivering the buffered ticks");
                        failing = false;
                    }
                }
                Err(e) if e.is_transient() => {
                    if !failing {
                        warn!(topic, error = %e, buffered = buffer.len(), "kafka unreachable; holding ticks in the buffer");
                        failing = true;
                    }
                    buffer.requeue(tick);
                    tokio::time::sleep(retry_after).await;
                }
                Err(e) => {
                    error!(topic, error = %e, "kafka refused the ticks; stopping delivery");
                    return Err(e);
                }
            },
            _ = buffer.ready.notified(), if in_flight.len() < IN_FLIGHT => {}
        }
    }
    producer.flush()?;
    Ok(acked)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tick(seq: u64) -> Tick {
        Tick::new("A", "1".parse().unwrap(), "1".parse().unwrap(), 0, seq)
    }

    #[test]
    fn a_full_buffer_drops_the_oldest_and_counts_it() {
        let b = TickBuffer::new(2);
        assert!(b.push(tick(1)).is_none());
        assert!(b.push(tick(2)).is_none());
        assert_eq!(b.push(tick(3)).map(|t| t.seq), Some(1));
        assert_eq!(b.overflow(), 1);
        assert_eq!(
            (b.pop().map(|t| t.seq), b.pop().map(|t| t.seq)),
            (Some(2), Some(3))
        );
        b.requeue(tick(9));
        assert_eq!(b.pop().map(|t| t.seq), Some(9));
    }
}
