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
