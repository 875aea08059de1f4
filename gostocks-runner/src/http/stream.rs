//! Server-sent events: `GET /stream` (prices, stats rows and bars from the push sink,
//! `sinks/push.rs`) and `GET /alerts/stream` (the caller's alert events and delivery updates),
//! with the short-lived tokens `POST /alerts/stream-token` issues, since a browser's
//! `EventSource` cannot send an `Authorization` header.
//!
//! Every stream sends a heartbeat comment after [`HEARTBEAT`] without an event and ends when the
//! runner shuts down. The push feed holds at most [`LIVE`] frames (shared, not copied) for a
//! client and drops one that falls further behind, with a `dropped` event saying why; it then
//! resumes with `Last-Event-ID`. The alert stream drops no one: what a slow client misses of its
//! events is read back from the store (see [`Alerts::watch`]).

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures::Stream;
use gostocks_core::Symbol;
use gostocks_core::symbol::excerpt;
use rand::Rng;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;
use warp::Reply;
use warp::http::{StatusCode, header};
use warp::sse::Event;

use super::{Api, ApiError, Req, alerts, json_body};
use crate::alerts::DeliveryUpdate;
use crate::alerts::service::Alerts;
use crate::shutdown::Shutdown;
use crate::sinks::push::{Frame, Kind, LIVE, PushHub, Resume, StreamSlot, Subscription};

/// A comment is sent on a stream idle this long, so proxies and clients see it alive.
pub const HEARTBEAT: Duration = Duration::from_secs(15);
/// The most symbols one `GET /stream` names.
pub const MAX_SYMBOLS: usize = 100;
/// The longest `Last-Event-ID` (or `after`), in bytes.
pub const MAX_EVENT_ID: usize = 64;
/// How long a stream token may be used to open (or reopen) `GET /alerts/stream`.
pub const TOKEN_TTL: Duration = Duration::from_secs(60);
/// Stream tokens outstanding at once; more are refused (429) until some expire.
pub const MAX_TOKENS: usize = 10_000;
/// The length of a token: `gst_` and 32 hex digits.
const TOKEN_LEN: usize = 36;
const LAST_EVENT_ID: &str = "last-event-id";

/// Stream tokens: each names its user until it expires. Several streams may open with one
/// (an `EventSource` reconnects with the same URL) while it lives.
#[derive(Default)]
pub struct Tokens(Mutex<HashMap<String, (i64, Instant)>>);

impl Tokens {
    fn issue(&self, owner: i64) -> Result<String, ApiError> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        map.retain(|_, (_, until)| *until > now);
        if map.len() >= MAX_TOKENS {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "resource_exhausted",
                format!(
                    "{MAX_TOKENS} stream tokens are outstanding; retry once some expire (they last {} s)",
                    TOKEN_TTL.as_secs()
                ),
            ));
        }
        let bytes: [u8; 16] = rand::rng().random();
        let token = format!(
            "gst_{}",
            bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
        );
        map.insert(token.clone(), (owner, now + TOKEN_TTL));
        Ok(token)
    }

    fn owner(&self, token: &str) -> Option<i64> {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.get(token)
            .filter(|(_, until)| *until > Instant::now())
            .map(|(owner, _)| *owner)
    }
}

type Events = std::pin::Pin<Box<dyn Stream<Item = Result<Event, Infallible>> + Send>>;

fn reply(events: Events) -> warp::reply::Response {
    let events = warp::sse::keep_alive().interval(HEARTBEAT).stream(events);
    let events = sync_wrapper::SyncStream::new(futures::TryStreamExt::into_stream(events));
    let mut res = warp::sse::reply(events).into_response();
    // Proxies must pass events on as they come.
    res.headers_mut()
        .insert("x-accel-buffering", header::HeaderValue::from_static("no"));
    res
}

/// What `GET /stream` sends a client.
struct Filter {
    symbols: Vec<Symbol>,
    kinds: Vec<Kind>,
}

