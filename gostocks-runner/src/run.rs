//! `gostocks run`: replay → dataflow → state → REST and gRPC.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use gostocks_connectors::file::{Format, TickFile};
use gostocks_core::Tick;
use tokio::net::TcpListener;

use crate::alerts::service::Alerts;
use crate::alerts::{AlertHub, Store};
use crate::cli::{RunArgs, Speed};
use crate::sinks::{self, Sinks};
use crate::state::MarketState;
use gostocks_connectors::kafka::{InstanceId, KafkaConfig, TickProducer};
use gostocks_connectors::redis::RedisSink;

/// Runs until Ctrl-C or SIGTERM.
pub fn run(args: RunArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.workers >= 1, "--workers must be at least 1");
    let timely = crate::cluster::timely_config(args.workers, &args.cluster)?;
    let place = crate::dataflow::Place {
        workers: args.workers,
        process: args.cluster.process,
        processes: args.cluster.processes,
    };
    let clustered = place.processes > 1;
    anyhow::ensure!(
        !clustered || args.kafka.is_some(),
        "a cluster (--processes {}) reads its ticks from Kafka: pass --kafka (each process reads its share of the partitions)",
        place.processes
    );
    if clustered {
        crate::cluster::exit_on_panic();
    }
    let ticks = if args.kafka.is_some() {
        Vec::new()
    } else {
        load(&args)?
    };
    anyhow::ensure!(
        args.kafka.is_some() || !ticks.is_empty(),
        "the input has no ticks to replay"
    );
    let config = args.analytics_config()?;
    let state = Arc::new(MarketState::new(4096, &config));
    let stop = Arc::new(AtomicBool::new(false));

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let store = match &args.db.postgres {
        Some(url) => runtime.block_on(Store::postgres_with_ca(
            url,
            args.db.postgres_schema.as_deref(),
            args.db.postgres_ca_file.as_deref(),
        ))?,
        None => Store::memory(),
    };
    let (rules_tx, rules_rx) = std::sync::mpsc::channel();
    // The rules judged on quotes go to the quote feed, when there is one.
    let (quote_rules_tx, quote_rules_rx) = std::sync::mpsc::channel();
    let mut hub = AlertHub::new(store, config.windows.clone(), config.bars.clone(), rules_tx)
        .with_allow_private(args.notify_allow_private)
        .in_cluster(clustered);
    if args.quotes_topic.is_some() {
        hub = hub.with_quote_rules(quote_rules_tx);
    }
    let hub = Arc::new(hub);
    let loaded = runtime.block_on(hub.load_active())?;
    if place.process > 0 {
        // In a cluster, the stored alerts enter the dataflow once, at process 0; this
        // process's hub knows them (for their events), and its rule changes enter here.
        while rules_rx.try_recv().is_ok() {}
    }
    let memory_note = if args.db.postgres.is_none() {
        let (_, key) = runtime.block_on(hub.store.create_user("demo"))?;
        Some(key)
    } else {
        None
    };
    let redis = match &args.redis {
        Some(url) => Some(
            runtime
                .block_on(RedisSink::connect_with_ca(
                    url,
                    &args.redis_prefix,
                    args.redis_ca_file.as_deref(),
                ))
                .context(
                    "connecting to Redis: is it running, and is --redis right? (a server that only speaks TLS needs rediss://)",
                )?
                .with_ttl(args.redis_ttl),
        ),
        None => None,
    };
    let kafka_options = args.kafka_options.resolve()?;
    let kafka_sink = match &args.kafka {
        Some(brokers) => Some({
            let config = KafkaConfig::new(brokers, &args.group).with_options(kafka_options.clone());
            // Brokers need not create topics on first use: make sure the output topics exist.
            for topic in [&args.stats_topic, &args.alerts_topic] {
                runtime
                    .block_on(gostocks_connectors::kafka::ensure_topic_with(
                        &config, topic, 4,
                    ))
                    .with_context(|| format!("creating the output topic {topic}"))?;
            }
            TickProducer::new(&config, args.tick_encoding)
                .context("creating the Kafka producer for the stats and alert topics")?
        }),
        None => None,
    };
    anyhow::ensure!(args.sink_queue >= 1, "--sink-queue must be at least 1");
    let policy = crate::sinks::Policy {
        capacity: args.sink_queue,
        unready_after: args.sink_unready_after.into(),
        ..crate::sinks::Policy::default()
    };
    // The sinks: one line each.
    let mut sinks = Sinks::new(Arc::clone(&state.progress), policy.clone());
    let (windows, bars) = (state.read.windows.clone(), state.read.bar_sizes.clone());
    sinks.add(sinks::read_model::ReadModelSink(Arc::clone(&state.read)));
    sinks.add(sinks::alert_events::AlertEvents(Arc::clone(&hub)));
    let push = Arc::new(sinks::push::PushHub::new(windows.clone(), bars.clone()));
    sinks.add(sinks::push::Push(Arc::clone(&push)));
    if let Some(redis) = &redis {
        sinks.add(sinks::redis::Redis::new(
            redis.clone(),
            windows.clone(),
            bars.clone(),
        ));
    }
    if let Some(producer) = kafka_sink {
        let (stats, alerts) = (args.stats_topic.clone(), args.alerts_topic.clone());
        sinks.add(sinks::kafka::Kafka::new(
            producer,
            stats,
            alerts,
            windows.clone(),
        ));
    }
    if let Some(path) = &args.outputs_jsonl {
        let file = runtime.block_on(sinks::jsonl::JsonLines::create(path, windows, bars));
        sinks.add(file.with_context(|| format!("--outputs-jsonl {}", path.display()))?);
    }
    // Bounded like each sink's queue: the fan-out waits on a full queue, and so, through this
    // channel, do the dataflow's threads. Progress marks travel beside it (see `Sinks::run`).
    let (outputs, outputs_rx) = tokio::sync::mpsc::channel(policy.capacity);
    let (marks, marks_rx) = tokio::sync::watch::channel(0);
    let suppress = {
        let state = Arc::clone(&state);
        Box::new(move |o: &sinks::Output| state.suppressed(o))
    };
    runtime.spawn(sinks.run(outputs_rx, marks_rx, suppress));

    anyhow::ensure!(
        args.notify_per_host >= 1,
        "--notify-per-host must be at least 1"
    );
    let notify = crate::notify::worker::Config {
        timeout: args.notify_timeout.into(),
        max_age: args.notify_max_age.into(),
        backoff: args.notify_backoff.into(),
        max_backoff: Duration::from_secs(600),
        per_host: args.notify_per_host,
        concurrency: 64,
        allow_private: args.notify_allow_private,
    };
    let shutdown = crate::shutdown::Shutdown::default();
    if let Some(topic) = &args.quotes_topic {
        let (Some(brokers), Some(redis)) = (&args.kafka, &redis) else {
            anyhow::bail!(
                "--quotes-topic reads quotes from Kafka into Redis: pass --kafka and --redis too"
            );
        };
        // A group of its own, never committed: every start rebuilds from the topic's beginning.
        let group = format!(
            "{}-quotes-{}-{}",
            args.group,
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        );
        let kafka = KafkaConfig::new(brokers, group).with_options(kafka_options.clone());
        runtime
            .block_on(gostocks_connectors::kafka::ensure_topic_with(
                &kafka,
                &args.quote_stats_topic,
                4,
            ))
            .with_context(|| format!("creating the output topic {}", args.quote_stats_topic))?;
        let producer = TickProducer::new(&kafka, args.tick_encoding)
            .context("creating the Kafka producer for the quote statistics")?;
        let feed = crate::quote_feed::QuoteFeed {
            changelog: (producer, args.quote_stats_topic.clone()),
            kafka,
            topic: topic.clone(),
            encoding: args.tick_encoding,
            max_record_bytes: gostocks_connectors::limits::MAX_RECORD_BYTES,
            config: config.clone(),
            idle: Duration::from_nanos(args.idle.ns()),
            redis: redis.clone(),
            rules: std::sync::Mutex::new(quote_rules_rx),
            events: outputs.clone(),
            state: Arc::clone(&state),
        };
        let shutdown = shutdown.clone();
        runtime.spawn(async move {
            if let Err(error) = feed.run(async move { shutdown.wait().await }).await {
                tracing::error!(error = format!("{error:#}"), "the quote feed stopped");
            }
        });
    }
    runtime.spawn({
        let (hub, state, shutdown) = (Arc::clone(&hub), Arc::clone(&state), shutdown.clone());
        async move {
            if let Err(error) = crate::notify::worker::run(hub, state, notify, shutdown).await {
                tracing::error!(
                    error = format!("{error:#}"),
                    "the notification worker stopped"
                );
            }
        }
    });

    // Claimed before anything is consumed, and held until the input ends.
    let instance_id = match (&args.kafka, args.instance_id.as_deref()) {
        // A cluster's processes are not group members: each assigns its share itself.
        _ if clustered => None,
        (None, _) | (Some(_), Some("")) => None,
        (Some(_), Some(id)) => Some(InstanceId::given(id)),
        (Some(_), None) => {
            Some(InstanceId::claim(&args.group).context("choosing a default --instance-id")?)
        }
    };

    // One channel per worker: each source is read by exactly one worker.
    let (tx, taps) = crate::intake::Intake::new(args.workers, 4096);
    let dataflow = {
        let state = Arc::clone(&state);
        let config = args.analytics_config()?;
        let idle = Duration::from_nanos(args.idle.ns());
        let outlets = crate::dataflow::Outlets { outputs, marks };
        std::thread::Builder::new()
            .name("dataflow".into())
            .spawn(move || {
                crate::dataflow::run(timely, place, config, idle, taps, rules_rx, outlets, state)
            })?
    };
    let replay = match &args.kafka {
        Some(brokers) => {
            let input = crate::kafka_input::KafkaInput {
                brokers: brokers.clone(),
                topic: args.topic.clone(),
                group: args.group.clone(),
                encoding: args.tick_encoding,
                resolution: config.resolution.ns(),
                fetch_wait_ms: u32::try_from(args.fetch_wait.ns() / 1_000_000).unwrap_or(u32::MAX),
                instance_id,
                options: kafka_options,
                share: clustered.then_some(gostocks_connectors::kafka::Share {
                    of: place.processes,
                    index: place.process,
                }),
            };
            let (stop, state) = (Arc::clone(&stop), Arc::clone(&state));
            std::thread::Builder::new()
                .name("kafka".into())
                .spawn(move || {
                    if let Err(error) = crate::kafka_input::run(input, tx, state, stop) {
                        tracing::error!(error = format!("{error:#}"), "the kafka source stopped");
                    }
                })?
        }
        None => {
            let stop = Arc::clone(&stop);
            let (speed, looping) = (args.speed, !args.no_loop);
            tx.announced();
            std::thread::Builder::new()
                .name("replay".into())
                .spawn(move || replay(&ticks, speed, looping, &tx, &stop))?
        }
    };

    let deadline = runtime.block_on(serve(
        &args,
        Arc::clone(&state),
        hub,
        loaded,
        memory_note,
        redis,
        push,
        shutdown,
    ))?;
    // Intake stops; the dataflow finishes what it holds and the sinks write it, by the deadline.
    stop.store(true, Ordering::Relaxed);
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = replay.join();
        let _ = done_tx.send(dataflow.join());
    });
    let left = deadline.saturating_duration_since(Instant::now());
    match done_rx.recv_timeout(left) {
        Ok(joined) => joined.map_err(|_| anyhow::anyhow!("the dataflow thread panicked"))??,
        Err(_) => anyhow::bail!(
            "the dataflow did not finish within --shutdown-timeout ({}); stopped without it",
            args.shutdown_timeout
        ),
    }
    runtime.block_on(async {
        while !state.progress.caught_up() {
            if Instant::now() >= deadline {
                anyhow::bail!(
                    "the sinks did not write everything within --shutdown-timeout ({}); what they confirmed is committed",
                    args.shutdown_timeout
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    })?;
    let (accepted, rejected) = state.counters.counts();
    tracing::info!(ticks = accepted, rejected, "stopped");
    Ok(())
}

fn load(args: &RunArgs) -> anyhow::Result<Vec<Tick>> {
    let mut rejected = 0u64;
    let ticks: Vec<Tick> = match &args.input {
        None => crate::recording::BUNDLED
            .lines()
            .filter(|l| !l.trim().is_empty())
            .filter_map(|l| serde_json::from_str(l).map_err(|_| rejected += 1).ok())
            .collect(),
        Some(path) => TickFile::open(path, Format::Auto)
            .with_context(|| format!("--input {}", path.display()))?
            .filter_map(|r| r.map_err(|_| rejected += 1).ok())
            .collect(),
    };
    if rejected > 0 {
        tracing::warn!(
            rejected,
            "records of the input did not decode and are skipped"
        );
    }
    let mut ticks = ticks;
    ticks.sort_by_key(|t| (t.time_ns, t.seq));
    Ok(ticks)
}

/// Sends the recording in event-time order at `speed`; each loop shifts event times past the
/// previous loop's end so that time keeps moving forward.
fn replay(
    ticks: &[Tick],
    speed: Speed,
    looping: bool,
    tx: &crate::intake::Intake,
    stop: &AtomicBool,
) {
    let (first, last) = (ticks[0].time_ns, ticks[ticks.len() - 1].time_ns);
    let period = last - first + 1_000_000_000;
    let seqs = ticks.iter().map(|t| t.seq).max().unwrap_or(0) + 1;
    // Event times start at the current wall clock.
    let base = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
        - first;
    let started = Instant::now();
    // The replay is source 0; false once the dataflow has stopped listening.
    let send =
        |batch: &mut Vec<Tick>| tx.send(crate::intake::SourceTicks::of(0, std::mem::take(batch)));
    for round in 0u64.. {
        let mut batch = Vec::with_capacity(256);
        for tick in ticks {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let mut t = tick.clone();
            t.time_ns += base + round as i64 * period;
            t.seq += round * seqs;
            if let Speed::Factor(f) = speed {
                let due = Duration::from_nanos(((t.time_ns - base - first) as f64 / f) as u64);
                let now = started.elapsed();
                if due > now {
                    if !batch.is_empty() && !send(&mut batch) {
                        return;
                    }
                    std::thread::sleep((due - now).min(Duration::from_millis(200)));
                    while started.elapsed() < due {
                        if stop.load(Ordering::Relaxed) {
                            return;
                        }
                        std::thread::sleep(
                            (due - started.elapsed()).min(Duration::from_millis(200)),
                        );
                    }
                }
            }
            batch.push(t);
            if batch.len() >= 256 && !send(&mut batch) {
                return;
            }
        }
        if (!batch.is_empty() && !send(&mut batch)) || !looping {
            return;
        }
    }
}

// The parts `run` built, handed over once.
#[allow(clippy::too_many_arguments)]
async fn serve(
    args: &RunArgs,
    state: Arc<MarketState>,
    hub: Arc<AlertHub>,
    loaded: usize,
    demo_key: Option<String>,
    redis: Option<RedisSink>,
    push: Arc<sinks::push::PushHub>,
    shutdown: crate::shutdown::Shutdown,
) -> anyhow::Result<Instant> {
    let http = TcpListener::bind(args.http_addr).await.with_context(|| {
        format!(
            "cannot listen on {} for REST: is it in use? pass --http-addr",
            args.http_addr
        )
    })?;
    let grpc = TcpListener::bind(args.grpc_addr).await.with_context(|| {
        format!(
            "cannot listen on {} for gRPC: is it in use? pass --grpc-addr",
            args.grpc_addr
        )
    })?;
    let (http_addr, grpc_addr) = (http.local_addr()?, grpc.local_addr()?);

    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<gostocks_proto::v1::market_service_server::MarketServiceServer<crate::grpc::Market>>().await;
    health
        .set_serving::<gostocks_proto::v1::alert_service_server::AlertServiceServer<Alerts>>()
        .await;
    // The server as a whole ("") says what /readyz says: serving only while ready.
    tokio::spawn({
        let (health, state, shutdown) = (health.clone(), Arc::clone(&state), shutdown.clone());
        async move {
            let mut was = None;
            loop {
                let ready = !shutdown.started() && state.readiness().is_ok();
                if was != Some(ready) {
                    was = Some(ready);
                    let status = if ready {
                        tonic_health::ServingStatus::Serving
                    } else {
                        tonic_health::ServingStatus::NotServing
                    };
                    health.set_service_status("", status).await;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    });
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(gostocks_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .context("building gRPC reflection")?;

    let (shutdown_tx, _) = tokio::sync::broadcast::channel::<()>(1);
    let mut rx_http = shutdown_tx.subscribe();
    let mut rx_grpc = shutdown_tx.subscribe();
    let limits = crate::serve::Limits {
        max_connections: args.max_connections,
        header_read_timeout: args.header_read_timeout.into(),
        idle_timeout: args.idle_timeout.into(),
        drain: args.shutdown_timeout.into(),
    };
    // The gateway calls the alert service in process: the same calls a gateway in its own
    // process makes over gRPC, without a second connection to bound and keep healthy.
    let alerts = Arc::new(Alerts::new(
        Arc::clone(&hub),
        Arc::clone(&state),
        shutdown.clone(),
    ));
    let api = crate::http::Api::new(Arc::clone(&state), Some(Arc::clone(&alerts)), redis.clone())
        .with_shutdown(shutdown.clone())
        .with_push(push)
        .with_cors(args.cors_origin.clone());
    let rest = crate::serve::serve(
        http,
        warp::service(crate::http::app(api)),
        crate::serve::Protocol::Http,
        limits,
        async move {
            let _ = rx_http.recv().await;
        },
    );
    let routes = tonic::service::Routes::new(health_service)
        .add_service(reflection)
        .add_service(
            crate::grpc::Market::server(Arc::clone(&state), shutdown.clone(), redis)
                .max_decoding_message_size(MAX_GRPC_MESSAGE),
        )
        .add_service(
            gostocks_proto::v1::alert_service_server::AlertServiceServer::from_arc(alerts)
                .max_decoding_message_size(MAX_GRPC_MESSAGE),
        );
    let grpc_service = GrpcCodes(routes);
    let grpc_server = crate::serve::serve(
        grpc,
        grpc_service,
        crate::serve::Protocol::Grpc,
        limits,
        async move {
            let _ = rx_grpc.recv().await;
        },
    );

    let source = match (&args.kafka, &args.input) {
        (Some(brokers), _) => format!(
            "consuming topic {} from {brokers} in group {}",
            args.topic, args.group
        ),
        (None, Some(path)) => format!("replaying {}", path.display()),
        (None, None) => "replaying the bundled recording".into(),
    };
    println!("gostocks is running: {source}");
    println!("  dashboard  http://{http_addr}/   (the API: http://{http_addr}/docs)");
    println!(
        "  REST  http://{http_addr}   (GET /price/:symbol, /stats/:symbol, /bars/:symbol, /symbols, /stream, /healthz, /metrics)"
    );
    println!(
        "  gRPC  {grpc_addr}   (gostocks.v1.MarketService, gostocks.v1.AlertService, grpc.health.v1, reflection)"
    );
    match demo_key {
        Some(key) => {
            println!(
                "  alerts: in memory (no --postgres): users, alerts and events last until exit"
            );
            println!("  user `demo` API key (shown once): {key}");
            println!(
                "  notifications: in-memory outbox (no --postgres): pending deliveries are lost at exit"
            );
        }
        None => {
            println!("  alerts: Postgres, {loaded} active alerts loaded");
            println!(
                "  notifications: Postgres outbox (pending deliveries resume after a restart)"
            );
        }
    }
    println!("press Ctrl-C to stop");

    let rest = tokio::spawn(rest);
    let grpc_task = tokio::spawn(grpc_server);
    shutdown_signal().await;
    let deadline = Instant::now() + Duration::from(args.shutdown_timeout);
    tracing::info!(timeout = %args.shutdown_timeout, "shutting down: open streams end, intake stops, sinks drain");
    // A second signal means now.
    tokio::spawn(async {
        shutdown_signal().await;
        eprintln!("second signal: exiting at once");
        std::process::exit(130);
    });
    shutdown.begin();
    health
        .set_service_status("", tonic_health::ServingStatus::NotServing)
        .await;
    let _ = shutdown_tx.send(());
    let _ = rest.await;
    grpc_task.await.context("gRPC server")?;
    Ok(deadline)
}

/// The largest gRPC request message, in bytes; larger ones are RESOURCE_EXHAUSTED.
pub const MAX_GRPC_MESSAGE: usize = 4 << 20;

/// The gRPC routes, answering with the error codes the gRPC spec gives (see
/// [`crate::serve::grpc_codes`]).
#[derive(Clone)]
struct GrpcCodes(tonic::service::Routes);

impl tower_service::Service<http::Request<hyper::body::Incoming>> for GrpcCodes {
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = std::pin::Pin<
        Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send + 'static>,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        tower_service::Service::<http::Request<hyper::body::Incoming>>::poll_ready(&mut self.0, cx)
    }

    fn call(&mut self, req: http::Request<hyper::body::Incoming>) -> Self::Future {
        let fut = self.0.call(req);
        Box::pin(async move { fut.await.map(crate::serve::grpc_codes) })
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
