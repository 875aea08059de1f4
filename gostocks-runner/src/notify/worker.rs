//! The delivery worker: claims due deliveries from the outbox, sends each with a timeout, at
//! most `per_host` at once per destination host, and records the outcome:
//! - 2xx: delivered;
//! - network error, timeout, 408, 429 (after its `Retry-After`) or 5xx: transient, due again
//!   after an exponential backoff with jitter, failed once older than `max_age`;
//! - anything else (other 4xx, a redirect, which is never followed): failed at once, logged.
//!
//! A claim leases the delivery: a runner killed mid-attempt leaves it due again when the lease
//! ends, and the next start sends it (with the same event id, so the receiver deduplicates).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use gostocks_connectors::postgres::notify::Claimed;
use rand::Rng;
use tokio::sync::Semaphore;

use super::{EVENT_ID_HEADER, Kind, SIGNATURE_HEADER};
use crate::alerts::AlertHub;
use crate::state::MarketState;

/// The most bytes of a response body read (the rest is dropped with the connection).
pub const MAX_RESPONSE: usize = 4096;
/// The longest error text recorded for a delivery.
const MAX_ERROR: usize = 300;
/// The longest `Retry-After` honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// How deliveries are sent.
#[derive(Clone, Debug)]
pub struct Config {
    /// Each attempt's timeout (connect, send, response head and body).
    pub timeout: Duration,
    /// A delivery still failing this long after its event is failed for good.
    pub max_age: Duration,
    /// The first retry's delay; each further one doubles, up to `max_backoff`.
    pub backoff: Duration,
    /// The longest delay between attempts.
    pub max_backoff: Duration,
    /// The most attempts in flight to one host.
    pub per_host: usize,
    /// The most attempts in flight in all.
    pub concurrency: usize,
    /// Whether loopback, private and link-local destinations are allowed.
    pub allow_private: bool,
}

/// The worker's counters, in `/metrics`.
pub struct Metrics {
    delivered: AtomicU64,
    failed: AtomicU64,
    retried: AtomicU64,
    depth: AtomicI64,
    attempt: prometheus_client::metrics::histogram::Histogram,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics {
            delivered: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            retried: AtomicU64::new(0),
            depth: AtomicI64::new(0),
            attempt: crate::metrics::latency_histogram(),
        }
    }
}

impl Metrics {
    fn observe(&self, took: Duration) {
        self.attempt.observe(took.as_secs_f64());
    }

    /// Registers the deliveries by outcome, the outbox depth and the attempt durations.
    pub fn register(&self, r: &mut prometheus_client::registry::Registry) {
        use crate::metrics::label;
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        crate::metrics::counters(
            r,
            "gostocks_notify_deliveries",
            "Delivery attempts by outcome: delivered, failed (for good), retry (transient failure).",
            vec![
                (label("outcome", "delivered"), get(&self.delivered)),
                (label("outcome", "failed"), get(&self.failed)),
                (label("outcome", "retry"), get(&self.retried)),
            ],
        );
        crate::metrics::gauge(
            r,
            "gostocks_notify_outbox_depth",
            "Deliveries pending in the outbox.",
            self.depth.load(Ordering::Relaxed),
        );
        r.register(
            "gostocks_notify_attempt_seconds",
            "How long delivery attempts took.",
            self.attempt.clone(),
        );
    }
}

/// What became of an attempt.
enum Outcome {
    Delivered(u16),
    Transient {
        status: Option<u16>,
        error: String,
        retry_after: Option<Duration>,
    },
    Definite {
        status: Option<u16>,
        error: String,
    },
}

/// Builds the delivery client: rustls, no redirects, a timeout per attempt, and (unless
/// private destinations are allowed) a resolver that drops private addresses.
pub fn client(config: &Config) -> anyhow::Result<reqwest::Client> {
    let mut b = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(config.timeout)
        .connect_timeout(config.timeout)
        .pool_max_idle_per_host(config.per_host)
        .user_agent(concat!("gostocks-notify/", env!("CARGO_PKG_VERSION")));
    if !config.allow_private {
        b = b.dns_resolver(Arc::new(super::PublicOnly));
    }
    Ok(b.build()?)
}

