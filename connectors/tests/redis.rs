//! Redis round trip: pipelined, event-time-guarded writes and pipelined reads.

mod common;

use gostocks_connectors::redis::{PriceUpdate, RedisSink};

fn update(symbol: &str, price: &str, time_ns: i64) -> PriceUpdate {
    PriceUpdate {
        symbol: symbol.into(),
        price: price.into(),
        time_ns,
        seq: 0,
    }
}

#[tokio::test]
async fn pipelined_writes_and_reads_never_go_back_in_time() {
    let url = common::redis_url();
    if !common::reachable("redis", &common::host_port(&url)) {
        return;
    }
    let prefix = format!("{}:", common::unique("redis"));
    let sink = RedisSink::connect(&url, &prefix).await.expect("connect");

    let applied = sink
        .write_prices(&[
            update("AAPL", "585.33", 10),
            update("GOOG", "565.2", 11),
            update("MSFT", "30.1", 12),
        ])
        .await
        .expect("pipelined write");
    assert_eq!(applied, 3);
    // An older AAPL price (a replay) is refused; a newer GOOG one is taken.
    let applied = sink
        .write_prices(&[update("AAPL", "500", 9), update("GOOG", "566", 20)])
        .await
        .expect("write");
    assert_eq!(applied, 1);

    let read = sink
        .read_prices(&["AAPL", "GOOG", "MSFT", "NOPE"])
        .await
        .expect("pipelined read");
    assert_eq!(
        read,
        vec![
            Some(("585.33".into(), 10)),
            Some(("566".into(), 20)),
            Some(("30.1".into(), 12)),
            None
        ]
    );
}

#[tokio::test]
async fn hashes_are_guarded_on_event_time_and_published() {
    use gostocks_connectors::redis::HashUpdate;
    let url = common::redis_url();
    if !common::reachable("redis", &common::host_port(&url)) {
        return;
    }
    let prefix = format!("{}:", common::unique("hash"));
    let sink = RedisSink::connect(&url, &prefix).await.expect("connect");
    let client = redis::Client::open(url.as_str()).expect("client");
    let mut pubsub = client.get_async_pubsub().await.expect("pubsub");
    pubsub
        .subscribe(format!("{prefix}updates:AAPL"))
        .await
        .expect("subscribe");
    let hash = |t: i64, count: &str| HashUpdate {
        key: "stats:AAPL:60s".into(),
        symbol: "AAPL".into(),
        time_ns: t,
        fields: vec![("count".into(), count.into())],
    };
    assert_eq!(sink.write_hashes(&[hash(10, "3")]).await.expect("write"), 1);
    // A replayed, older update is refused; the hash keeps the newer one.
    assert_eq!(sink.write_hashes(&[hash(9, "2")]).await.expect("write"), 0);
    let got = sink
        .read_hash("stats:AAPL:60s")
        .await
        .expect("read")
        .expect("hash");
    assert!(got.contains(&("count".into(), "3".into())));
    assert!(got.contains(&("time_ns".into(), "10".into())));
    let msg = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        futures::StreamExt::next(&mut pubsub.on_message()),
    )
    .await
    .expect("a published update")
    .expect("message");
    let payload: String = msg.get_payload().expect("text");
    assert!(payload.contains("\"count\":\"3\""), "{payload}");
}

#[tokio::test]
async fn the_price_guard_orders_by_time_then_seq_to_the_nanosecond() {
    let url = common::redis_url();
    if !common::reachable("redis", &common::host_port(&url)) {
        return;
    }
    let prefix = format!("{}:", common::unique("redis"));
    let sink = RedisSink::connect(&url, &prefix).await.expect("connect");
    let t = 1_717_421_401_084_713_920i64;
    let at = |price: &str, time_ns, seq| PriceUpdate {
        seq,
        ..update("AAPL", price, time_ns)
    };
    assert_eq!(sink.write_prices(&[at("1", t, 5)]).await.expect("write"), 1);
    // Equal time: the greater seq wins, a smaller one is refused.
    assert_eq!(sink.write_prices(&[at("2", t, 6)]).await.expect("write"), 1);
    assert_eq!(sink.write_prices(&[at("3", t, 4)]).await.expect("write"), 0);
    // One nanosecond apart, beyond what a double can tell: still ordered.
    assert_eq!(
        sink.write_prices(&[at("4", t - 1, 99)])
            .await
            .expect("write"),
        0
    );
    assert_eq!(
        sink.write_prices(&[at("5", t + 1, 0)])
            .await
            .expect("write"),
        1
    );
    let read = sink.read_prices(&["AAPL"]).await.expect("read");
    assert_eq!(read, vec![Some(("5".into(), t + 1))]);
}
