//! Server-sent events: `GET /stream` (prices, stats rows and bars from the push sink,
//! `sinks/push.rs`) and `GET /alerts/stream` (the caller's alert events and delivery updates),
//! with the short-lived tokens `POST /alerts/stream-token` issues, since a browser's
//! `EventSource` cannot send an `Authorization` header.
//!
//! Every stream sends a heartbeat comment after [`HEARTBEAT`] without an event, ends when the
//! runner shuts down, and never buffers for a slow client: the push feed drops a client that
//! falls [`crate::sinks::push::LIVE`] frames behind, with a `dropped` event saying why; it then
//! resumes with `Last-Event-ID`.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::Stream;
use gostocks_core::Symbol;
use gostocks_core::symbol::excerpt;
use rand::Rng;
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;
use warp::Reply;
use warp::http::{StatusCode, header};
use warp::sse::Event;

use super::{Api, ApiError, Req, alerts, json_body};
use crate::alerts::DeliveryUpdate;
use crate::alerts::service::Alerts;
use crate::sinks::push::{Frame, Kind, PushHub, Resume, Subscription};

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
    let feed = Feed {
        sub,
        filter,
        hub: Arc::clone(hub),
        shutdown: api.shutdown.clone(),
        first,
        done: false,
    };
    Ok(reply(Box::pin(futures::stream::unfold(feed, Feed::next))))
}

fn reset(reason: &str, message: &str) -> Event {
    Event::default()
        .event("reset")
        .data(serde_json::json!({ "reason": reason, "message": message }).to_string())
}

struct Feed {
    sub: Subscription,
    filter: Filter,
    hub: Arc<PushHub>,
    shutdown: crate::shutdown::Shutdown,
    first: Option<Event>,
    done: bool,
}

impl Feed {
    async fn next(mut self) -> Option<(Result<Event, Infallible>, Feed)> {
        if self.done {
            return None;
        }
        if let Some(e) = self.first.take() {
            return Some((Ok(e), self));
        }
        loop {
            let frame = match self.sub.backlog.pop_front() {
                Some(f) => f,
                None => {
                    let received = tokio::select! {
                        () = self.shutdown.wait() => return None,
                        r = self.sub.live.recv() => r,
                    };
                    match received {
                        Ok(f) => f,
                        Err(RecvError::Closed) => return None,
                        Err(RecvError::Lagged(missed)) => {
                            self.hub
                                .dropped
                                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            self.done = true;
                            self.sub.backlog = VecDeque::new();
                            let data = serde_json::json!({
                                "reason": "slow_client",
                                "message": format!(
                                    "this client fell {missed} events behind the live feed ({} at most); reconnect with Last-Event-ID to resume",
                                    crate::sinks::push::LIVE
                                ),
                            });
                            return Some((
                                Ok(Event::default().event("dropped").data(data.to_string())),
                                self,
                            ));
                        }
                    }
                }
            };
            if self.filter.wants(&frame) {
                let e = Event::default()
                    .id(self.hub.id(frame.n))
                    .event(frame.kind.event())
                    .data(frame.data.clone());
                return Some((Ok(e), self));
            }
        }
    }
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
