//! `gostocks ingest`: live trades from a market WebSocket into Kafka, keyed by symbol.
//!
//! Three parts: the WebSocket client (connectors' `websocket::client`) pushes ticks into a bounded
//! buffer that never blocks it; a delivery task empties the buffer into Kafka and holds ticks
//! while Kafka is unreachable; a reporter logs the counters. Ctrl-C or SIGTERM stops the client,
//! and what the buffer holds is delivered before exit.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use gostocks_connectors::kafka::{
    KafkaConfig, TickBuffer, TickProducer, deliver, ensure_topic_with,
};
use gostocks_connectors::websocket::{
    Alpaca, Binance, ClientConfig, Finnhub, IngestMetrics, MetricsSnapshot, Provider, ProviderKind,
    Recorder, client,
};
use tracing::{error, info, warn};

use crate::backfill::{self, BackfillConfig, BackfillMetrics, Backfiller};
use crate::cli::IngestArgs;
use gostocks_core::symbol::excerpt;

/// The Finnhub API token.
const FINNHUB_TOKEN: &str = "FINNHUB_TOKEN";
/// The Alpaca API key id (the name Alpaca's own SDKs read).
const ALPACA_KEY: &str = "APCA_API_KEY_ID";
/// The Alpaca API secret key.
const ALPACA_SECRET: &str = "APCA_API_SECRET_KEY";
/// Wait between deliveries retried while Kafka is unreachable.
const KAFKA_RETRY: Duration = Duration::from_secs(1);
/// Bound on one attempt to create the topic, so a dead broker shows up as a warning.
const TOPIC_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs `gostocks ingest`.
pub fn ingest(args: IngestArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(ingest_async(args))
}

fn secret(name: &str, what: &str) -> anyhow::Result<String> {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .with_context(|| format!("set {name} to your {what}"))
}

fn provider(args: &IngestArgs) -> anyhow::Result<Box<dyn Provider>> {
    let url = args.url.as_deref();
    Ok(match args.provider {
        ProviderKind::Finnhub => Box::new(Finnhub::new(
            &args.symbols,
            url,
            secret(FINNHUB_TOKEN, "Finnhub API token (finnhub.io, free tier)")?,
        )),
        ProviderKind::Alpaca => {
            let alpaca = Alpaca::new(
                &args.symbols,
                url,
                secret(ALPACA_KEY, "Alpaca API key id")?,
                secret(ALPACA_SECRET, "Alpaca API secret key")?,
            );
            Box::new(if args.quotes_topic.is_some() {
                alpaca.with_quotes()
            } else {
                alpaca
            })
        }
        ProviderKind::Binance if args.quotes_topic.is_some() => {
            Box::new(Binance::with_quotes(&args.symbols, url))
        }
        ProviderKind::Binance => Box::new(Binance::new(&args.symbols, url)),
    })
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
    info!("stopping: delivering the ticks held, then exiting");
}