impl Filter {
    fn parse(req: &Req) -> Result<Filter, ApiError> {
        let mut symbols = Vec::new();
        for s in req.query.get("symbols").unwrap_or_default().split(',') {
            if s.is_empty() {
                continue;
            }
            let s = Symbol::new(s).map_err(|e| ApiError::bad_request(format!("symbols: {e}")))?;
            if !symbols.contains(&s) {
                symbols.push(s);
            }
            if symbols.len() > MAX_SYMBOLS {
                return Err(ApiError::bad_request(format!(
                    "symbols: at most {MAX_SYMBOLS}; leave it out for every symbol"
                )));
            }
        }
        let kinds = match req.query.get("kinds") {
            None => Kind::ALL.to_vec(),
            Some(list) => {
                let mut kinds = Vec::new();
                for k in list.split(',').filter(|k| !k.is_empty()) {
                    let kind = Kind::ALL
                        .into_iter()
                        .find(|kind| kind.plural() == k)
                        .ok_or_else(|| {
                            ApiError::bad_request(format!(
                                "kinds: {} is not one of price, stats, bars",
                                excerpt(k)
                            ))
                        })?;
                    if !kinds.contains(&kind) {
                        kinds.push(kind);
                    }
                }
                if kinds.is_empty() {
                    return Err(ApiError::bad_request(
                        "kinds: name at least one of price, stats, bars, or leave it out",
                    ));
                }
                kinds
            }
        };
        Ok(Filter { symbols, kinds })
    }

    fn wants(&self, f: &Frame) -> bool {
        self.kinds.contains(&f.kind)
            && (self.symbols.is_empty() || self.symbols.contains(&f.symbol))
    }
}

/// The `Last-Event-ID` header, if any: `<epoch>-<n>` as `/stream` numbers its events.
fn last_event_id(req: &Req) -> Result<Option<(u64, u64)>, ApiError> {
    let Some(value) = req.headers.get(LAST_EVENT_ID) else {
        return Ok(None);
    };
    let bad = || {
        ApiError::bad_request(format!(
            "Last-Event-ID: the id of an event of this stream (`<epoch>-<n>`, at most {MAX_EVENT_ID} bytes)"
        ))
    };
    let text = value.to_str().map_err(|_| bad())?.trim();
    if text.is_empty() {
        return Ok(None);
    }
    if text.len() > MAX_EVENT_ID {
        return Err(bad());
    }
    let (epoch, n) = text.split_once('-').ok_or_else(bad)?;
    match (epoch.parse(), n.parse()) {
        (Ok(epoch), Ok(n)) => Ok(Some((epoch, n))),
        _ => Err(bad()),
    }
}

/// `GET /stream?symbols=&kinds=`.
pub(super) fn market(api: &Api, req: &Req) -> Result<warp::reply::Response, ApiError> {
    req.read_only()?;
    req.query.only(&["symbols", "kinds"])?;
    let filter = Filter::parse(req)?;
    let last = last_event_id(req)?;
    let Some(hub) = &api.push else {
        return Err(super::no_route());
    };
    let sub = hub.subscribe(last).ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!(
                "{} push streams are open, the most this runner serves; retry later",
                crate::sinks::push::MAX_STREAMS
            ),
        )
    })?;
    let first = match sub.resume {
        Resume::Fresh | Resume::Exact => None,
        Resume::TooFarBehind => Some(reset(
            "too_far_behind",
            "events after Last-Event-ID have left the replay buffer: reload the state (GET /price, /stats, /bars) and go on from here",
        )),
        Resume::Unknown => Some(reset(
            "unknown_id",
            "Last-Event-ID is not an event of this runner (it restarted?): reload the state and go on from here",
        )),
    };
    Ok(reply(Box::pin(futures::stream::unfold(
        Feed::new(sub, filter, hub, &api.shutdown, first),
        Feed::next,
    ))))
}

fn reset(reason: &str, message: &str) -> Event {
    Event::default()
        .event("reset")
        .data(serde_json::json!({ "reason": reason, "message": message }).to_string())
}

/// One `GET /stream`: its backlog, then the live frames [`forward`] has queued for it.
struct Feed {
    backlog: VecDeque<Arc<Frame>>,
    live: mpsc::Receiver<Arc<Frame>>,
    /// How far behind the client fell, once [`forward`] has given up on it.
    slow: Arc<OnceLock<u64>>,
    filter: Arc<Filter>,
    hub: Arc<PushHub>,
    shutdown: Shutdown,
    first: Option<Event>,
    done: bool,
    _slot: StreamSlot,
}

