//! The socket loop, the same for every [`Provider`]: connect, subscribe, read with a timeout, ping,
//! reconnect with backoff and jitter, drop duplicates, report gaps, record frames.

use std::future::Future;
use std::time::{SystemTime, UNIX_EPOCH};

use futures::{SinkExt, StreamExt};
use gostocks_core::Tick;
use gostocks_core::quotes::Quote;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tracing::{debug, error, info, warn};

use super::{
    ClientConfig, Dedup, IngestMetrics, Notice, Output, Provider, Recorder, Verdict, redact_url,
};
use crate::error::Error;
use crate::limits::bound_reason;

/// Content-based duplicate detection remembers at most this many trades (a bound on memory for
/// very busy symbols; a minute of the busiest US stocks is well below it).
const DEDUP_CAPACITY: usize = 200_000;

/// Why a connection ended.
enum End {
    /// Shut down on request.
    Shutdown,
    /// Lost or dropped: reconnect.
    Lost,
}

/// Ns since the epoch, now.
pub fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Streams `provider`'s trades into `sink` until `shutdown` resolves (then `Ok`) or the provider
/// says retrying cannot help (then the error, to stop the ingestor with). Lost connections are
/// re-made with backoff; the subscriptions are sent again on each.
pub async fn run(
    provider: &mut dyn Provider,
    config: &ClientConfig,
    metrics: &IngestMetrics,
    recorder: Option<Recorder>,
    sink: impl FnMut(Tick),
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    run_with_quotes(provider, config, metrics, recorder, sink, |_| {}, shutdown).await
}

