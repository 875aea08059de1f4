//! Push to browsers as a sink: prices as taken in, stats rows and bars once final, each turned
//! into its JSON once and numbered, into a bounded replay buffer ([`PushHub`]) that the
//! server-sent event streams (`GET /stream`, `http/stream.rs`) read from. It never fails and
//! never waits on a client: a client too slow for the live feed is dropped (told why), and one
//! that resumes from an id the buffer no longer holds is told to reload.
//!
//! Ids are `<epoch>-<n>`: `n` counts frames from 1, and `epoch` is this process's start, so an id
//! from before a restart is recognised as such instead of being taken for a position.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use gostocks_core::Symbol;
use gostocks_core::stats::JsonDecimals;
use tokio::sync::broadcast;

use super::{Output, Sink, SinkError, Takes};

/// Frames kept for clients that resume with `Last-Event-ID`.
pub const REPLAY: usize = 16_384;
/// Frames a connected client may fall behind the live feed before it is dropped: what its own
/// queue holds (`http/stream.rs`), and what the live feed keeps for the task that fills it.
pub const LIVE: usize = 4_096;
/// Push streams open at once (each also holds one of `--max-connections`).
pub const MAX_STREAMS: usize = 4_096;

/// What a frame carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A last price, as taken in.
    Price,
    /// A final stats row.
    Stats,
    /// A final bar.
    Bar,
}

impl Kind {
    /// Every kind, as `kinds=` names them.
    pub const ALL: [Kind; 3] = [Kind::Price, Kind::Stats, Kind::Bar];

    /// The SSE event name (`price`, `stats`, `bar`).
    pub fn event(self) -> &'static str {
        match self {
            Kind::Price => "price",
            Kind::Stats => "stats",
            Kind::Bar => "bar",
        }
    }

    /// The name `kinds=` uses for it (`price`, `stats`, `bars`).
    pub fn plural(self) -> &'static str {
        match self {
            Kind::Price => "price",
            Kind::Stats => "stats",
            Kind::Bar => "bars",
        }
    }
}

/// One pushed output, its JSON written once for every client.
#[derive(Debug)]
pub struct Frame {
    /// Its position in the feed (ids are `<epoch>-<n>`).
    pub n: u64,
    /// What it is.
    pub kind: Kind,
    /// Whose it is.
    pub symbol: Symbol,
    /// The JSON body: the REST API's form of the price, stats row or bar.
    pub data: String,
}

/// Where a resuming client stands.
#[derive(Debug, PartialEq, Eq)]
pub enum Resume {
    /// No `Last-Event-ID`: live from now.
    Fresh,
    /// Every frame after it is still held: they come first.
    Exact,
    /// The id is from before this process started, or past the newest frame.
    Unknown,
    /// Frames after it have left the buffer: the client must reload.
    TooFarBehind,
}

/// What a new stream starts from: the frames it missed (if any), then the live feed.
pub struct Subscription {
    /// How the resume went.
    pub resume: Resume,
    /// Frames after the client's id, oldest first.
    pub backlog: VecDeque<Arc<Frame>>,
    /// The live feed, from just after the backlog.
    pub live: broadcast::Receiver<Arc<Frame>>,
    /// Holds one of [`MAX_STREAMS`] until dropped.
    pub _slot: StreamSlot,
}

/// One open stream, counted while it lives.
pub struct StreamSlot(Arc<PushHub>);

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.0.streams.fetch_sub(1, Ordering::Relaxed);
    }
}

struct Ring {
    frames: VecDeque<Arc<Frame>>,
    next: u64,
}

/// The replay buffer and live feed of pushed frames.
pub struct PushHub {
    epoch: u64,
    ring: Mutex<Ring>,
    live: broadcast::Sender<Arc<Frame>>,
    streams: AtomicUsize,
    /// Clients dropped for falling behind.
    pub dropped: AtomicU64,
    windows: Vec<String>,
    bars: Vec<String>,
}

impl PushHub {
    /// An empty hub; stats rows and bars are labelled with `windows` and `bars`.
    pub fn new(windows: Vec<String>, bars: Vec<String>) -> PushHub {
        let epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        PushHub {
            epoch,
            ring: Mutex::new(Ring {
                frames: VecDeque::with_capacity(REPLAY),
                next: 1,
            }),
            live: broadcast::channel(LIVE).0,
            streams: AtomicUsize::new(0),
            dropped: AtomicU64::new(0),
            windows,
            bars,
        }
    }

    /// The SSE id of frame `n`.
    pub fn id(&self, n: u64) -> String {
        format!("{}-{n}", self.epoch)
    }

