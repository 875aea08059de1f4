//! `gostocks bench-pipeline`: the production pipeline against a local broker and Redis.
//!
//! 1. A fresh topic is pre-filled with the replicated real-tape workload, keyed by symbol.
//! 2. Consume-only: a bare rdkafka consumer reads the whole topic; its rate is what the broker
//!    can deliver to one process.
//! 3. Pipeline: `gostocks run --kafka --redis --workers 2` (a child process) consumes the same
//!    topic; its rate runs from its first accepted tick to its last.
//! 4. Latency: ticks stamped with the wall clock are produced at a steady rate to another topic
//!    while a pipeline runs at `--latency-resolution`. After 2 s of warm-up, each price update
//!    that Redis publishes is timed against the event time of the tick it carries, and each
//!    stats update against the end of its grid interval.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use gostocks_connectors::kafka::{
    KafkaConfig, TickConsumer, TickEncoding, TickProducer, ensure_topic,
};
use gostocks_core::{Tick, Trade};
use rdkafka::Message;

use crate::cli::BenchPipelineArgs;

/// Runs `gostocks bench-pipeline`.
pub fn bench_pipeline(args: BenchPipelineArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(run(args))
}

fn tick(t: &Trade) -> Tick {
    t.to_tick("bench")
}

async fn prefill(brokers: &str, topic: &str, trades: &[Trade]) -> anyhow::Result<f64> {
    ensure_topic(brokers, topic, 4).await?;
    let producer = TickProducer::new(&KafkaConfig::new(brokers, "bench"), TickEncoding::Protobuf)?;
    let started = Instant::now();
    for chunk in trades.chunks(50_000) {
        let sends: Vec<_> = chunk
            .iter()
            .map(|t| producer.send_owned(topic.to_owned(), tick(t)))
            .collect();
        for r in futures::future::join_all(sends).await {
            r?;
        }
    }
    Ok(trades.len() as f64 / started.elapsed().as_secs_f64())
}

async fn consume_only(brokers: &str, topic: &str, n: usize) -> anyhow::Result<f64> {
    let group = format!("{topic}-bare");
    let consumer = TickConsumer::subscribe(&KafkaConfig::new(brokers, &group), &[topic])?;
    let mut stream = consumer.consumer.stream();
    let mut seen = 0usize;
    let mut first = None;
    while seen < n {
        let msg = tokio::time::timeout(Duration::from_secs(60), stream.next())
            .await
            .context("the bare consumer stalled")?
            .context("stream ended")??;
        first.get_or_insert_with(Instant::now);
        // Decoding is part of consuming a tick.
        let _ = gostocks_connectors::kafka::decode_tick(
            msg.payload().unwrap_or_default(),
            TickEncoding::Protobuf,
        );
        seen += 1;
    }
    let secs = first.map_or(1.0, |f| f.elapsed().as_secs_f64());
    Ok(n as f64 / secs)
}

/// Starts `gostocks run` on ephemeral ports with `extra` flags; returns it and its REST address.
fn start_runner(extra: &[String]) -> anyhow::Result<(std::process::Child, String)> {
    let me = std::env::current_exe()?;
    let mut child = Command::new(me)
        .args(["--log", "warn", "run", "--http-addr", "127.0.0.1:0"])
        .args(["--grpc-addr", "127.0.0.1:0"])
        .args(extra)
        .env_remove("GOSTOCKS_POSTGRES_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
    let http = loop {
        let line = lines.next().context("the runner printed nothing")??;
        if let Some(url) = line.trim().strip_prefix("REST") {
            let addr = url.split_whitespace().next().unwrap_or_default();
            break addr.trim_start_matches("http://").to_owned();
        }
    };
    std::thread::spawn(move || lines.for_each(drop));
    Ok((child, http))
}

/// The runner's accepted tick count from `/healthz`; 0 while it does not answer.
async fn accepted(client: &reqwest::Client, http: &str) -> u64 {
    let Ok(answer) = client.get(format!("http://{http}/healthz")).send().await else {
        return 0;
    };
    let body = answer.text().await.unwrap_or_default();
    serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["ticks"].as_u64())
        .unwrap_or(0)
}

