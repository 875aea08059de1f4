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

/// Redis's URL (`GOSTOCKS_REDIS_URL`, else the local one) and a client, if it is up (a
/// failure under the test command).
async fn redis() -> Option<(String, gostocks_connectors::redis::RedisSink)> {
    let url =
        std::env::var("GOSTOCKS_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    match gostocks_connectors::redis::RedisSink::connect(&url, "").await {
        Ok(redis) => Some((url, redis)),
        Err(_) => {
            assert!(
                std::env::var_os("GOSTOCKS_REQUIRE_SERVICES").is_none(),
                "redis is required"
            );
            None
        }
    }
}

/// `gostocks replay` of a LOBSTER message file: its trades to `ticks`, its book's quotes to
/// `quotes`.
fn replay(book: &std::path::Path, ticks: &str, quotes: &str, brokers: &str) {
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_gostocks"))
        .args(["--log", "warn", "replay"])
        .arg(book)
        .args([
            "--topic",
            ticks,
            "--quotes-topic",
            quotes,
            "--brokers",
            brokers,
        ])
        .status()
        .expect("replay runs");
    assert!(status.success());
}

/// `run --kafka` with a quote feed on `quotes`, its Redis keys under `<quotes>:` and its
/// changelog on `<quotes>.stats`.
fn start_with_quotes(brokers: &str, ticks: &str, quotes: &str, redis: &str) -> common::Running {
    common::start(&[
        "--kafka",
        brokers,
        "--topic",
        ticks,
        "--group",
        &format!("{ticks}_group"),
        "--quotes-topic",
        quotes,
        "--quote-stats-topic",
        &format!("{quotes}.stats"),
        "--redis",
        redis,
        "--redis-prefix",
        &format!("{quotes}:"),
        "--idle",
        "1s",
    ])
}

/// The grid time of a book's last quote: live, event time stops there once the partitions go
/// quiet (no later quote moves it on).
fn last_grid_time(book: &std::path::Path) -> u64 {
    let end = gostocks_connectors::file::QuoteFile::open(book, 1 << 20)
        .expect("book")
        .expect("quotes")
        .map(|q| q.expect("decodes").time_ns)
        .max()
        .expect("a quote");
    gostocks_core::watermark::grid_ceil(end, 1_000_000_000)
}