/// [`run`], handing the provider's quotes (see [`Output::quotes`]) to `quote_sink`.
pub async fn run_with_quotes(
    provider: &mut dyn Provider,
    config: &ClientConfig,
    metrics: &IngestMetrics,
    mut recorder: Option<Recorder>,
    mut sink: impl FnMut(Tick),
    mut quote_sink: impl FnMut(Quote),
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    // wss:// needs a process-wide rustls crypto provider; installing one that is already
    // installed is a harmless no-op, so this is safe to repeat.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let name = provider.name();
    let url = provider.connect_url();
    let shown = redact_url(&url);
    let mut dedup = Dedup::new(
        provider.contiguous_ids(),
        i64::try_from(config.dedup_horizon.as_nanos()).unwrap_or(i64::MAX),
        DEDUP_CAPACITY,
    );
    let mut attempt: u32 = 0;
    let mut connected_before = false;
    tokio::pin!(shutdown);
    loop {
        // tungstenite's own limits are 64 MiB per message and 16 MiB per frame: a message over
        // ours is refused as it comes in, never buffered whole.
        let limits = WebSocketConfig::default()
            .max_message_size(Some(config.max_message_bytes))
            .max_frame_size(Some(config.max_message_bytes));
        let connecting = tokio::time::timeout(
            config.read_timeout,
            tokio_tungstenite::connect_async_with_config(url.as_str(), Some(limits), false),
        );
        let socket = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            result = connecting => result,
        };
        let failure = match socket {
            Ok(Ok((ws, _))) => {
                info!(provider = name, url = %shown, "connected");
                if connected_before {
                    dedup.reconnected();
                }
                connected_before = true;
                let mut session = Session {
                    provider: &mut *provider,
                    config,
                    metrics,
                    recorder: &mut recorder,
                    dedup: &mut dedup,
                    sink: &mut sink,
                    quote_sink: &mut quote_sink,
                    streamed: false,
                };
                let end = session.stream(ws, &mut shutdown).await?;
                if session.streamed {
                    attempt = 0;
                }
                match end {
                    End::Shutdown => return Ok(()),
                    End::Lost => None,
                }
            }
            Ok(Err(e)) => Some(e),
            Err(_) => {
                warn!(provider = name, url = %shown, timeout = ?config.read_timeout, "connect timed out");
                None
            }
        };
        if let Some(e) = failure {
            let refused = matches!(&e, tungstenite::Error::Http(r) if matches!(r.status().as_u16(), 401 | 403));
            if refused {
                // A refused handshake is bad credentials: the same request will be refused again.
                error!(provider = name, url = %shown, error = %e, "credentials refused; check the token or keys");
                return Err(Error::WebSocket {
                    context: format!(
                        "{name} refused the connection to {shown}: check the credentials"
                    ),
                    source: Box::new(e),
                });
            }
            warn!(provider = name, url = %shown, error = %e, "cannot connect");
        }
        let delay = config.backoff(attempt, rand::random::<f64>());
        attempt = attempt.saturating_add(1);
        IngestMetrics::bump(&metrics.reconnects);
        info!(provider = name, attempt, delay = ?delay, "reconnecting");
        tokio::select! {
            _ = &mut shutdown => return Ok(()),
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

struct Session<'a, S, Q> {
    provider: &'a mut dyn Provider,
    config: &'a ClientConfig,
    metrics: &'a IngestMetrics,
    recorder: &'a mut Option<Recorder>,
    dedup: &'a mut Dedup,
    sink: &'a mut S,
    quote_sink: &'a mut Q,
    /// Whether a trade arrived on this connection (a healthy one: backoff starts over).
    streamed: bool,
}

impl<S: FnMut(Tick), Q: FnMut(Quote)> Session<'_, S, Q> {
    async fn stream(
        &mut self,
        mut ws: Socket,
        shutdown: &mut (impl Future<Output = ()> + Unpin),
    ) -> Result<End, Error> {
        let name = self.provider.name();
        let mut out = Output::default();
        self.provider.on_connect(&mut out);
        if !self.send(&mut ws, &mut out).await {
            return Ok(End::Lost);
        }
        let mut ping = tokio::time::interval(self.config.ping_interval);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ping.tick().await;
        // Any frame (data, ping, pong) shows the connection alive; our pings make a live server
        // answer even when the market is quiet.
        let mut deadline = tokio::time::Instant::now() + self.config.read_timeout;
        loop {
            let next = tokio::time::timeout_at(deadline, ws.next());
            let message = tokio::select! {
                _ = &mut *shutdown => {
                    let _ = ws.close(None).await;
                    return Ok(End::Shutdown);
                }
                _ = ping.tick() => {
                    if let Err(e) = ws.send(Message::Ping(Vec::new().into())).await {
                        warn!(provider = name, error = %e, "ping failed; reconnecting");
                        return Ok(End::Lost);
                    }
                    continue;
                }
                m = next => m,
            };
            if matches!(message, Ok(Some(Ok(_)))) {
                deadline = tokio::time::Instant::now() + self.config.read_timeout;
            }
            let text = match message {
                Err(_) => {
                    warn!(provider = name, timeout = ?self.config.read_timeout, "no frame, ping or pong within the read timeout; the connection is presumed dead, reconnecting");
                    return Ok(End::Lost);
                }
                Ok(None) => {
                    warn!(provider = name, "server closed the stream; reconnecting");
                    return Ok(End::Lost);
                }
                Ok(Some(Err(tungstenite::Error::Capacity(e)))) => {
                    IngestMetrics::bump(&self.metrics.parse_errors);
                    warn!(provider = name, error = %e, limit = self.config.max_message_bytes, "message over the size limit (--max-record-bytes); reconnecting");
                    return Ok(End::Lost);
                }
                Ok(Some(Err(e))) => {
                    warn!(provider = name, error = %e, "connection lost; reconnecting");
                    return Ok(End::Lost);
                }
                Ok(Some(Ok(Message::Text(text)))) => text,
                Ok(Some(Ok(Message::Close(frame)))) => {
                    warn!(provider = name, frame = ?frame, "server closed the connection; reconnecting");
                    return Ok(End::Lost);
                }
                // Pings are answered by tungstenite itself; pongs and binary frames only show
                // the connection is alive.
                Ok(Some(Ok(_))) => continue,
            };
            let mut out = Output::default();
            let verdict = self.frame(text.as_str(), &mut out);
            if !self.send(&mut ws, &mut out).await {
                return Ok(End::Lost);
            }
            if let Err(e) = verdict {
                IngestMetrics::bump(&self.metrics.provider_errors);
                if e.retry {
                    warn!(provider = name, code = ?e.code, message = %e.message, hint = %e.hint, "provider error; reconnecting");
                    let _ = ws.close(None).await;
                    return Ok(End::Lost);
                }
                error!(provider = name, code = ?e.code, message = %e.message, hint = %e.hint, "provider error; retrying cannot help, stopping");
                return Err(Error::Provider(e));
            }
        }
    }

    /// Sends the queued replies; false if the connection broke.
    async fn send(&mut self, ws: &mut Socket, out: &mut Output) -> bool {
        for reply in out.replies.drain(..) {
            if let Err(e) = ws.send(Message::text(reply)).await {
                warn!(provider = self.provider.name(), error = %e, "send failed; reconnecting");
                return false;
            }
        }
        true
    }

    /// Handles one text frame: record, decode, dedupe, hand on.
    fn frame(&mut self, text: &str, out: &mut Output) -> Result<(), super::ProviderError> {
        let name = self.provider.name();
        let recv_ns = now_ns();
        self.metrics.frame(recv_ns);
        if let Some(recorder) = self.recorder.as_mut()
            && let Err(e) = recorder.write(recv_ns, text)
        {
            error!(provider = name, error = %e, "cannot write the recording; going on without it");
            *self.recorder = None;
        }
        let verdict = self.provider.on_frame(text, out);
        self.metrics
            .ignored
            .fetch_add(out.ignored, std::sync::atomic::Ordering::Relaxed);
        for notice in &out.notices {
            match notice {
                Notice::Connected => debug!(provider = name, "greeted"),
                Notice::Authenticated => info!(provider = name, "authenticated"),
                Notice::Subscribed(what) => {
                    info!(provider = name, subscription = %what, "subscribed")
                }
                Notice::Error { code, message } => {
                    IngestMetrics::bump(&self.metrics.provider_errors);
                    error!(provider = name, code = ?code, message = %message, "provider reported an error");
                }
            }
        }
        for record in out.records.drain(..) {
            let tick = match record {
                Ok(tick) => tick,
                Err(reason) => {
                    let reason = bound_reason(reason);
                    IngestMetrics::bump(&self.metrics.parse_errors);
                    warn!(provider = name, reason = %reason, frame = %truncate(text, 200), "frame did not decode");
                    continue;
                }
            };
            match self.dedup.check(&tick) {
                Verdict::Duplicate => {
                    IngestMetrics::bump(&self.metrics.duplicates);
                    continue;
                }
                Verdict::Gap(missing) => {
                    self.metrics
                        .gap_ids
                        .fetch_add(missing, std::sync::atomic::Ordering::Relaxed);
                    warn!(provider = name, symbol = %tick.symbol, missing, trade_id = ?tick.trade_id, "gap in trade ids");
                }
                Verdict::New => {}
            }
            if let Err(reason) = tick.validate() {
                IngestMetrics::bump(&self.metrics.invalid);
                debug!(provider = name, symbol = %tick.symbol, reason = %reason, "trade refused by the tick contract");
                continue;
            }
            self.streamed = true;
            IngestMetrics::bump(&self.metrics.ticks);
            self.metrics.delay(recv_ns - tick.time_ns);
            (self.sink)(tick);
        }
        for quote in out.quotes.drain(..) {
            match quote {
                Ok(quote) => {
                    self.streamed = true;
                    IngestMetrics::bump(&self.metrics.quotes);
                    (self.quote_sink)(quote);
                }
                Err(reason) => {
                    let reason = bound_reason(reason);
                    IngestMetrics::bump(&self.metrics.parse_errors);
                    warn!(provider = name, reason = %reason, frame = %truncate(text, 200), "quote did not decode");
                }
            }
        }
        verdict
    }
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}