async fn run(args: BenchPipelineArgs) -> anyhow::Result<()> {
    let dir = crate::bench::data_dir(args.data_dir.as_deref());
    let (trades, symbols) = crate::bench::workload(&dir, args.ticks)?;
    let trades = &trades[..args.ticks.min(trades.len())];
    let n = trades.len();
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos();
    let topic = format!("bench-pipeline-{stamp}");
    println!(
        "workload: {n} ticks, {symbols} symbols; broker {}, redis {}",
        args.brokers, args.redis
    );
    let produce_rate = prefill(&args.brokers, &topic, trades).await?;
    let bare = consume_only(&args.brokers, &topic, n).await?;

    // On a pre-filled topic the consumer may deliver one partition's backlog well before
    // another's; a long idle time keeps the slower partitions from being declared idle (and
    // their ticks late). The live latency run, where every partition flows, uses 1 s.
    let runner_args = |topic: &str, group: &str, resolution: &str, workers: usize| -> Vec<String> {
        let workers = workers.to_string();
        let idle = if resolution == "1s" { "60s" } else { "1s" };
        [
            "--kafka",
            &args.brokers,
            "--topic",
            topic,
            "--group",
            group,
            "--workers",
            &workers,
            "--redis",
            &args.redis,
            "--redis-prefix",
            topic,
            "--idle",
            idle,
            "--fetch-wait",
            &args.fetch_wait,
            "--resolution",
            resolution,
            "--stats-topic",
            &format!("{topic}-stats"),
            "--alerts-topic",
            &format!("{topic}-alerts"),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let (mut child, http) = start_runner(&runner_args(&topic, &format!("{topic}-run"), "1s", 2))?;
    let mut first = None;
    let deadline = Instant::now() + Duration::from_secs(600);
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()?;
    loop {
        let a = accepted(&client, &http).await;
        if a > 0 {
            first.get_or_insert_with(Instant::now);
        }
        if a as usize >= n || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pipeline = n as f64 / first.map_or(1.0, |f| f.elapsed().as_secs_f64());
    let _ = child.kill();
    let _ = child.wait();

    let (prices, stats) = latency(&args, &runner_args).await?;

    println!();
    println!("| measurement | ticks/s |");
    println!("|---|---:|");
    println!(
        "| produce (pre-fill, idempotent producer) | {:.0} |",
        produce_rate
    );
    println!(
        "| consume-only (bare rdkafka consumer, decoding) | {:.0} |",
        bare
    );
    println!(
        "| pipeline: topic to Redis, 2 workers | {:.0} ({:.0}% of consume-only) |",
        pipeline,
        100.0 * pipeline / bare
    );
    println!();
    println!(
        "latency at a steady {} ticks/s (100 symbols, resolution {}, producer linger {}, fetch wait {}, {} partitions, {} workers):",
        args.rate,
        args.latency_resolution,
        args.latency_linger,
        args.fetch_wait,
        args.latency_partitions,
        args.latency_workers
    );
    println!();
    println!("| Redis update | p50 | p99 | updates |");
    println!("|---|---:|---:|---:|");
    println!(
        "| `price:<SYM>` (from the tick's time) | {:.1} ms | {:.1} ms | {} |",
        prices.p50, prices.p99, prices.samples
    );
    println!(
        "| `stats:<SYM>:<window>` (from the end of its grid interval) | {:.1} ms | {:.1} ms | {} |",
        stats.p50, stats.p99, stats.samples
    );
    println!();
    println!(
        "price p99 (ms) by second of the span: {}",
        seconds(&prices.p99_by_second)
    );
    println!(
        "stats p99 (ms) by second of the span: {}",
        seconds(&stats.p99_by_second)
    );
    Ok(())
}

/// Produces wall-clock-stamped ticks at `args.rate` for `args.latency_secs` while a pipeline
/// runs; returns the latency percentiles of price updates and of stats updates in Redis.
async fn latency(
    args: &BenchPipelineArgs,
    runner_args: &dyn Fn(&str, &str, &str, usize) -> Vec<String>,
) -> anyhow::Result<(Percentiles, Percentiles)> {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos();
    let topic = format!("bench-latency-{stamp}");
    ensure_topic(&args.brokers, &topic, args.latency_partitions).await?;
    let (mut child, _http) = start_runner(&runner_args(
        &topic,
        &format!("{topic}-run"),
        &args.latency_resolution,
        args.latency_workers,
    ))?;
    // Let the consumer join before the clock starts.
    tokio::time::sleep(Duration::from_secs(8)).await;

    let client = redis::Client::open(args.redis.as_str())?;
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.psubscribe(format!("{topic}updates:*")).await?;
    // Only ticks stamped inside the measured span count. The stream goes on for a while after
    // it, as a live one would: the last ticks of a stream that stops wait for --idle instead.
    let now_ns = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i64)
    };
    // The first 2 s are warm-up (the producer's connection and idempotence handshake, the
    // partitions waking from idle): a steady rate is measured after them.
    let warm_up = Duration::from_secs(2).as_nanos() as i64;
    let (span_start, span_end) = (
        now_ns() + warm_up,
        now_ns() + warm_up + Duration::from_secs(args.latency_secs).as_nanos() as i64,
    );
    // GOSTOCKS_BENCH_TRACE=1: every sample on stderr (wall ms, key, latency ms).
    let trace = std::env::var_os("GOSTOCKS_BENCH_TRACE").is_some();
    let collector = tokio::spawn(async move {
        let mut lat = (Vec::new(), Vec::new());
        let mut messages = pubsub.on_message();
        while let Ok(Some(msg)) =
            tokio::time::timeout(Duration::from_secs(5), messages.next()).await
        {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as i64);
            let payload: String = msg.get_payload().unwrap_or_default();
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&payload) else {
                continue;
            };
            let Some(t) = v["time_ns"]
                .as_i64()
                .filter(|t| (span_start..span_end).contains(t))
            else {
                continue;
            };
            // Price updates carry the tick's time; a stats hash carries its grid time, so its
            // latency runs from the end of the grid interval it closes.
            if trace {
                eprintln!(
                    "{} {} {:.1}",
                    now / 1_000_000,
                    v["key"].as_str().unwrap_or("price"),
                    (now - t) as f64 / 1e6
                );
            }
            match v["key"].as_str() {
                None if v.get("price").is_some() => lat.0.push((t, (now - t) as f64 / 1e6)),
                Some(key) if key.starts_with("stats:") => lat.1.push((t, (now - t) as f64 / 1e6)),
                _ => {}
            }
        }
        lat
    });

    // A tick is stamped when it is handed to the producer, so its linger counts.
    let linger_ms = u32::try_from(args.latency_linger.ns() / 1_000_000).unwrap_or(u32::MAX);
    let producer = TickProducer::new(
        &KafkaConfig::new(&args.brokers, "bench").with_linger_ms(linger_ms),
        TickEncoding::Protobuf,
    )?;
    let symbols: Vec<String> = (0..100).map(|i| format!("LAT{i:03}")).collect();
    let per_ms = (args.rate as f64 / 1000.0).max(1.0);
    let started = Instant::now();
    let mut sent = 0u64;
    let mut inflight = Vec::new();
    let (price, size) = ("100.25".parse()?, "1".parse()?);
    while started.elapsed() < Duration::from_secs(args.latency_secs + 4) {
        let due = (started.elapsed().as_secs_f64() * 1000.0 * per_ms) as u64;
        while sent < due {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_nanos() as i64;
            let tick = Tick::new(
                symbols[(sent % 100) as usize].clone(),
                price,
                size,
                now,
                sent,
            )
            .with_source("bench");
            // Queued now; the acknowledgements are collected below.
            inflight.push(producer.send_owned(topic.clone(), tick));
            sent += 1;
        }
        if inflight.len() > 20_000 {
            for r in futures::future::join_all(std::mem::take(&mut inflight)).await {
                r?;
            }
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    for r in futures::future::join_all(inflight).await {
        r?;
    }
    let (prices, stats) = collector.await?;
    let _ = child.kill();
    let _ = child.wait();
    anyhow::ensure!(
        !prices.is_empty() && !stats.is_empty(),
        "no price or stats update reached Redis"
    );
    Ok((
        Percentiles::of(prices, span_start),
        Percentiles::of(stats, span_start),
    ))
}

/// p50 and p99 of latency samples (ms), how many there were, and the p99 of each second of
/// the measured span (does latency drift as the run goes on?).
struct Percentiles {
    p50: f64,
    p99: f64,
    samples: usize,
    p99_by_second: Vec<f64>,
}

/// The `p` quantile of sorted samples.
fn quantile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p) as usize]
}

