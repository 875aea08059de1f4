//! Graceful shutdown: with open gRPC streams (StreamTicks, WatchAlertEvents) and a REST long
//! poll held, SIGTERM ends each of them at once, and the runner exits 0 within
//! `--shutdown-timeout`, with every output written to Redis.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::authed;
use gostocks_connectors::redis::RedisSink;
use gostocks_proto::v1;
use gostocks_proto::v1::alert_service_client::AlertServiceClient;
use gostocks_proto::v1::market_service_client::MarketServiceClient;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_streams_and_long_polls_and_exits_within_the_deadline() {
    let redis_url =
        std::env::var("GOSTOCKS_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let prefix = format!("{}:", common::unique_topic("shutdown"));
    let mut running = common::start(&[
        "--speed",
        "max",
        "--no-loop",
        "--shutdown-timeout",
        "5s",
        "--redis",
        &redis_url,
        "--redis-prefix",
        &prefix,
    ]);
    let key = running.demo_key.clone().expect("demo key");
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", running.grpc))
        .unwrap()
        .connect()
        .await
        .expect("gRPC connects");
    let mut ticks = MarketServiceClient::new(channel.clone())
        .stream_ticks(v1::StreamTicksRequest { symbols: vec![] })
        .await
        .expect("StreamTicks opens")
        .into_inner();
    let mut events = AlertServiceClient::new(channel)
        .watch_alert_events(authed(
            v1::WatchAlertEventsRequest {
                after_event_id: 0,
                from_start: false,
            },
            &key,
        ))
        .await
        .expect("WatchAlertEvents opens")
        .into_inner();
    let http = running.http.clone();
    let poll = std::thread::spawn(move || {
        let t = Instant::now();
        let answer = common::request(
            &http,
            "GET",
            "/alerts/events?after=0&wait_ms=30000",
            Some(&key),
            "",
        );
        (answer, t.elapsed())
    });
    // The replay (at full speed, once) has been taken in whole when every symbol has a price.
    let (_, recorded) = common::recording();
    let mut symbols: Vec<&str> = recorded.iter().map(|t| t.symbol.as_str()).collect();
    symbols.sort_unstable();
    symbols.dedup();
    let deadline = Instant::now() + Duration::from_secs(30);
    while common::get(&running.http, "/symbols").1["symbols"]
        .as_array()
        .map_or(0, Vec::len)
        < symbols.len()
    {
        assert!(Instant::now() < deadline, "the replay did not finish");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let term = Instant::now();
    let sent = Command::new("kill")
        .args(["-TERM", &running.child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(sent.success());

    // The streams end with OK, whatever they were waiting for.
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        while ticks
            .message()
            .await
            .expect("StreamTicks ends cleanly")
            .is_some()
        {}
        while events
            .message()
            .await
            .expect("WatchAlertEvents ends cleanly")
            .is_some()
        {}
    })
    .await;
    assert!(
        ended.is_ok(),
        "the streams did not end within 5 s of SIGTERM"
    );
    let ((status, body), waited) = poll.join().expect("the long poll");
    assert_eq!(status, 200, "{body}");
    assert!(
        waited < Duration::from_secs(20),
        "the long poll (wait_ms=30000) was answered {waited:?} after it began"
    );

    let exit = loop {
        if let Some(status) = running.child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            term.elapsed() < Duration::from_secs(8),
            "still running 8 s after SIGTERM with --shutdown-timeout 5s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(exit.success(), "exit 0 after a graceful shutdown: {exit}");

    // Everything taken in was written: the last price of every symbol is in Redis.
    let redis = RedisSink::connect(&redis_url, &prefix)
        .await
        .expect("redis");
    let found = redis.read_prices(&symbols).await.expect("read prices");
    for (symbol, price) in symbols.iter().zip(found) {
        let last = recorded
            .iter()
            .filter(|t| t.symbol == *symbol)
            .max_by_key(|t| (t.time_ns, t.seq))
            .expect("a trade");
        // The replay moves event times to the present; prices are as recorded.
        assert_eq!(
            price.map(|(p, _)| p),
            Some(last.price.to_string()),
            "{symbol}"
        );
    }
}