    /// Streams open now.
    pub fn streams(&self) -> usize {
        self.streams.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Ring> {
        self.ring.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Numbers a frame, keeps it for resumes and hands it to the live streams.
    pub fn publish(&self, kind: Kind, symbol: &Symbol, data: String) {
        let mut ring = self.lock();
        let frame = Arc::new(Frame {
            n: ring.next,
            kind,
            symbol: *symbol,
            data,
        });
        ring.next += 1;
        if ring.frames.len() == REPLAY {
            ring.frames.pop_front();
        }
        ring.frames.push_back(Arc::clone(&frame));
        // Sent under the lock, so a subscriber sees each frame either in its backlog or live.
        let _ = self.live.send(frame);
    }

    /// A new stream after `last` (a `Last-Event-ID`, already checked to be `<epoch>-<n>`), or
    /// `None` when [`MAX_STREAMS`] are open.
    pub fn subscribe(self: &Arc<Self>, last: Option<(u64, u64)>) -> Option<Subscription> {
        if self.streams.fetch_add(1, Ordering::Relaxed) >= MAX_STREAMS {
            self.streams.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        let slot = StreamSlot(Arc::clone(self));
        let ring = self.lock();
        let live = self.live.subscribe();
        let oldest = ring.frames.front().map_or(ring.next, |f| f.n);
        let (resume, backlog) = match last {
            None => (Resume::Fresh, VecDeque::new()),
            Some((epoch, n)) if epoch != self.epoch || n >= ring.next => {
                (Resume::Unknown, VecDeque::new())
            }
            Some((_, n)) if n + 1 < oldest => (Resume::TooFarBehind, VecDeque::new()),
            Some((_, n)) => {
                let skip = (n + 1 - oldest) as usize;
                (
                    Resume::Exact,
                    ring.frames.iter().skip(skip).cloned().collect(),
                )
            }
        };
        Some(Subscription {
            resume,
            backlog,
            live,
            _slot: slot,
        })
    }
}

/// Hands prices, stats rows and bars to a [`PushHub`].
pub struct Push(pub Arc<PushHub>);

impl Sink for Push {
    fn name(&self) -> &str {
        "push"
    }

    fn takes(&self) -> Takes {
        Takes {
            events: false,
            shared: false,
            ..Takes::ALL
        }
    }

    async fn write(&mut self, batch: &[Output]) -> Result<(), SinkError> {
        let hub = &self.0;
        for output in batch {
            match output {
                Output::Price(symbol, p) => {
                    let data = serde_json::json!({
                        "symbol": symbol.as_str(),
                        "price": p.price.to_string(),
                        "time_ns": p.time_ns,
                    });
                    hub.publish(Kind::Price, symbol, data.to_string());
                }
                Output::Stats(row) => {
                    let Some(label) = hub.windows.get(row.window as usize) else {
                        continue;
                    };
                    let mut data = String::new();
                    row.write_json_as(&mut data, label, JsonDecimals::Strings);
                    hub.publish(Kind::Stats, &row.symbol, data);
                }
                Output::Bar(row) => {
                    let Some(label) = hub.bars.get(row.bar as usize) else {
                        continue;
                    };
                    let mut data = String::new();
                    row.write_json_as(&mut data, label, JsonDecimals::Strings);
                    hub.publish(Kind::Bar, &row.symbol, data);
                }
                Output::Event(_) | Output::Mark(_) => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub() -> Arc<PushHub> {
        Arc::new(PushHub::new(vec!["60s".into()], vec!["1s".into()]))
    }

    fn publish(hub: &PushHub, count: usize) {
        let sym = Symbol::new("AAPL").unwrap();
        for i in 0..count {
            hub.publish(Kind::Price, &sym, i.to_string());
        }
    }

    #[test]
    fn a_resume_gets_exactly_the_frames_after_its_id() {
        let hub = hub();
        publish(&hub, 10);
        let sub = hub.subscribe(Some((hub.epoch, 4))).unwrap();
        assert_eq!(sub.resume, Resume::Exact);
        let ns: Vec<u64> = sub.backlog.iter().map(|f| f.n).collect();
        assert_eq!(ns, (5..=10).collect::<Vec<_>>());
        let sub = hub.subscribe(Some((hub.epoch, 10))).unwrap();
        assert_eq!((sub.resume, sub.backlog.len()), (Resume::Exact, 0));
    }

    #[test]
    fn ids_the_buffer_no_longer_holds_or_never_held_are_told_apart() {
        let hub = hub();
        publish(&hub, REPLAY + 10);
        assert_eq!(
            hub.subscribe(Some((hub.epoch, 5))).unwrap().resume,
            Resume::TooFarBehind
        );
        // The oldest held frame is 11: resuming after 10 misses nothing.
        assert_eq!(
            hub.subscribe(Some((hub.epoch, 10))).unwrap().resume,
            Resume::Exact
        );
        assert_eq!(
            hub.subscribe(Some((hub.epoch + 1, 5))).unwrap().resume,
            Resume::Unknown
        );
        assert_eq!(
            hub.subscribe(Some((hub.epoch, u64::MAX))).unwrap().resume,
            Resume::Unknown
        );
    }

    #[test]
    fn streams_are_counted_and_bounded() {
        let hub = hub();
        let subs: Vec<_> = (0..MAX_STREAMS)
            .map(|_| hub.subscribe(None).unwrap())
            .collect();
        assert_eq!(hub.streams(), MAX_STREAMS);
        assert!(hub.subscribe(None).is_none());
        drop(subs);
        assert_eq!(hub.streams(), 0);
        assert!(hub.subscribe(None).is_some());
    }
}