impl Percentiles {
    /// From `(event time, latency ms)` samples of a span starting at `start` (ns).
    fn of(samples: Vec<(i64, f64)>, start: i64) -> Percentiles {
        let mut by_second: Vec<Vec<f64>> = Vec::new();
        for &(t, ms) in &samples {
            let second = ((t - start).max(0) / 1_000_000_000) as usize;
            if by_second.len() <= second {
                by_second.resize_with(second + 1, Vec::new);
            }
            by_second[second].push(ms);
        }
        let p99_by_second = by_second
            .into_iter()
            .filter(|s| !s.is_empty())
            .map(|mut s| {
                s.sort_by(f64::total_cmp);
                quantile(&s, 0.99)
            })
            .collect();
        let mut lat: Vec<f64> = samples.into_iter().map(|(_, ms)| ms).collect();
        lat.sort_by(f64::total_cmp);
        Percentiles {
            p50: quantile(&lat, 0.50),
            p99: quantile(&lat, 0.99),
            samples: lat.len(),
            p99_by_second,
        }
    }
}

/// `12.3 14.0 ...`: one figure per second.
fn seconds(p99s: &[f64]) -> String {
    p99s.iter()
        .map(|ms| format!("{ms:.1}"))
        .collect::<Vec<_>>()
        .join(" ")
}
