//! Postgres round trip: migrations applied (idempotently) in a fresh schema, and rows written and
//! read back through the tables they create.

mod common;

use gostocks_connectors::postgres;

#[tokio::test]
async fn migrations_apply_once_and_rows_round_trip() {
    let url = common::postgres_url();
    if !common::reachable("postgres", &common::host_port(&url)) {
        return;
    }
    let schema = common::unique("pg");
    let mut client = postgres::connect(&url, Some(&schema))
        .await
        .expect("connect");
    assert_eq!(
        postgres::migrate(&mut client).await.expect("migrate"),
        postgres::MIGRATIONS.len()
    );
    assert_eq!(
        postgres::migrate(&mut client).await.expect("migrate again"),
        0,
        "idempotent"
    );

    let user: i64 = client
        .query_one(
            "INSERT INTO users (name, api_key_hash) VALUES ('ada', 'salt$hash') RETURNING id",
            &[],
        )
        .await
        .expect("insert user")
        .get(0);
    client
        .execute(
            "INSERT INTO alerts (id, owner_id, symbol, condition, threshold, created_ns) VALUES ('a1', $1, 'AAPL', 'price_above', 585.33, 0)",
            &[&user],
        )
        .await
        .expect("insert alert");
    let insert_event = "INSERT INTO alert_events (alert_id, owner_id, symbol, tick_time_ns, tick_seq, price, value) \
                        VALUES ('a1', $1, 'AAPL', 100, 7, 585.34, 585.34) ON CONFLICT DO NOTHING";
    assert_eq!(
        client.execute(insert_event, &[&user]).await.expect("event"),
        1
    );
    assert_eq!(
        client
            .execute(insert_event, &[&user])
            .await
            .expect("replayed event"),
        0,
        "idempotent insert"
    );

    let row = client
        .query_one("SELECT a.symbol, a.threshold::text, e.tick_seq FROM alerts a JOIN alert_events e ON e.alert_id = a.id", &[])
        .await
        .expect("read back");
    assert_eq!(row.get::<_, String>(0), "AAPL");
    assert_eq!(row.get::<_, String>(1), "585.33");
    assert_eq!(row.get::<_, i64>(2), 7);

    client
        .batch_execute(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
        .await
        .expect("drop schema");
}

/// Replaying the same ticks through the dataflow gives the same events, and recording them
/// again inserts nothing: an event's identity is (alert, tick time, tick seq).
#[tokio::test]
async fn replayed_ticks_never_record_an_event_twice() {
    use gostocks_connectors::postgres::alerts as pg;
    use gostocks_core::alerts::{AlertRule, Condition, Mode};
    use gostocks_core::batch::{Outputs, run_batch_core};
    use gostocks_core::stats::AnalyticsConfig;

    let url = common::postgres_url();
    if !common::reachable("postgres", &common::host_port(&url)) {
        return;
    }
    let schema = common::unique("pg_events");
    let mut client = postgres::connect(&url, Some(&schema))
        .await
        .expect("connect");
    postgres::migrate(&mut client).await.expect("migrate");
    let owner = pg::create_user(&client, "replayer", "salt$hash")
        .await
        .expect("user")
        .expect("new name");

    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/data/ticks.jsonl");
    let trades: Vec<gostocks_core::Trade> = std::fs::read_to_string(path)
        .expect("the bundled recording")
        .lines()
        .map(|l| {
            serde_json::from_str::<gostocks_core::Tick>(l)
                .unwrap()
                .validate()
                .unwrap()
        })
        .collect();
    let rule = AlertRule::new(
        "replayed",
        trades[0].symbol,
        Condition::CrossesAbove,
        trades[0].price,
    )
    .with_mode(Mode::Rearm)
    .with_storm(None);
    pg::insert_alert(
        &client,
        &pg::StoredAlert {
            id: rule.id.clone(),
            owner,
            symbol: rule.symbol.to_string(),
            condition: rule.condition,
            threshold: rule.threshold,
            mode: rule.mode,
            hysteresis: rule.hysteresis,
            cooldown_ns: 0,
            window_ns: None,
            created_ns: 0,
            state: "active".into(),
            channels: Vec::new(),
            bar_ns: None,
            storm: None,
            paused_reason: None,
            upper: None,
        },
    )
    .await
    .expect("alert");

    let mut inserted = Vec::new();
    for _pass in 0..2 {
        let out = run_batch_core(
            vec![trades.clone()],
            vec![(rule.clone(), 0, 1)],
            &AnalyticsConfig::default(),
            1,
            Outputs::Collect,
        );
        assert!(out.events.len() > 1, "the rule fires more than once");
        let mut n = 0;
        for e in &out.events {
            if pg::insert_event(&client, owner, e)
                .await
                .expect("insert")
                .is_some()
            {
                n += 1;
            }
        }
        inserted.push((out.events.len(), n));
    }
    let (fired, first) = inserted[0];
    assert_eq!(first, fired, "every event is new the first time");
    assert_eq!(
        inserted[1],
        (fired, 0),
        "the replay fires the same events and inserts none"
    );
    let stored = pg::events_after(&client, owner, 0, 10_000)
        .await
        .expect("read");
    assert_eq!(stored.len(), fired);
    assert_eq!(&*stored[0].event.alert_id, "replayed");
}
