//! Redis round trip: pipelined, event-time-guarded writes and pipelined reads.

mod common;

use gostocks_connectors::redis::{PriceUpdate, RedisSink};

fn update(symbol: &str, price: &str, time_ns: i64) -> PriceUpdate {
    PriceUpdate {
        symbol: symbol.into(),
        price: price.into(),
        time_ns,
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