async fn ingest_async(args: IngestArgs) -> anyhow::Result<()> {
    if args.quotes_topic.is_some() && matches!(args.provider, ProviderKind::Finnhub) {
        anyhow::bail!(
            "--quotes-topic takes Binance's bookTicker or Alpaca's quote stream; Finnhub's WebSocket sends trades only: use --provider binance or alpaca"
        );
    }
    let mut provider = provider(&args)?;
    let recorder = args
        .record
        .as_ref()
        .map(Recorder::create)
        .transpose()
        .context("opening --record")?;
    let config = ClientConfig {
        ping_interval: args.ping_interval.into(),
        read_timeout: args.read_timeout.into(),
        backoff_min: args.backoff_min.into(),
        backoff_max: args.backoff_max.into(),
        dedup_horizon: args.dedup_horizon.into(),
        max_message_bytes: args.max_record_bytes,
    };
    let metrics = Arc::new(IngestMetrics::default());
    let buffer = Arc::new(TickBuffer::new(args.buffer));
    let filled = Arc::new(BackfillMetrics::default());
    // Binance's contiguous trade ids tell a gap; the backfill stage takes the client's ticks
    // through a second bounded queue of the same size and fills gaps before passing them on.
    let backfill = match args.provider {
        ProviderKind::Binance => Some((
            Backfiller::new(backfill_config(&args)?, Arc::clone(&filled))?,
            Arc::new(TickBuffer::new(args.buffer)),
        )),
        _ => None,
    };
    let quote_stats = Arc::new(QuoteCounts::default());
    let metrics_server = match args.metrics_addr {
        Some(addr) => Some(
            serve_metrics(
                addr,
                Arc::clone(&metrics),
                Arc::clone(&buffer),
                Arc::clone(&filled),
                Arc::clone(&quote_stats),
            )
            .await?,
        ),
        None => None,
    };
    let kafka = KafkaConfig::new(&args.kafka.brokers, "gostocks-ingest")
        .with_options(args.kafka.kafka_options.resolve()?);
    let producer = TickProducer::new(&kafka, args.kafka.tick_encoding)
        .context("creating the Kafka producer (is --brokers right?)")?;
    let quote_kafka = kafka.clone();

    // Set when delivery fails for good (Kafka refuses the topic or the ticks): ingesting on
    // would only fill the buffer, so the client is stopped too.
    let delivery_failed = Arc::new(tokio::sync::Notify::new());
    let delivery = tokio::spawn({
        let (buffer, metrics) = (Arc::clone(&buffer), Arc::clone(&metrics));
        let failed = Arc::clone(&delivery_failed);
        let (topic, partitions) = (args.topic.clone(), args.kafka.partitions);
        async move {
            let result =
                deliver_all(&buffer, &producer, &metrics, &kafka, &topic, partitions).await;
            if result.is_err() {
                failed.notify_one();
            }
            result
        }
    });

    let reporter = tokio::spawn({
        let (buffer, metrics) = (Arc::clone(&buffer), Arc::clone(&metrics));
        let every: Duration = args.stats_interval.into();
        async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                let m = snapshot(&metrics, &buffer);
                info!(
                    frames = m.frames,
                    ticks = m.ticks,
                    delivered = m.delivered,
                    buffered = buffer.len(),
                    ignored = m.ignored,
                    parse_errors = m.parse_errors,
                    duplicates = m.duplicates,
                    gap_ids = m.gap_ids,
                    reconnects = m.reconnects,
                    overflow = m.overflow,
                    mean_delay_ms = format_args!("{:.1}", m.mean_delay_ms()),
                    "ingest counters"
                );
            }
        }
    });

    let (incoming, stage) = match backfill {
        Some((backfiller, incoming)) => {
            let stage = tokio::spawn({
                let (incoming, buffer) = (Arc::clone(&incoming), Arc::clone(&buffer));
                async move { backfiller.run(&incoming, &buffer).await }
            });
            (incoming, Some(stage))
        }
        None => (Arc::clone(&buffer), None),
    };

    // Quotes go through a bounded queue of their own to their topic; when Kafka falls behind
    // and it is full, the newest are dropped and counted (the socket cannot be held back).
    let (quote_tx, quote_task) = match &args.quotes_topic {
        Some(topic) => {
            let (tx, rx) = tokio::sync::mpsc::channel(args.buffer.max(1));
            let producer = TickProducer::new(&quote_kafka, args.kafka.tick_encoding)
                .context("creating the Kafka producer for quotes")?;
            let target = QuoteTarget {
                topic: topic.clone(),
                partitions: args.kafka.partitions,
                encoding: args.kafka.tick_encoding,
                source: provider.name(),
            };
            let task = tokio::spawn(deliver_quotes(
                rx,
                producer,
                quote_kafka,
                target,
                Arc::clone(&quote_stats),
            ));
            (Some(tx), Some(task))
        }
        None => (None, None),
    };

    info!(provider = %args.provider, symbols = ?args.symbols, topic = %args.topic, "ingesting");
    let push = |tick| {
        incoming.push(tick);
    };
    let push_quote = |quote| {
        if let Some(tx) = &quote_tx
            && tx.try_send(quote).is_err()
        {
            quote_stats.overflow.fetch_add(1, Ordering::Relaxed);
        }
    };
    let result = client::run_with_quotes(
        provider.as_mut(),
        &config,
        &metrics,
        recorder,
        push,
        push_quote,
        async {
            tokio::select! {
                _ = shutdown_signal() => {}
                _ = delivery_failed.notified() => {}
            }
        },
    )
    .await;
    incoming.close();
    // The quote queue's last sender: the task delivers what is left and ends.
    drop(quote_tx);
    let drain_timeout: Duration = args.drain_timeout.into();
    let drained = tokio::time::timeout(drain_timeout, async {
        // The stage closes the delivery buffer once it has passed everything on.
        if let Some(stage) = stage {
            let _ = stage.await;
        }
        if let Some(task) = quote_task {
            let _ = task.await;
        }
        delivery.await
    })
    .await;
    reporter.abort();
    if let Some(server) = metrics_server {
        server.abort();
    }
    let m = snapshot(&metrics, &buffer);
    let held = buffer.len()
        + if Arc::ptr_eq(&incoming, &buffer) {
            0
        } else {
            incoming.len()
        };
    // Rates over the streaming span, so that waiting for a connection or for Ctrl-C does not
    // dilute them.
    let secs = m.streaming_secs().max(1e-9);
    if args.quotes_topic.is_some() {
        eprintln!(
            "ingest quotes: quotes={} quotes_delivered={} quote_overflow={} quote_errors={}",
            metrics.quotes.load(Ordering::Relaxed),
            quote_stats.delivered.load(Ordering::Relaxed),
            quote_stats.overflow.load(Ordering::Relaxed),
            quote_stats.failed.load(Ordering::Relaxed),
        );
    }
    eprintln!(
        "ingest summary: frames={} ticks={} delivered={} ignored={} parse_errors={} invalid={} duplicates={} gap_ids={} backfilled={} unfilled={} unfilled_ranges={} reconnects={} provider_errors={} overflow={} undelivered={} mean_delay_ms={:.1} max_delay_ms={:.1} streaming_s={:.3} ticks_per_s={:.0} frames_per_s={:.0}",
        m.frames,
        m.ticks,
        m.delivered,
        m.ignored,
        m.parse_errors,
        m.invalid,
        m.duplicates,
        m.gap_ids,
        filled.filled.load(Ordering::Relaxed),
        filled.unfilled.load(Ordering::Relaxed),
        filled.ranges(),
        m.reconnects,
        m.provider_errors,
        m.overflow
            + if Arc::ptr_eq(&incoming, &buffer) {
                0
            } else {
                incoming.overflow()
            },
        held,
        m.mean_delay_ms(),
        m.delay_ns_max as f64 / 1e6,
        m.streaming_secs(),
        m.ticks as f64 / secs,
        m.frames as f64 / secs,
    );
    result.context("ingest stopped")?;
    match drained {
        Ok(Ok(Ok(_))) => Ok(()),
        Ok(Ok(Err(e))) => Err(e).context("delivering ticks to Kafka"),
        Ok(Err(e)) => Err(e).context("the delivery task failed"),
        Err(_) => anyhow::bail!(
            "Kafka at {} did not take the {held} buffered ticks within {drain_timeout:?}",
            args.kafka.brokers,
        ),
    }
}