/// `run --kafka --quotes-topic`: a LOBSTER book's quotes, replayed into Kafka, reach Redis as
/// the quote statistics and mid bars `analyze --quotes-out` computes from the file.
#[tokio::test(flavor = "multi_thread")]
async fn quotes_from_kafka_reach_redis_as_analyze_computes_them() {
    let (Some(brokers), Some(dir)) = (common::brokers(), common::data_dir()) else {
        return;
    };
    let Some((redis_url, redis)) = redis().await else {
        return;
    };
    let book =
        dir.join("lobster/truncated/AAPL_2012-06-21_34200000_57600000_message_10.first999rows.csv");
    let (ticks, quotes) = (
        common::unique_topic("run-q-ticks"),
        common::unique_topic("run-q"),
    );
    ensure_topic(&brokers, &ticks, 2).await.expect("topic");
    ensure_topic(&brokers, &quotes, 2).await.expect("topic");
    // What analyze computes from the file.
    let tmp = std::env::temp_dir().join(format!("gostocks-run-quotes-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).expect("tmp");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_gostocks"))
        .args(["--log", "warn", "analyze", "--input"])
        .arg(&book)
        .arg("--stats-out")
        .arg(tmp.join("stats.jsonl"))
        .arg("--quotes-out")
        .arg(tmp.join("quotes.jsonl"))
        .arg("--mid-bars-out")
        .arg(tmp.join("mid.jsonl"))
        .status()
        .expect("analyze runs");
    assert!(status.success());
    // Live, event time stops at the last quote's grid time once the partitions go quiet (no
    // later quote moves it on): the row there, and the last bar, which ended before it.
    let end = last_grid_time(&book);
    let last = |file: &str, key: &str, label: &str, time: &str| -> serde_json::Value {
        std::fs::read_to_string(tmp.join(file))
            .expect("written")
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json"))
            .rfind(|v| v[key] == label && v[time].as_u64().is_some_and(|t| t <= end))
            .expect("a row")
    };
    let (row, bar) = (
        last("quotes.jsonl", "window", "60s", "time_ns"),
        last("mid.jsonl", "bar", "1s", "start_ns"),
    );
    assert_eq!(row["time_ns"].as_u64(), Some(end));

    replay(&book, &ticks, &quotes, &brokers);
    // Hostile records on the quotes topic: not protobuf, and a quote with a negative size.
    // Each is refused naming why, and the statistics below are still analyze's.
    let producer = TickProducer::new(
        &KafkaConfig::new(&brokers, "unused"),
        TickEncoding::Protobuf,
    )
    .expect("producer");
    let negative = gostocks_proto::v1::Quote {
        symbol: "AAPL".into(),
        bid: Some(gostocks_proto::v1::Decimal {
            mantissa: 1,
            scale: 0,
        }),
        bid_size: Some(gostocks_proto::v1::Decimal {
            mantissa: -5,
            scale: 0,
        }),
        ask: Some(gostocks_proto::v1::Decimal {
            mantissa: 2,
            scale: 0,
        }),
        ask_size: Some(gostocks_proto::v1::Decimal {
            mantissa: 1,
            scale: 0,
        }),
        time_ns: 1,
        ..Default::default()
    };
    for payload in [
        b"\xff\xfenot a quote".to_vec(),
        prost::Message::encode_to_vec(&negative),
    ] {
        producer
            .send_record(&quotes, b"AAPL".to_vec(), payload)
            .await
            .expect("sent");
    }
    let (prefix, changelog) = (format!("{quotes}:"), format!("{quotes}.stats"));
    let running = start_with_quotes(&brokers, &ticks, &quotes, &redis_url);
    // Once the partitions go quiet, every quote is final: Redis holds analyze's last rows.
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    for (key, want, time) in [
        (format!("{prefix}quote:AAPL:60s"), &row, "time_ns"),
        (format!("{prefix}midbar:AAPL:1s"), &bar, "start_ns"),
    ] {
        loop {
            let got = redis
                .read_hash(&key)
                .await
                .expect("redis")
                .unwrap_or_default();
            let got: std::collections::HashMap<String, String> = got.into_iter().collect();
            if got.get("time_ns").map(String::as_str) == Some(text(&want[time]).as_str()) {
                for (field, value) in want.as_object().expect("object") {
                    if field == "time_ns" {
                        continue;
                    }
                    // Decimals as written; doubles as the same double.
                    let (g, w) = (got.get(field).cloned().unwrap_or_default(), text(value));
                    match (g.parse::<f64>(), w.parse::<f64>()) {
                        (Ok(a), Ok(b)) => assert_eq!(a, b, "{key} {field}: {g} vs {w}"),
                        _ => assert_eq!(g, w, "{key} {field}"),
                    }
                }
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{key} did not reach {want}: {got:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    // And over REST, typed as the row: decimals as strings, counts as integers.
    let (status, body) = common::get(&running.http, "/quotes/AAPL?window=60s");
    assert_eq!(status, 200, "{body}");
    for (field, value) in row.as_object().expect("object") {
        let got = &body[field];
        match field.as_str() {
            "time_ns" | "quotes" | "two_sided_ns" => {
                assert_eq!(got.as_u64(), value.as_u64(), "{field}")
            }
            "mean_spread" | "mean_spread_bps" | "mean_mid" | "crossed_share" | "locked_share" => {
                assert_eq!(got.as_f64(), value.as_f64(), "{field}")
            }
            "bid" | "bid_size" | "ask" | "ask_size" | "mid" | "spread" if !value.is_null() => {
                assert_eq!(got.as_str(), Some(text(value).as_str()), "{field}")
            }
            _ => assert_eq!(got, value, "{field}"),
        }
    }
    assert_eq!(common::get(&running.http, "/quotes/AAPL?window=7s").0, 400);
    assert_eq!(common::get(&running.http, "/quotes/NOPE").0, 404);
    // And over gRPC, decimals exact on the wire.
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", running.grpc))
        .expect("endpoint")
        .connect()
        .await
        .expect("gRPC accepts connections");
    let mut market = gostocks_proto::v1::market_service_client::MarketServiceClient::new(channel);
    let ask = |s: &str| gostocks_proto::v1::GetStatsRequest {
        symbol: s.into(),
        window: "60s".into(),
    };
    let got = market
        .get_quote_stats(ask("aapl"))
        .await
        .expect("the quote statistics")
        .into_inner();
    let dec = |d: Option<gostocks_proto::v1::Decimal>| {
        let d = d.expect("a decimal");
        let s = d.mantissa.abs().to_string();
        let s = format!("{s:0>width$}", width = d.scale as usize + 1);
        let (i, f) = s.split_at(s.len() - d.scale as usize);
        let sign = if d.mantissa < 0 { "-" } else { "" };
        format!("{sign}{i}{}{f}", if f.is_empty() { "" } else { "." })
    };
    assert_eq!(got.time_ns as u64, row["time_ns"].as_u64().unwrap());
    assert_eq!(got.quotes as u64, row["quotes"].as_u64().unwrap());
    assert_eq!(
        got.two_sided_ns as u64,
        row["two_sided_ns"].as_u64().unwrap()
    );
    for (field, value) in [
        ("bid", got.bid),
        ("ask", got.ask),
        ("mid", got.mid),
        ("spread", got.spread),
    ] {
        assert_eq!(dec(value), text(&row[field]), "{field}");
    }
    assert_eq!(got.mean_spread, row["mean_spread"].as_f64());
    assert_eq!(got.mean_spread_bps, row["mean_spread_bps"].as_f64());
    let code = |r: Result<tonic::Response<_>, tonic::Status>| r.err().map(|s| s.code());
    assert_eq!(
        code(
            market
                .get_quote_stats(gostocks_proto::v1::GetStatsRequest {
                    symbol: "AAPL".into(),
                    window: "7s".into()
                })
                .await
        ),
        Some(tonic::Code::InvalidArgument)
    );
    assert_eq!(
        code(market.get_quote_stats(ask("NOPE")).await),
        Some(tonic::Code::NotFound)
    );
    // The changelog topic: analyze's lines up to the last quote's grid time, each once.
    let mut want: Vec<String> = std::fs::read_to_string(tmp.join("quotes.jsonl"))
        .expect("written")
        .lines()
        .filter(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("json");
            v["time_ns"].as_u64().is_some_and(|t| t <= end)
        })
        .map(str::to_owned)
        .collect();
    let mut got: Vec<String> = common::read_records(&brokers, &changelog, want.len())
        .await
        .into_iter()
        .map(|(key, payload)| {
            assert_eq!(key.as_deref(), Some(&b"AAPL"[..]));
            String::from_utf8(payload).expect("utf-8")
        })
        .collect();
    got.sort();
    want.sort();
    assert!(got == want, "the changelog is analyze's rows");
    let _ = std::fs::remove_dir_all(&tmp);
}

/// `spread_above` through the pipeline: alerts created over REST before a LOBSTER book's quotes
/// reach Kafka fire, through the quote feed, exactly the events `analyze --alerts` writes from
/// the file (and a runner without quotes refuses them, naming the fix).
#[tokio::test(flavor = "multi_thread")]
async fn spread_alerts_through_kafka_equal_analyze() {
    let (Some(brokers), Some(dir)) = (common::brokers(), common::data_dir()) else {
        return;
    };
    let Some((redis_url, _)) = redis().await else {
        return;
    };
    let book =
        dir.join("lobster/truncated/AAPL_2012-06-21_34200000_57600000_message_10.first999rows.csv");
    // AAPL near 580: a cent is 0.17 bps, the book's median spread 3.8 bps. A rearming alert
    // above 5 bps that rearms at 4, and one that fires at most once a second above 3 bps.
    let specs = [
        (
            "wide",
            r#"{"symbol":"AAPL","condition":"spread_above","threshold":"5","mode":"rearm","hysteresis":"1","storm":"off"}"#,
        ),
        (
            "bar",
            r#"{"symbol":"AAPL","condition":"spread_above","threshold":"3","mode":"once_per_bar","bar":"1s","storm":"off"}"#,
        ),
    ];
    let tmp = std::env::temp_dir().join(format!("gostocks-run-spread-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).expect("tmp");
    let alerts: Vec<serde_json::Value> = specs
        .iter()
        .map(|(id, spec)| {
            let mut v: serde_json::Value = serde_json::from_str(spec).expect("json");
            v["id"] = (*id).into();
            v
        })
        .collect();
    std::fs::write(
        tmp.join("alerts.json"),
        serde_json::Value::from(alerts).to_string(),
    )
    .expect("written");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_gostocks"))
        .args(["--log", "warn", "analyze", "--input"])
        .arg(&book)
        .arg("--stats-out")
        .arg(tmp.join("stats.jsonl"))
        .arg("--alerts")
        .arg(tmp.join("alerts.json"))
        .arg("--events-out")
        .arg(tmp.join("events.jsonl"))
        .status()
        .expect("analyze runs");
    assert!(status.success());
    let want: Vec<serde_json::Value> = std::fs::read_to_string(tmp.join("events.jsonl"))
        .expect("written")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    for (id, _) in &specs {
        let n = want.iter().filter(|e| e["alert_id"] == *id).count();
        assert!(n >= 3, "analyze fires `{id}` ({n} events)");
    }

    // A runner without quotes refuses the condition, naming the fix.
    {
        let plain = common::start(&["--speed", "max"]);
        let key = plain.demo_key.clone().expect("the demo key");
        let (status, body) =
            common::request(&plain.http, "POST", "/alerts", Some(&key), specs[0].1);
        assert_eq!(status, 400, "{body}");
        assert!(
            body["message"]
                .as_str()
                .is_some_and(|m| m.contains("--quotes-topic")),
            "{body}"
        );
    }

    let (ticks, quotes) = (
        common::unique_topic("run-s-ticks"),
        common::unique_topic("run-s"),
    );
    ensure_topic(&brokers, &ticks, 2).await.expect("topic");
    ensure_topic(&brokers, &quotes, 2).await.expect("topic");
    let running = start_with_quotes(&brokers, &ticks, &quotes, &redis_url);
    let key = running.demo_key.clone().expect("the demo key");
    // Created before any tick: they apply from the start of the book.
    let mut ids = std::collections::HashMap::new();
    for (name, spec) in &specs {
        let (status, body) = common::request(&running.http, "POST", "/alerts", Some(&key), spec);
        assert_eq!(status, 201, "{body}");
        ids.insert(body["id"].as_str().expect("an id").to_owned(), *name);
    }
    replay(&book, &ticks, &quotes, &brokers);
    // Live, event time stops at the last quote's grid time once the partitions go quiet.
    let end = last_grid_time(&book);
    let want: Vec<(String, u64, u64, String, f64)> = want
        .iter()
        .filter(|e| e["time_ns"].as_u64().is_some_and(|t| t < end))
        .map(|e| {
            (
                e["alert_id"].as_str().unwrap().to_owned(),
                e["time_ns"].as_u64().unwrap(),
                e["seq"].as_u64().unwrap(),
                e["price"].to_string(),
                e["value"].as_f64().unwrap(),
            )
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut got: Vec<(String, u64, u64, String, f64)> = Vec::new();
    let mut after = 0;
    loop {
        let (status, body) = common::request(
            &running.http,
            "GET",
            &format!("/alerts/events?after={after}&wait_ms=500"),
            Some(&key),
            "",
        );
        assert_eq!(status, 200, "{body}");
        for e in body["events"].as_array().expect("events") {
            after = after.max(e["id"].as_i64().expect("an id"));
            let t = e["time_ns"].as_u64().unwrap();
            if t >= end {
                continue;
            }
            got.push((
                ids[e["alert_id"].as_str().unwrap()].to_owned(),
                t,
                e["seq"].as_u64().unwrap(),
                // Exact decimals travel as strings over REST, as numbers in the file.
                e["price"].as_str().expect("a decimal string").to_owned(),
                e["value"].as_f64().unwrap(),
            ));
        }
        if got.len() >= want.len() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} events arrived",
            got.len(),
            want.len()
        );
    }
    got.sort_by(|a, b| (a.1, a.2, &a.0).cmp(&(b.1, b.2, &b.0)));
    let mut want = want;
    want.sort_by(|a, b| (a.1, a.2, &a.0).cmp(&(b.1, b.2, &b.0)));
    assert_eq!(got, want, "the events through Kafka are analyze's");
    // The dashboard shows the quotes and lists the spread alerts, in a real browser.
    if let Some(modules) = common::node_modules() {
        let out = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard-quotes");
        let (base, out) = (
            format!("http://{}/", running.http),
            out.display().to_string(),
        );
        common::browser_script(&modules, "quotes.mjs", &[&base, &key, "AAPL", &out]);
    }
    let _ = std::fs::remove_dir_all(&tmp);
}
