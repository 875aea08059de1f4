//! `gostocks run --kafka` end to end against a real broker: ticks replayed into a topic come out
//! as live prices and stats over REST; a record that does not decode goes to `ticks.dlq` with
//! its reason, and the pipeline goes on.

mod common;

use std::time::{Duration, Instant};

use futures::StreamExt;
use gostocks_connectors::kafka::{
    DLQ_TOPIC, KafkaConfig, TickConsumer, TickEncoding, TickProducer, ensure_topic,
};
use rdkafka::Message;
use rdkafka::message::Headers;

#[tokio::test(flavor = "multi_thread")]
async fn kafka_ticks_become_live_prices_and_bad_records_go_to_the_dlq() {
    let Some(brokers) = common::brokers() else {
        return;
    };
    let topic = common::unique_topic("run");
    ensure_topic(&brokers, &topic, 2).await.expect("topic");
    ensure_topic(&brokers, DLQ_TOPIC, 1)
        .await
        .expect("dlq topic");

    let group = format!("{topic}_group");
    // Idle after 5 s of silence: longer than any gap between fetches while the topic fills.
    let running = common::start(&[
        "--kafka", &brokers, "--topic", &topic, "--group", &group, "--idle", "5s",
    ]);

    let (_, ticks) = common::recording();
    let producer = TickProducer::new(
        &KafkaConfig::new(&brokers, "unused"),
        TickEncoding::Protobuf,
    )
    .expect("producer");
    let sends: Vec<_> = ticks
        .iter()
        .map(|t| producer.send_owned(topic.clone(), t.clone()))
        .collect();
    for sent in futures::future::join_all(sends).await {
        sent.expect("sent");
    }
    // A record that is not a tick: it must be set aside, not stop anything.
    producer
        .dead_letter(&topic, Some(b"MSFT"), b"\xff\xfenot protobuf", "test")
        .await
        .expect("sent");

    // Once the partitions go quiet, every tick is final: the last MSFT price is the recording's.
    let want = ticks
        .iter()
        .filter(|t| t.symbol == "MSFT")
        .max_by_key(|t| (t.time_ns, t.seq))
        .expect("MSFT trades");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = common::get(&running.http, "/price/MSFT");
        if status == 200 && body["time_ns"].as_i64() == Some(want.time_ns) {
            assert_eq!(
                body["price"].as_str(),
                Some(want.price.to_string().as_str())
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the last MSFT price did not arrive: {status} {body}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // The very last tick of the input: its price goes out as it is taken in.
    let last = ticks
        .iter()
        .max_by_key(|t| (t.time_ns, t.seq))
        .expect("ticks");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = common::get(&running.http, &format!("/price/{}", last.symbol));
        if status == 200 && body["time_ns"].as_i64() == Some(last.time_ns) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the input's last tick was never published: {body}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let (status, health) = common::get(&running.http, "/healthz");
    assert_eq!(
        (status, health["ticks"].as_u64()),
        (200, Some(ticks.len() as u64)),
        "{health}"
    );
    // Stats come once their grid time is final: the last one once the partitions go idle,
    // without waiting for a later tick that may never come.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, stats) = common::get(&running.http, "/stats/MSFT?window=300s");
        if status == 200 && stats["count"].as_i64().is_some_and(|c| c > 0) {
            break;
        }
        assert!(Instant::now() < deadline, "no MSFT stats: {status} {stats}");
        std::thread::sleep(Duration::from_millis(200));
    }

    // The bad record is in the dead-letter topic with its reason.
    let dlq = TickConsumer::subscribe(
        &KafkaConfig::new(&brokers, format!("{topic}_dlq_reader")),
        &[DLQ_TOPIC],
    )
    .expect("consumer");
    let mut stream = dlq.consumer.stream();
    let found = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(Ok(msg)) = stream.next().await {
            if msg.payload() == Some(&b"\xff\xfenot protobuf"[..]) {
                let reason = msg
                    .headers()
                    .and_then(|h| h.iter().find(|h| h.key == "error"))
                    .and_then(|h| h.value)
                    .map(|v| String::from_utf8_lossy(v).into_owned());
                return reason;
            }
        }
        None
    })
    .await
    .expect("the dead letter within 30 s");
    let reason = found.expect("an error header");
    assert!(reason.contains("protobuf"), "{reason}");
}