/// The backfill's settings from the flags and the environment.
fn backfill_config(args: &IngestArgs) -> anyhow::Result<BackfillConfig> {
    let url = args
        .backfill_url
        .as_deref()
        .unwrap_or_else(|| BackfillConfig::default_url(args.url.as_deref()));
    let url = reqwest::Url::parse(url)
        .with_context(|| format!("--backfill-url {}: not a URL", excerpt(url)))?;
    let key = std::env::var(backfill::API_KEY)
        .ok()
        .filter(|k| !k.is_empty() && !args.no_backfill);
    Ok(BackfillConfig {
        url,
        key,
        weight_per_minute: args.backfill_weight,
        deadline: args.backfill_deadline.into(),
    })
}

/// Makes sure the topic exists, then delivers the buffer's ticks until it is closed and empty.
async fn deliver_all(
    buffer: &TickBuffer,
    producer: &TickProducer,
    metrics: &IngestMetrics,
    kafka: &KafkaConfig,
    topic: &str,
    partitions: i32,
) -> Result<u64, gostocks_connectors::Error> {
    let brokers = kafka.brokers.as_str();
    // The topic is made sure of here, not before connecting: the WebSocket does not wait for
    // Kafka, ticks wait in the buffer instead.
    loop {
        match tokio::time::timeout(TOPIC_TIMEOUT, ensure_topic_with(kafka, topic, partitions)).await
        {
            Ok(Ok(())) => break,
            Ok(Err(e)) if !e.is_transient() => {
                error!(brokers, topic, error = %e, "kafka refused the topic; stopping");
                return Err(e);
            }
            Ok(Err(e)) => {
                warn!(brokers, error = %e, "kafka unreachable; holding ticks in the buffer");
            }
            Err(_) => warn!(brokers, "kafka unreachable; holding ticks in the buffer"),
        }
        tokio::time::sleep(KAFKA_RETRY).await;
    }
    deliver(buffer, producer, topic, KAFKA_RETRY, &metrics.delivered).await
}

