//! `gostocks replay`: recorded files into Kafka, keyed by symbol, at the recorded pace or faster;
//! with `--quotes-topic`, the files' quotes too, merged with the ticks in event-time order.

use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use gostocks_connectors::file::{QuoteFile, TickFile};
use gostocks_connectors::kafka::{KafkaConfig, TickProducer, encode_quote};
use gostocks_core::Tick;
use gostocks_core::quotes::Quote;
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
    let mut quote_files = Vec::new();
    if args.quotes_topic.is_some() {
        for path in &args.input {
            if let Some(file) = QuoteFile::open(path, args.max_record_bytes)
                .with_context(|| format!("opening the quotes of {}", path.display()))?
            {
                quote_files.push((source_of(path), file));
            }
        }
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
    if let Some(topic) = &args.quotes_topic {
        gostocks_connectors::kafka::ensure_topic_with(&config, topic, args.kafka.partitions)
            .await
            .with_context(|| format!("making sure topic {topic} exists"))?;
    }
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
    let (mut sent, mut quotes_sent, mut rejected) = (0u64, 0u64, 0u64);
    let mut first_time: Option<i64> = None;
    let mut in_flight = FuturesUnordered::new();
    // Files are merged in event-time order: always read from the one whose next record is
    // oldest (the tick files first, then the quote files).
    let mut heads: Vec<Option<Head>> = Vec::new();
    for f in files.iter_mut() {
        heads.push(next_tick(f, &mut rejected).map(Head::Tick));
    }
    for (_, f) in quote_files.iter_mut() {
        heads.push(next_quote(f, &mut rejected).map(Head::Quote));
    }
    while let Some(i) = (0..heads.len())
        .filter(|&i| heads[i].is_some())
        .min_by_key(|&i| heads[i].as_ref().map(Head::time_ns))
    {
        let head = heads[i].take().expect("chosen because it is some");
        if let Speed::Factor(f) = args.speed {
            let first = *first_time.get_or_insert(head.time_ns());
            let due = Duration::from_nanos(((head.time_ns() - first).max(0) as f64 / f) as u64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                tokio::time::sleep(wait).await;
            }
        }
        match head {
            Head::Tick(tick) => {
                heads[i] = next_tick(&mut files[i], &mut rejected).map(Head::Tick);
                in_flight.push(futures::future::Either::Left(
                    producer.send_owned(args.topic.clone(), tick),
                ));
                sent += 1;
            }
            Head::Quote(quote) => {
                let (source, file) = &mut quote_files[i - files.len()];
                heads[i] = next_quote(file, &mut rejected).map(Head::Quote);
                let topic = args
                    .quotes_topic
                    .as_deref()
                    .expect("quote files only with a topic");
                let payload = encode_quote(&quote, source, args.kafka.tick_encoding);
                in_flight.push(futures::future::Either::Right(producer.send_record(
                    topic,
                    quote.symbol.as_str().as_bytes().to_vec(),
                    payload,
                )));
                quotes_sent += 1;
            }
        }
        if in_flight.len() >= IN_FLIGHT {
            in_flight.next().await.transpose()?;
        }
        if (sent + quotes_sent) % 10_000 == 0 {
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
    if let Some(topic) = &args.quotes_topic {
        eprintln!("replayed {quotes_sent} quotes into {topic}");
    }
    Ok(())
}

/// The next record of one of the merged files.
enum Head {
    Tick(Tick),
    Quote(Quote),
}

impl Head {
    fn time_ns(&self) -> i64 {
        match self {
            Head::Tick(t) => t.time_ns,
            // Quote times come from readers that keep them below 2^63 ns.
            Head::Quote(q) => i64::try_from(q.time_ns).unwrap_or(i64::MAX),
        }
    }
}

/// The `source` a file's quotes carry: `lobster`, `binance` or `alpaca`, from the format.
fn source_of(path: &std::path::Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    if name.contains("_message_") || name.contains("_orderbook_") {
        "lobster".into()
    } else {
        match TickFile::open(path, gostocks_connectors::file::Format::Auto).map(|f| f.format()) {
            Ok(gostocks_connectors::file::Format::AlpacaRaw) => "alpaca".into(),
            _ => "binance".into(),
        }
    }
}

/// The next valid quote of a file; bad records are counted and passed over.
fn next_quote(file: &mut QuoteFile, rejected: &mut u64) -> Option<Quote> {
    for record in file.by_ref() {
        match record {
            Ok(quote) => return Some(quote),
            Err(_) => *rejected += 1,
        }
    }
    None
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
