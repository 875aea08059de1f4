//! `gostocks replay`: recorded files into Kafka, keyed by symbol, at the recorded pace or faster.

use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use gostocks_connectors::file::TickFile;
use gostocks_connectors::kafka::{KafkaConfig, TickProducer};
use gostocks_core::Tick;
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::{ReplayArgs, Speed};

/// Acknowledgements awaited at once: enough to keep the producer's batches full.
const IN_FLIGHT: usize = 10_000;

/// Runs `gostocks replay`.
pub fn replay(args: ReplayArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(replay_async(args))
}

async fn replay_async(args: ReplayArgs) -> anyhow::Result<()> {
    let mut files = Vec::new();
    for path in &args.input {
        files.push(
            TickFile::open_core(path, args.format, args.max_record_bytes)
                .with_context(|| format!("opening {}", path.display()))?,
        );
    }
    let config = KafkaConfig::new(&args.kafka.brokers, "gostocks-replay")
        .with_options(args.kafka.kafka_options.resolve()?);
    gostocks_connectors::kafka::ensure_topic_with(&config, &args.topic, args.kafka.partitions)
        .await
        .with_context(|| {
            format!(
                "making sure topic {} exists on {} (is --brokers right?)",
                args.topic, args.kafka.brokers
            )
        })?;
    let producer = TickProducer::new(&config, args.kafka.tick_encoding)
        .context("connecting to Kafka (is --brokers right?)")?;
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }

    let started = Instant::now();
    let (mut sent, mut rejected) = (0u64, 0u64);
    let mut first_time: Option<i64> = None;
    let mut in_flight = FuturesUnordered::new();
    // Files are merged in event-time order: always read from the one whose next tick is oldest.
    let mut heads: Vec<Option<Tick>> = Vec::new();
    for f in files.iter_mut() {
        heads.push(next_tick(f, &mut rejected));
    }
    while let Some(i) = (0..heads.len())
        .filter(|&i| heads[i].is_some())
        .min_by_key(|&i| heads[i].as_ref().map(|t| t.time_ns))
    {
        let tick = heads[i].take().expect("chosen because it is some");
        heads[i] = next_tick(&mut files[i], &mut rejected);
        if let Speed::Factor(f) = args.speed {
            let first = *first_time.get_or_insert(tick.time_ns);
            let due = Duration::from_nanos(((tick.time_ns - first).max(0) as f64 / f) as u64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                tokio::time::sleep(wait).await;
            }
        }
        in_flight.push(producer.send_owned(args.topic.clone(), tick));
        sent += 1;
        if in_flight.len() >= IN_FLIGHT {
            in_flight.next().await.transpose()?;
        }
        if sent % 10_000 == 0 {
            bar.set_message(format!(
                "{sent} ticks sent, {:.0} ticks/s",
                sent as f64 / started.elapsed().as_secs_f64()
            ));
        }
    }
    while let Some(result) = in_flight.next().await {
        result?;
    }
    producer.flush()?;
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "replayed {sent} ticks into {} in {secs:.2}s: {:.0} ticks/s ({rejected} records rejected)",
        args.topic,
        sent as f64 / secs.max(1e-9)
    );
    Ok(())
}

/// The next decodable, valid tick of a file; bad records are counted and passed over.
fn next_tick(file: &mut TickFile, rejected: &mut u64) -> Option<Tick> {
    for record in file.by_ref() {
        match record {
            Ok(tick) if tick.validate().is_ok() => return Some(tick),
            _ => *rejected += 1,
        }
    }
    None
}
