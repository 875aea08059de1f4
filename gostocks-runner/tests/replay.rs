//! `gostocks replay` against a real Kafka-protocol broker: every tick of the bundled recording
//! arrives once, keyed by symbol, in event-time order per symbol.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt;
use gostocks_connectors::kafka::{KafkaConfig, TickConsumer, TickEncoding, decode_tick};
use gostocks_core::Tick;
use rdkafka::Message;

#[tokio::test(flavor = "multi_thread")]
async fn replay_delivers_every_tick_once_keyed_and_in_order() {
    let Some(brokers) = common::brokers() else {
        return;
    };
    let topic = common::unique_topic("replay");
    gostocks_connectors::kafka::ensure_topic(&brokers, &topic, 3)
        .await
        .expect("topic created");

    let (recording, expected) = common::recording();
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_gostocks"))
        .args([
            "--log",
            "warn",
            "replay",
            recording,
            "--topic",
            &topic,
            "--brokers",
            &brokers,
            "--speed",
            "max",
        ])
        .status()
        .expect("gostocks runs");
    assert!(status.success());

    let consumer = TickConsumer::subscribe(
        &KafkaConfig::new(&brokers, format!("{topic}_reader")),
        &[&topic],
    )
    .expect("consumer");
    let mut got: HashMap<String, Vec<Tick>> = HashMap::new();
    let mut count = 0;
    let mut stream = consumer.consumer.stream();
    while count < expected.len() {
        let msg = tokio::time::timeout(Duration::from_secs(60), stream.next())
            .await
            .expect("records keep coming")
            .expect("stream open")
            .expect("no kafka error");
        let tick = decode_tick(msg.payload().expect("payload"), TickEncoding::Protobuf)
            .expect("protobuf tick");
        assert_eq!(msg.key(), Some(tick.symbol.as_bytes()), "keyed by symbol");
        got.entry(tick.symbol.clone()).or_default().push(tick);
        count += 1;
    }
    // Each symbol lives on one partition, so its ticks arrive in the order they were sent.
    let mut want: HashMap<String, Vec<Tick>> = HashMap::new();
    for t in expected {
        want.entry(t.symbol.clone()).or_default().push(t);
    }
    assert_eq!(got, want, "every tick exactly once, in order per symbol");
}

/// `replay --quotes-topic`: the quotes of a LOBSTER book and a Binance session arrive once each,
/// keyed by symbol, in the canonical JSON form, and give the reference's quote statistics.
#[tokio::test(flavor = "multi_thread")]
async fn replay_delivers_the_quotes_of_books_and_sessions() {
    let (Some(brokers), Some(dir)) = (common::brokers(), common::data_dir()) else {
        return;
    };
    let (ticks, quotes) = (
        common::unique_topic("replay-ticks"),
        common::unique_topic("replay-quotes"),
    );
    // One partition: the consumer sees the quotes in the order they were sent.
    gostocks_connectors::kafka::ensure_topic(&brokers, &quotes, 1)
        .await
        .expect("topic created");
    let inputs = [
        "lobster/truncated/AAPL_2012-06-21_34200000_57600000_message_10.first999rows.csv",
        "crypto/raw_hftbacktest/spot_ethusdt_20240808.gz",
    ]
    .map(|p| dir.join(p));
    let mut want: Vec<gostocks_core::quotes::Quote> = Vec::new();
    for path in &inputs {
        let file = gostocks_connectors::file::QuoteFile::open(path, 1 << 20)
            .expect("opens")
            .expect("carries quotes");
        want.extend(file.map(|q| q.expect("decodes")));
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gostocks"))
        .args(["--log", "warn", "replay"])
        .args(&inputs)
        .args([
            "--topic",
            &ticks,
            "--quotes-topic",
            &quotes,
            "--brokers",
            &brokers,
        ])
        .args(["--tick-encoding", "json"])
        .output()
        .expect("gostocks runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("replayed {} quotes into {quotes}", want.len())),
        "{stderr}"
    );

    let mut got = Vec::new();
    for (key, payload) in common::read_records(&brokers, &quotes, want.len()).await {
        let text = std::str::from_utf8(&payload).expect("JSON text");
        assert!(text.contains(r#""source":""#), "{text}");
        let quote = gostocks_connectors::kafka::decode_quote(&payload, TickEncoding::Json)
            .expect("a canonical JSON quote");
        assert_eq!(
            key.as_deref(),
            Some(quote.symbol.as_str().as_bytes()),
            "keyed by symbol"
        );
        got.push(quote);
    }
    // Every quote once: the same multiset, each symbol's in its file's order.
    let per_symbol = |qs: &[gostocks_core::quotes::Quote]| {
        let mut m: HashMap<String, Vec<gostocks_core::quotes::Quote>> = HashMap::new();
        for q in qs {
            m.entry(q.symbol.as_str().to_owned()).or_default().push(*q);
        }
        m
    };
    assert_eq!(per_symbol(&got), per_symbol(&want));
    // Through the engine, as `run` would: the reference's statistics.
    let cfg = gostocks_core::stats::AnalyticsConfig::default();
    let mut engine = gostocks_core::quotes::QuoteEngine::new(cfg.clone(), 1);
    for q in &got {
        engine.push(0, *q).expect("in time order");
    }
    let (rows, _) = engine.finish();
    assert_eq!(rows, gostocks_core::reference::quote_stats(&want, &cfg));
}