/// Serves `GET /metrics` on `addr` until the task is aborted.
async fn serve_metrics(
    addr: std::net::SocketAddr,
    metrics: Arc<IngestMetrics>,
    buffer: Arc<TickBuffer>,
    filled: Arc<BackfillMetrics>,
    quotes: Arc<QuoteCounts>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    use warp::Filter;
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
        format!("cannot listen on {addr} for metrics: is it in use? pass --metrics-addr")
    })?;
    info!(addr = %listener.local_addr()?, "serving /metrics");
    let route = warp::path("metrics")
        .and(warp::path::end())
        .and(warp::get())
        .map(move || {
            warp::reply::with_header(
                render(&metrics, &buffer, &filled, &quotes),
                "content-type",
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )
        });
    let limits = crate::serve::Limits {
        max_connections: 64,
        header_read_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(60),
        drain: Duration::ZERO,
    };
    Ok(tokio::spawn(crate::serve::serve(
        listener,
        warp::service(route),
        crate::serve::Protocol::Http,
        limits,
        std::future::pending(),
    )))
}

/// The Prometheus text exposition of the ingest counters.
fn render(
    metrics: &IngestMetrics,
    buffer: &TickBuffer,
    filled: &BackfillMetrics,
    quotes: &QuoteCounts,
) -> String {
    use crate::metrics::{counter, gauge};
    let m = snapshot(metrics, buffer);
    let mut r = prometheus_client::registry::Registry::default();
    for (name, help, v) in [
        ("gostocks_ingest_frames", "Text frames received.", m.frames),
        (
            "gostocks_ingest_ticks",
            "Ticks handed on for delivery.",
            m.ticks,
        ),
        (
            "gostocks_ingest_delivered",
            "Ticks acknowledged by Kafka.",
            m.delivered,
        ),
        (
            "gostocks_ingest_reconnects",
            "Reconnections (after a lost connection or a failed attempt).",
            m.reconnects,
        ),
        (
            "gostocks_ingest_gap_ids",
            "Trade ids missing from the stream (gaps).",
            m.gap_ids,
        ),
        (
            "gostocks_ingest_backfilled_ids",
            "Missing trade ids fetched over the REST API and delivered in order.",
            filled.filled.load(Ordering::Relaxed),
        ),
        (
            "gostocks_ingest_unfilled_ids",
            "Missing trade ids that could not be fetched (no API key, an error, the deadline).",
            filled.unfilled.load(Ordering::Relaxed),
        ),
        (
            "gostocks_ingest_backfill_requests",
            "Requests made to the REST API to fill gaps.",
            filled.requests.load(Ordering::Relaxed),
        ),
        (
            "gostocks_ingest_overflow",
            "Ticks dropped because the buffer in front of Kafka was full.",
            m.overflow,
        ),
        (
            "gostocks_ingest_quotes",
            "Quotes decoded (with --quotes-topic).",
            metrics.quotes.load(Ordering::Relaxed),
        ),
        (
            "gostocks_ingest_quotes_delivered",
            "Quotes acknowledged by Kafka.",
            quotes.delivered.load(Ordering::Relaxed),
        ),
        (
            "gostocks_ingest_quote_overflow",
            "Quotes dropped because their queue in front of Kafka was full.",
            quotes.overflow.load(Ordering::Relaxed),
        ),
        (
            "gostocks_ingest_parse_errors",
            "Frames or trades that did not decode.",
            m.parse_errors,
        ),
        (
            "gostocks_ingest_duplicates",
            "Trades dropped as already delivered.",
            m.duplicates,
        ),
        (
            "gostocks_ingest_provider_errors",
            "Error messages from the provider.",
            m.provider_errors,
        ),
    ] {
        counter(&mut r, name, help, v);
    }
    gauge(
        &mut r,
        "gostocks_ingest_buffered",
        "Ticks held for Kafka.",
        buffer.len() as i64,
    );
    r.register(
        "gostocks_ingest_delay_seconds",
        "Exchange-to-ingest delay of each tick: local receive time minus the trade's exchange time.",
        metrics.delay_seconds.0.clone(),
    );
    crate::metrics::text(&r)
}