impl Feed {
    /// The feed of `sub`, its live frames forwarded by a task of its own.
    fn new(
        sub: Subscription,
        filter: Filter,
        hub: &Arc<PushHub>,
        shutdown: &Shutdown,
        first: Option<Event>,
    ) -> Feed {
        let Subscription {
            resume: _,
            backlog,
            live,
            _slot: slot,
        } = sub;
        let filter = Arc::new(filter);
        let slow = Arc::new(OnceLock::new());
        let (tx, rx) = mpsc::channel(LIVE);
        tokio::spawn(forward(
            live,
            tx,
            Arc::clone(&filter),
            Arc::clone(hub),
            Arc::clone(&slow),
            shutdown.clone(),
        ));
        Feed {
            backlog,
            live: rx,
            slow,
            filter,
            hub: Arc::clone(hub),
            shutdown: shutdown.clone(),
            first,
            done: false,
            _slot: slot,
        }
    }

    async fn next(mut self) -> Option<(Result<Event, Infallible>, Feed)> {
        if self.done {
            return None;
        }
        if let Some(e) = self.first.take() {
            return Some((Ok(e), self));
        }
        while let Some(frame) = self.backlog.pop_front() {
            if self.filter.wants(&frame) {
                let e = self.event(&frame);
                return Some((Ok(e), self));
            }
        }
        let received = tokio::select! {
            () = self.shutdown.wait() => return None,
            f = self.live.recv() => f,
        };
        if let Some(frame) = received {
            let e = self.event(&frame);
            return Some((Ok(e), self));
        }
        // The forwarder has stopped and everything it queued has been handed on: it gave up
        // on this client (say why), or the runner is shutting down (just end).
        let behind = *self.slow.get()?;
        self.done = true;
        let data = serde_json::json!({
            "reason": "slow_client",
            "message": format!(
                "this client fell {behind} events behind the live feed ({LIVE} at most); reconnect with Last-Event-ID to resume"
            ),
        });
        Some((
            Ok(Event::default().event("dropped").data(data.to_string())),
            self,
        ))
    }

    fn event(&self, frame: &Frame) -> Event {
        Event::default()
            .id(self.hub.id(frame.n))
            .event(frame.kind.event())
            .data(frame.data.clone())
    }
}

/// Moves the frames a client wants from the live feed into its queue (`tx`, [`LIVE`] frames),
/// until the client goes away (its [`Feed`] is dropped), the runner shuts down, or the client
/// is too slow. It runs apart from the client's connection because that one stops polling its
/// stream when the client stops reading (the socket and hyper's buffer are full): read from
/// there, the live feed would never show a stalled client behind, so it would never be counted
/// or dropped.
///
/// Too slow is a full queue ([`LIVE`] frames the client has not taken), or frames the live
/// feed no longer holds for this task: either way it cannot be given every frame in order any
/// more, so it is counted once in the hub's `dropped`, marked in `slow` with how far behind it
/// is, and the task ends; the feed hands on what was queued, then the `dropped` event.
async fn forward(
    mut live: broadcast::Receiver<Arc<Frame>>,
    tx: mpsc::Sender<Arc<Frame>>,
    filter: Arc<Filter>,
    hub: Arc<PushHub>,
    slow: Arc<OnceLock<u64>>,
    shutdown: Shutdown,
) {
    // Made once, not per frame: this loop runs for every frame published.
    let mut gone = std::pin::pin!(tx.closed());
    let mut stopping = std::pin::pin!(shutdown.wait());
    let behind = loop {
        let received = tokio::select! {
            () = &mut gone => return,
            () = &mut stopping => return,
            r = live.recv() => r,
        };
        match received {
            // Filtered here, so the queue holds (and keeps alive) only frames it will send.
            Ok(frame) if !filter.wants(&frame) => {}
            Ok(frame) => match tx.try_send(frame) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => break LIVE as u64 + 1,
                Err(TrySendError::Closed(_)) => return,
            },
            Err(RecvError::Lagged(missed)) => {
                break (LIVE - tx.capacity()) as u64 + missed;
            }
            Err(RecvError::Closed) => return,
        }
    };
    hub.dropped.fetch_add(1, Ordering::Relaxed);
    let _ = slow.set(behind);
    // Set before `tx` is dropped here, so the feed, seeing its queue end, finds the mark.
}

