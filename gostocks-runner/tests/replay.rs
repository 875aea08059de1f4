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
