//! Kafka round trip against a real broker: produce, consume in a group, commit, and a second
//! consumer of the group resumes after the committed offset.

mod common;

use std::time::Duration;

use futures::StreamExt;
use gostocks_connectors::kafka::{
    KafkaConfig, TickConsumer, TickEncoding, TickProducer, decode_tick,
};
use gostocks_core::Tick;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};

fn tick(i: u64) -> Tick {
    serde_json::from_value(serde_json::json!({
        "symbol": "AAPL", "price": format!("585.{i:02}"), "size": "100", "time_ns": 1_000 + i, "seq": i
    }))
    .expect("valid tick")
}

async fn next_tick(
    consumer: &TickConsumer,
    encoding: TickEncoding,
) -> (Tick, rdkafka::message::OwnedMessage) {
    let msg = tokio::time::timeout(Duration::from_secs(60), consumer.consumer.stream().next())
        .await
        .expect("a record within 60 s")
        .expect("stream open")
        .expect("no kafka error");
    let tick = decode_tick(msg.payload().expect("payload"), encoding).expect("decodes");
    (tick, msg.detach())
}

#[tokio::test(flavor = "multi_thread")]
async fn produce_consume_commit_and_resume_in_a_group() {
    let brokers = common::kafka_brokers();
    if !common::reachable("kafka", &brokers) {
        return;
    }
    let topic = common::unique("ticks");
    gostocks_connectors::kafka::ensure_topic(&brokers, &topic, 1)
        .await
        .expect("topic created");

    let config = KafkaConfig::new(&brokers, common::unique("group"));
    let producer = TickProducer::new(&config, TickEncoding::Protobuf).expect("producer");
    for i in 0..10 {
        producer.send(&topic, &tick(i)).await.expect("acknowledged");
    }

    // The first member reads four ticks and commits after the fourth.
    let first = TickConsumer::subscribe(&config, &[&topic]).expect("first consumer");
    for i in 0..4 {
        let (t, msg) = next_tick(&first, TickEncoding::Protobuf).await;
        assert_eq!(t, tick(i));
        if i == 3 {
            // Kafka's committed offset is the next record to read.
            let mut offsets = TopicPartitionList::new();
            offsets
                .add_partition_offset(
                    msg.topic(),
                    msg.partition(),
                    Offset::Offset(msg.offset() + 1),
                )
                .expect("offset");
            first
                .consumer
                .commit(&offsets, CommitMode::Sync)
                .expect("commit");
        }
    }
    drop(first);

    // A second member of the same group resumes exactly after the committed offset.
    let second = TickConsumer::subscribe(&config, &[&topic]).expect("second consumer");
    for i in 4..10 {
        let (t, _) = next_tick(&second, TickEncoding::Protobuf).await;
        assert_eq!(t, tick(i), "resumed in order after the commit");
    }
}