/// `POST /alerts/stream-token`: a token for `GET /alerts/stream`, for the caller.
pub(super) async fn token(
    alerts: &Alerts,
    tokens: &Tokens,
    req: Req,
) -> Result<warp::reply::Response, ApiError> {
    req.query.only(&[])?;
    let call = alerts::request((), &req)?;
    drop(req);
    let owner = alerts.authenticate(&call).await.map_err(alerts::status)?;
    let token = tokens.issue(owner)?;
    Ok(json_body(
        serde_json::json!({ "token": token, "expires_in_s": TOKEN_TTL.as_secs() }).to_string(),
    ))
}

/// `GET /alerts/stream?token=[&after=]`: the caller's events (`alert`, with the event id as
/// SSE id), then live, with `delivery` updates.
pub(super) fn alert_stream(
    api: &Api,
    alerts: &Alerts,
    tokens: &Tokens,
    req: &Req,
) -> Result<warp::reply::Response, ApiError> {
    req.read_only()?;
    req.query.only(&["token", "after"])?;
    let unauthenticated = || {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            format!(
                "token: missing, unknown or expired; get one from POST /alerts/stream-token (it lasts {} s)",
                TOKEN_TTL.as_secs()
            ),
        )
    };
    let token = req.query.get("token").unwrap_or_default();
    if token.len() != TOKEN_LEN {
        return Err(unauthenticated());
    }
    let owner = tokens.owner(token).ok_or_else(unauthenticated)?;
    // `after` for a new EventSource (it cannot set headers), Last-Event-ID for its reconnects.
    let after = match req.headers.get(LAST_EVENT_ID) {
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|t| t.trim().parse::<i64>().ok())
                .filter(|n| *n >= 0)
                .ok_or_else(|| {
                    ApiError::bad_request("Last-Event-ID: an event id of this stream (0 or more)")
                })?,
        ),
        None => req.query.int("after", 0..=i64::MAX)?,
    };
    let events = alerts.watch(owner, after.unwrap_or(0), after.is_some());
    let deliveries = alerts.hub().subscribe_deliveries();
    let shutdown = api.shutdown.clone();
    let state = (events, deliveries, shutdown);
    let stream = futures::stream::unfold(
        state,
        move |(mut events, mut deliveries, shutdown)| async move {
            loop {
                let next = tokio::select! {
                    () = shutdown.wait() => return None,
                    e = events.recv() => Ok(e),
                    d = deliveries.recv() => Err(d),
                };
                let event = match next {
                    // The store failed, or the feed ended: the client reconnects.
                    Ok(Some(Err(_)) | None) => return None,
                    Ok(Some(Ok(e))) => Event::default()
                        .id(e.id.to_string())
                        .event("alert")
                        .data(alerts::event_json(&e).to_string()),
                    Err(Ok(d)) if d.owner == owner => Event::default()
                        .event("delivery")
                        .data(delivery_json(&d).to_string()),
                    // Another user's, or missed while lagging (GET .../deliveries has them).
                    Err(Ok(_) | Err(RecvError::Lagged(_))) => continue,
                    Err(Err(RecvError::Closed)) => return None,
                };
                return Some((Ok(event), (events, deliveries, shutdown)));
            }
        },
    );
    Ok(reply(Box::pin(stream)))
}

