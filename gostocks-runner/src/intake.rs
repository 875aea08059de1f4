//! The sources' way into the dataflow: one bounded channel per timely worker. Each source (a
//! Kafka partition, or the replayed recording) is read by exactly one worker,
//! `source % workers`; [`Intake::send`] hands it a [`SourceTicks`], and the worker takes it from
//! its end of [`Taps`].

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::{Arc, Mutex};

use gostocks_core::Tick;

/// Ticks from one source: a Kafka partition, or the replayed file (source 0). An empty batch
/// announces a source.
pub struct SourceTicks {
    /// Which source; each has its own watermark.
    pub source: u32,
    /// The ticks, in the source's order.
    pub ticks: Vec<Tick>,
    /// The source is gone (a partition revoked by a rebalance): it no longer takes part in
    /// event time.
    pub retired: bool,
}

impl SourceTicks {
    /// Ticks of `source`.
    pub fn of(source: u32, ticks: Vec<Tick>) -> SourceTicks {
        SourceTicks {
            source,
            ticks,
            retired: false,
        }
    }
}

/// The sending end: the sources hand their ticks to the worker that reads them, which validates
/// them, keeps its source's watermark and sends them into the dataflow; inside the dataflow the
/// ticks are exchanged by symbol.
#[derive(Clone)]
pub struct Intake {
    senders: Vec<SyncSender<SourceTicks>>,
    wakers: Arc<Wakers>,
    unread: Arc<Vec<AtomicUsize>>,
    ready: Arc<AtomicBool>,
}

/// The worker threads, to wake one when a batch is waiting for it.
#[derive(Default)]
pub(crate) struct Wakers(Mutex<Vec<Option<std::thread::Thread>>>);

impl Wakers {
    pub(crate) fn register(&self, index: usize) {
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

    pub(crate) fn wake_all_but(&self, index: usize) {
        let threads = self.0.lock().unwrap_or_else(|e| e.into_inner());
        for (i, thread) in threads.iter().enumerate() {
            if let Some(thread) = thread.as_ref().filter(|_| i != index) {
                thread.unpark();
            }
        }
    }
}

/// The receiving ends of [`Intake`], one per worker, for `dataflow::run`.
pub struct Taps {
    pub(crate) receivers: Vec<Mutex<Option<Receiver<SourceTicks>>>>,
    pub(crate) wakers: Arc<Wakers>,
    /// Batches sent to each worker and not yet taken in. A worker with unread batches may
    /// have a source announced there that it does not know yet, so it does not follow the
    /// others' event time until it has read them.
    pub(crate) unread: Arc<Vec<AtomicUsize>>,
    /// Set once the sources have been announced (see [`Intake::announced`]).
    pub(crate) ready: Arc<AtomicBool>,
}

impl Intake {
    /// Channels for `workers` workers, each holding up to `capacity` batches in total.
    pub fn new(workers: usize, capacity: usize) -> (Intake, Taps) {
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
        let ready = Arc::new(AtomicBool::new(false));
        let taps = Taps {
            receivers,
            wakers: Arc::clone(&wakers),
            unread: Arc::clone(&unread),
            ready: Arc::clone(&ready),
        };
        (
            Intake {
                senders,
                wakers,
                unread,
                ready,
            },
            taps,
        )
    }

    /// Every source this process starts with has been announced (the replayed file at once; a
    /// Kafka consumer's first assignment). Until then a worker without sources of its own does
    /// not follow the others' event time: in a cluster, another process may be far ahead, and
    /// the partitions of this one, replayed from their beginning, would find their ticks late.
    pub fn announced(&self) {
        self.ready.store(true, Ordering::SeqCst);
        self.wakers.wake_all_but(usize::MAX);
    }

    /// Hands `ticks` to the worker that reads its source; `false` once the dataflow is gone.
    pub fn send(&self, ticks: SourceTicks) -> bool {
        let index = ticks.source as usize % self.senders.len();
        // Counted before it is sent: from now on the worker knows it has something to read.
        self.unread[index].fetch_add(1, Ordering::SeqCst);
        let sent = self.senders[index].send(ticks).is_ok();
        if !sent {
            self.unread[index].fetch_sub(1, Ordering::SeqCst);
        }
        self.wakers.wake(index);
        sent
    }
}
