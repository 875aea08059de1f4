//! Run with: cargo run -p gostocks-examples --example kafka_ticks
//!
//! Ticks from Kafka into the analytics, results to standard output. The recording is first
//! produced to a fresh topic (protobuf, as `gostocks` writes ticks); a consumer of the
//! `gostocks-connectors` crate then reads it back, each record is decoded and validated, and
//! the trades stream into the pipeline as they arrive. The 1-minute bars are written to stdout
//! as JSON lines as each one closes, and the outcome is checked against the same analytics
//! run straight over the file.
//!
//! The broker is `GOSTOCKS_KAFKA_BROKERS` (default `127.0.0.1:9092`). With no broker there,
//! the example says so and exits; under the test command (`GOSTOCKS_REQUIRE_SERVICES=1`) that
//! is a failure.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use futures::StreamExt;
use gostocks_connectors::kafka::{
    KafkaConfig, TickConsumer, TickEncoding, TickProducer, decode_tick, ensure_topic,
};
use gostocks_core::batch::{Outputs, run_batch};
use gostocks_core::pipeline::build;
use gostocks_core::stats::{AnalyticsConfig, BarRow};
use gostocks_core::watermark::grid_ceil;
use gostocks_core::{Trade, timely};
use gostocks_examples::{SEC, load_ticks};
use rdkafka::Message;

/// How long to wait for the next record before giving up.
const RECORD_WAIT: Duration = Duration::from_secs(60);

fn main() -> anyhow::Result<()> {
    let brokers =
        std::env::var("GOSTOCKS_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into());
    if !reachable(&brokers) {
        if std::env::var("GOSTOCKS_REQUIRE_SERVICES").is_ok_and(|v| v == "1") {
            bail!("kafka at {brokers} is unreachable, and GOSTOCKS_REQUIRE_SERVICES=1 requires it");
        }
        println!(
            "SKIP: no Kafka broker at {brokers}; set GOSTOCKS_KAFKA_BROKERS to one to run this example"
        );
        return Ok(());
    }
    let ticks = load_ticks();
    let runtime = tokio::runtime::Runtime::new().context("tokio runtime")?;
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos();
    let topic = format!("gostocks_example_ticks_{nanos}");
    let config = KafkaConfig::new(&brokers, format!("gostocks_example_{nanos}"));

    // The recording, produced to a fresh topic of one partition (so it is read in order).
    runtime.block_on(async {
        ensure_topic(&brokers, &topic, 1).await?;
        let producer = TickProducer::new(&config, TickEncoding::Protobuf)?;
        // All in flight at once; the idempotent producer keeps them in order on the partition.
        futures::future::try_join_all(ticks.iter().map(|tick| producer.send(&topic, tick))).await?;
        anyhow::Ok(())
    })?;
    eprintln!("produced {} ticks to {topic} at {brokers}", ticks.len());

    // The consumer's background task runs on the runtime.
    let consumer = {
        let _runtime = runtime.enter();
        TickConsumer::subscribe(&config, &[&topic])?
    };
    let expected = ticks.len();
    let analytics = AnalyticsConfig::default();
    let run_config = analytics.clone();
    let (bars, read) =
        timely::execute_directly(move |worker| -> anyhow::Result<(Vec<BarRow>, Vec<Trade>)> {
            let bars = Rc::new(RefCell::new(Vec::new()));
            let sink = Rc::clone(&bars);
            let mut inputs = worker.dataflow::<u64, _, _>(|scope| {
                let (inputs, outputs) = build(scope, &run_config, false);
                outputs.in_order(
                    |_stats| {},
                    move |rows: &mut Vec<BarRow>| {
                        for bar in rows.drain(..) {
                            let mut line = String::new();
                            bar.write_json(&mut line, if bar.bar == 0 { "1s" } else { "1m" });
                            if bar.bar == 1 {
                                println!("{line}");
                            }
                            sink.borrow_mut().push(bar);
                        }
                    },
                    |_events| {},
                );
                inputs
            });
            drop(inputs.rules);
            let mut stream = consumer.consumer.stream();
            let mut read = Vec::with_capacity(expected);
            while read.len() < expected {
                let record = runtime
                    .block_on(async { tokio::time::timeout(RECORD_WAIT, stream.next()).await })
                    .context("no record for 60 s")?
                    .context("the consumer stopped")??;
                let tick =
                    decode_tick(record.payload().unwrap_or_default(), TickEncoding::Protobuf)?;
                let trade = tick.validate()?;
                inputs.trades.advance_to(grid_ceil(trade.time_ns, SEC));
                inputs.trades.send(trade);
                read.push(trade);
                // Results flow while records do.
                worker.step();
            }
            drop(inputs.trades);
            while worker.step() {}
            Ok((bars.take(), read))
        })?;

    // The same analytics straight over the file: the same bars, in the same order.
    let trades: Vec<Trade> = ticks
        .iter()
        .map(|t| t.validate())
        .collect::<Result<_, _>>()?;
    assert_eq!(read, trades, "every tick came back from Kafka, in order");
    let direct = run_batch(vec![trades], &analytics, 1, Outputs::Collect);
    assert_eq!(
        bars, direct.bars,
        "the bars from Kafka are the bars from the file"
    );
    eprintln!(
        "{} ticks read from Kafka; {} bars, equal to the file's",
        read.len(),
        bars.len()
    );
    Ok(())
}

/// Whether the first broker of `brokers` accepts TCP connections.
fn reachable(brokers: &str) -> bool {
    brokers
        .split(',')
        .next()
        .and_then(|a| std::net::ToSocketAddrs::to_socket_addrs(a).ok())
        .and_then(|mut it| it.next())
        .is_some_and(|a| std::net::TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_ok())
}