fn delivery_json(d: &DeliveryUpdate) -> serde_json::Value {
    serde_json::json!({
        "event_id": d.event_id,
        "channel_id": d.channel_id,
        "state": d.state,
        "attempts": d.attempts,
        "last_status": d.last_status,
        "last_error": d.last_error,
    })
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;

    use super::*;

    fn hub() -> Arc<PushHub> {
        Arc::new(PushHub::new(vec![], vec![]))
    }

    fn publish(hub: &PushHub, symbol: &str, count: usize) {
        let symbol = Symbol::new(symbol).unwrap();
        for i in 0..count {
            hub.publish(Kind::Price, &symbol, i.to_string());
        }
    }

    /// Every kind of `symbols` (all symbols if none).
    fn filter(symbols: &[&str]) -> Filter {
        Filter {
            symbols: symbols.iter().map(|s| Symbol::new(s).unwrap()).collect(),
            kinds: Kind::ALL.to_vec(),
        }
    }

    fn feed(hub: &Arc<PushHub>, last: Option<(u64, u64)>, symbols: &[&str]) -> Feed {
        let sub = hub.subscribe(last).unwrap();
        Feed::new(sub, filter(symbols), hub, &Shutdown::default(), None)
    }

    /// Lets the forwarding task run until `done`.
    async fn until(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < deadline, "{what}");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// The events a feed sends, as `(id or event name, data)`, until it ends or pauses.
    async fn events(feed: Feed) -> Vec<(String, String)> {
        let mut stream = std::pin::pin!(futures::stream::unfold(feed, Feed::next));
        let mut out = Vec::new();
        while let Ok(Some(Ok(e))) =
            tokio::time::timeout(Duration::from_millis(100), stream.next()).await
        {
            let text = e.to_string();
            let field = |name: &str| {
                text.lines()
                    .find_map(|l| l.strip_prefix(name))
                    .unwrap_or_default()
                    .to_owned()
            };
            let name = match field("id:") {
                id if id.is_empty() => field("event:"),
                id => id,
            };
            out.push((name, field("data:")));
        }
        out
    }

    #[tokio::test]
    async fn a_client_whose_stream_is_never_polled_is_still_dropped() {
        let hub = hub();
        let feed = feed(&hub, None, &[]);
        // A client that stops reading: hyper stops polling its stream, as this test never does.
        // In steps the forwarder keeps up with, so the queue, not the live feed, overflows.
        for published in (64..=LIVE).step_by(64) {
            publish(&hub, "AAPL", 64);
            until("the forwarder queues what is published", || {
                feed.live.len() == published
            })
            .await;
        }
        assert_eq!(hub.dropped.load(Ordering::Relaxed), 0, "not behind yet");
        publish(&hub, "AAPL", 1);
        until("the slow client is dropped", || {
            hub.dropped.load(Ordering::Relaxed) == 1
        })
        .await;
        // What was queued, in order, then the reason, then the end.
        let events = events(feed).await;
        assert_eq!(events.len(), LIVE + 1);
        for (i, (id, _)) in events[..LIVE].iter().enumerate() {
            assert_eq!(*id, hub.id(i as u64 + 1));
        }
        let (name, data) = &events[LIVE];
        assert_eq!(name, "dropped");
        let data: serde_json::Value = serde_json::from_str(data).unwrap();
        assert_eq!(data["reason"], "slow_client");
        assert!(
            data["message"]
                .as_str()
                .unwrap()
                .contains("4097 events behind"),
            "{data}"
        );
        publish(&hub, "AAPL", 2 * LIVE);
        assert_eq!(hub.dropped.load(Ordering::Relaxed), 1, "counted once");
    }

    #[tokio::test]
    async fn the_forwarding_task_ends_with_its_feed_and_on_shutdown() {
        let hub = hub();
        let idle = Arc::strong_count(&hub);
        let feed = feed(&hub, None, &[]);
        // Its stream slot, the feed and the forwarding task.
        assert_eq!(Arc::strong_count(&hub), idle + 3);
        drop(feed);
        until("the client is gone: the task ends", || {
            Arc::strong_count(&hub) == idle
        })
        .await;

        let shutdown = Shutdown::default();
        let sub = hub.subscribe(None).unwrap();
        let feed = Feed::new(sub, filter(&[]), &hub, &shutdown, None);
        shutdown.begin();
        until("shutting down: the task ends", || {
            Arc::strong_count(&hub) == idle + 2
        })
        .await;
        publish(&hub, "AAPL", 1);
        assert!(events(feed).await.is_empty(), "the stream ends");
        assert_eq!(hub.dropped.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn a_resume_gets_its_backlog_then_the_live_feed_both_filtered() {
        let hub = hub();
        publish(&hub, "AAPL", 2);
        publish(&hub, "MSFT", 2);
        publish(&hub, "AAPL", 1);
        let epoch = hub.id(0).split_once('-').unwrap().0.parse().unwrap();
        let feed = feed(&hub, Some((epoch, 1)), &["AAPL"]);
        publish(&hub, "MSFT", 1);
        publish(&hub, "AAPL", 1);
        let ids: Vec<String> = events(feed).await.into_iter().map(|(id, _)| id).collect();
        assert_eq!(ids, [2, 5, 7].map(|n| hub.id(n)));
    }
}