/// Runs the worker until `shutdown` starts: in-flight attempts are then left to their lease.
pub async fn run(
    hub: Arc<AlertHub>,
    state: Arc<MarketState>,
    config: Config,
    shutdown: crate::shutdown::Shutdown,
) -> anyhow::Result<()> {
    let client = client(&config)?;
    let lease = config.timeout * 2 + Duration::from_secs(5);
    let global = Arc::new(Semaphore::new(config.concurrency));
    let hosts: Arc<Mutex<HashMap<String, Arc<Semaphore>>>> = Arc::default();
    let inflight: Arc<Mutex<HashSet<i64>>> = Arc::default();
    let mut store_down = false;
    let mut depth_at = Instant::now() - Duration::from_secs(10);
    loop {
        if shutdown.started() {
            return Ok(());
        }
        if depth_at.elapsed() >= Duration::from_secs(1) {
            depth_at = Instant::now();
            if let Ok(d) = hub.store.outbox_depth().await {
                state.notify.depth.store(d, Ordering::Relaxed);
            }
        }
        let free = global.available_permits();
        if free > 0 {
            match hub.store.claim(free, lease).await {
                Ok(batch) => {
                    store_down = false;
                    for d in batch {
                        if !lock(&inflight).insert(d.id) {
                            continue;
                        }
                        let permit = Arc::clone(&global)
                            .acquire_owned()
                            .await
                            .expect("never closed");
                        let host = reqwest::Url::parse(&d.channel.url)
                            .ok()
                            .and_then(|u| u.host_str().map(str::to_owned))
                            .unwrap_or_default();
                        let per_host = Arc::clone(
                            lock(&hosts)
                                .entry(host)
                                .or_insert_with(|| Arc::new(Semaphore::new(config.per_host))),
                        );
                        let (hub, state, client, config, inflight) = (
                            Arc::clone(&hub),
                            Arc::clone(&state),
                            client.clone(),
                            config.clone(),
                            Arc::clone(&inflight),
                        );
                        tokio::spawn(async move {
                            let _permit = permit;
                            let _host = per_host.acquire_owned().await.expect("never closed");
                            let id = d.id;
                            deliver(&hub, &state, &client, &config, d).await;
                            lock(&inflight).remove(&id);
                            hub.wake.notify_one();
                        });
                    }
                }
                Err(error) => {
                    if !store_down {
                        tracing::warn!(
                            error = format!("{error:#}"),
                            "claiming deliveries failed; retrying"
                        );
                    }
                    store_down = true;
                }
            }
        }
        tokio::select! {
            () = hub.wake.notified() => {}
            () = tokio::time::sleep(Duration::from_millis(250)) => {}
            () = shutdown.wait() => return Ok(()),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One attempt at `d`, and its outcome recorded.
async fn deliver(
    hub: &AlertHub,
    state: &MarketState,
    client: &reqwest::Client,
    config: &Config,
    d: Claimed,
) {
    let kind = Kind::parse(&d.channel.kind).unwrap_or(Kind::Webhook);
    let body = super::body(kind, &d);
    let event_id = super::event_id(&d);
    let started = Instant::now();
    let outcome = attempt(client, config, &d, kind, &event_id, body).await;
    state.notify.observe(started.elapsed());
    let m = &state.notify;
    let (st, retry_after, status, error) = match outcome {
        Outcome::Delivered(status) => {
            m.delivered.fetch_add(1, Ordering::Relaxed);
            ("delivered", Duration::ZERO, Some(status), None)
        }
        Outcome::Transient {
            status,
            error,
            retry_after,
        } => {
            let delay = retry_after.unwrap_or_else(|| backoff(config, d.attempts));
            if d.age + delay > config.max_age {
                m.failed.fetch_add(1, Ordering::Relaxed);
                let error = format!(
                    "gave up after {} attempts over {}: {error}",
                    d.attempts,
                    humantime::format_duration(Duration::from_secs(d.age.as_secs()))
                );
                tracing::warn!(delivery = d.id, channel = %d.channel.id, event = %event_id, status, error, "notification failed");
                ("failed", Duration::ZERO, status, Some(error))
            } else {
                m.retried.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(delivery = d.id, channel = %d.channel.id, event = %event_id, status, error, delay_ms = delay.as_millis() as u64, "notification will be retried");
                ("pending", delay, status, Some(error))
            }
        }
        Outcome::Definite { status, error } => {
            m.failed.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(delivery = d.id, channel = %d.channel.id, event = %event_id, status, error, "notification failed");
            ("failed", Duration::ZERO, status, Some(error))
        }
    };
    // The outcome must be recorded, or the lease ends and the delivery is sent again.
    for wait in [0, 200, 1000, 5000] {
        tokio::time::sleep(Duration::from_millis(wait)).await;
        match hub
            .store
            .finish(
                d.id,
                st,
                retry_after,
                status.map(i32::from),
                error.as_deref(),
            )
            .await
        {
            Ok(()) => {
                hub.delivery_updated(crate::alerts::DeliveryUpdate {
                    owner: d.event.owner,
                    event_id: d.event.id,
                    channel_id: d.channel.id.clone(),
                    state: st,
                    attempts: d.attempts,
                    last_status: status,
                    last_error: error,
                });
                return;
            }
            Err(e) => {
                tracing::warn!(
                    delivery = d.id,
                    error = format!("{e:#}"),
                    "recording a delivery failed"
                )
            }
        }
    }
}

/// The delay before attempt `attempts + 1`: `backoff * 2^(attempts - 1)`, at most
/// `max_backoff`, jittered to between half and all of it.
fn backoff(config: &Config, attempts: i32) -> Duration {
    let exp = u32::try_from(attempts.saturating_sub(1))
        .unwrap_or(0)
        .min(30);
    let full = config
        .backoff
        .saturating_mul(1u32 << exp)
        .min(config.max_backoff);
    let half = full / 2;
    half + half.mul_f64(rand::rng().random::<f64>())
}

fn excerpt(s: &str) -> String {
    let mut out: String = s
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_ERROR)
        .collect();
    if out.len() < s.len() {
        out.push_str("...");
    }
    out
}

async fn attempt(
    client: &reqwest::Client,
    config: &Config,
    d: &Claimed,
    kind: Kind,
    event_id: &str,
    body: String,
) -> Outcome {
    let url = match reqwest::Url::parse(&d.channel.url) {
        Ok(u) => u,
        Err(_) => {
            return Outcome::Definite {
                status: None,
                error: "the channel URL does not parse".into(),
            };
        }
    };
    // An address literal is not resolved, so the resolver's check does not see it.
    if !config.allow_private
        && let Some(ip) = url
            .host_str()
            .and_then(|h| h.trim_start_matches('[').trim_end_matches(']').parse().ok())
        && super::is_private(ip)
    {
        return Outcome::Definite {
            status: None,
            error: "the destination is a private address; refused".into(),
        };
    }
    let mut req = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(EVENT_ID_HEADER, event_id);
    if kind == Kind::Webhook && !d.channel.secret.is_empty() {
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        req = req.header(
            SIGNATURE_HEADER,
            super::sign(&d.channel.secret, t, body.as_bytes()),
        );
    }
    let mut resp = match req.body(body).send().await {
        Ok(r) => r,
        // Without the URL: a chat webhook's URL is itself a secret.
        Err(e) => return network(e),
    };
    let status = resp.status();
    let retry_after = retry_after(resp.headers()).map(|d| d.min(MAX_RETRY_AFTER));
    let mut text = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                let room = MAX_RESPONSE - text.len();
                text.extend_from_slice(&chunk[..chunk.len().min(room)]);
                if text.len() >= MAX_RESPONSE {
                    break;
                }
            }
            Ok(None) => break,
            Err(e) if status.is_success() => {
                // The receiver answered 2xx: what follows does not change that.
                let _ = e;
                break;
            }
            Err(e) => return network(e),
        }
    }
    let code = status.as_u16();
    if status.is_success() {
        return Outcome::Delivered(code);
    }
    let error = format!("HTTP {code}: {}", excerpt(&String::from_utf8_lossy(&text)));
    if code == 408 || code == 429 || status.is_server_error() {
        Outcome::Transient {
            status: Some(code),
            error,
            retry_after: if code == 429 { retry_after } else { None },
        }
    } else if status.is_redirection() {
        Outcome::Definite {
            status: Some(code),
            error: format!("HTTP {code}: redirects are not followed; give the final URL"),
        }
    } else {
        Outcome::Definite {
            status: Some(code),
            error,
        }
    }
}

fn network(e: reqwest::Error) -> Outcome {
    let why = if e.is_timeout() {
        "the attempt timed out".to_owned()
    } else if e.is_connect() {
        "connecting failed".to_owned()
    } else {
        format!("the request failed: {}", e.without_url())
    };
    Outcome::Transient {
        status: None,
        error: why,
        retry_after: None,
    }
}

/// The `Retry-After` of an answer, in whole seconds (the HTTP-date form is not read).
pub(crate) fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}