fn snapshot(metrics: &IngestMetrics, buffer: &TickBuffer) -> MetricsSnapshot {
    metrics.overflow.store(buffer.overflow(), Ordering::Relaxed);
    metrics.snapshot()
}

/// Where the quotes go and how.
struct QuoteTarget {
    topic: String,
    /// Of the topic, when it has to be created.
    partitions: i32,
    encoding: gostocks_connectors::kafka::TickEncoding,
    /// The `source` each quote carries: the provider's name.
    source: &'static str,
}

/// What became of the quotes (`--quotes-topic`).
#[derive(Default)]
struct QuoteCounts {
    delivered: std::sync::atomic::AtomicU64,
    /// Dropped because the queue was full.
    overflow: std::sync::atomic::AtomicU64,
    /// Refused by Kafka after the producer's own retries.
    failed: std::sync::atomic::AtomicU64,
}

/// Delivers the quotes of `rx` to `topic` until the queue closes and is empty. Up to 1,000
/// are in flight at once; the producer retries each until its delivery timeout.
async fn deliver_quotes(
    mut rx: tokio::sync::mpsc::Receiver<gostocks_core::quotes::Quote>,
    producer: TickProducer,
    kafka: KafkaConfig,
    target: QuoteTarget,
    counts: Arc<QuoteCounts>,
) {
    let QuoteTarget {
        topic,
        partitions,
        encoding,
        source,
    } = target;
    use futures::StreamExt;
    // Created up front where the broker allows it; the producer's first send creates it
    // otherwise.
    if let Err(e) =
        tokio::time::timeout(TOPIC_TIMEOUT, ensure_topic_with(&kafka, &topic, partitions)).await
    {
        warn!(topic = %topic, error = %e, "could not make sure the quotes topic exists");
    }
    let mut in_flight = futures::stream::FuturesUnordered::new();
    let settle = |r: Result<(i32, i64), gostocks_connectors::Error>| match r {
        Ok(_) => {
            counts.delivered.fetch_add(1, Ordering::Relaxed);
        }
        Err(e) => {
            counts.failed.fetch_add(1, Ordering::Relaxed);
            error!(topic = %topic, error = %e, "a quote was not delivered");
        }
    };
    while let Some(quote) = rx.recv().await {
        let payload = gostocks_connectors::kafka::encode_quote(&quote, source, encoding);
        in_flight.push(producer.send_record(
            &topic,
            quote.symbol.as_str().as_bytes().to_vec(),
            payload,
        ));
        if in_flight.len() >= 1_000
            && let Some(r) = in_flight.next().await
        {
            settle(r);
        }
    }
    while let Some(r) = in_flight.next().await {
        settle(r);
    }
}
