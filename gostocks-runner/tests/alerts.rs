//! The alert service end to end through a running `gostocks run`: users from
//! `gostocks users create`, gRPC with bearer keys, the REST gateway (which calls gRPC), events
//! in Postgres and on the watch stream, user isolation, validation, restart with alerts loaded
//! from Postgres; and the in-memory default.

mod common;

use common::{authed, price_above};

use std::process::Command;
use std::time::{Duration, Instant};

use gostocks_proto::v1;
use gostocks_proto::v1::alert_service_client::AlertServiceClient;
use tonic::Code;
use tonic::transport::Channel;

fn gostocks(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_gostocks"))
        .args(args)
        .output()
        .expect("gostocks runs")
}

/// A runner on Postgres in `schema`, which must report `active` alerts loaded at start-up.
fn start_with_postgres(url: &str, schema: &str, active: usize) -> common::Running {
    let run = common::start(&[
        "--speed",
        "20x",
        "--postgres",
        url,
        "--postgres-schema",
        schema,
    ]);
    let loaded = format!("{active} active alerts loaded");
    assert!(
        run.banner.iter().any(|l| l.contains(&loaded)),
        "{:?}",
        run.banner
    );
    run
}

async fn client(addr: &str) -> AlertServiceClient<Channel> {
    AlertServiceClient::connect(format!("http://{addr}"))
        .await
        .expect("gRPC connects")
}

async fn psql_one(url: &str, schema: &str, sql: &str) -> i64 {
    let client = gostocks_connectors::postgres::connect(url, Some(schema))
        .await
        .expect("postgres");
    client.query_one(sql, &[]).await.expect("query").get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_through_grpc_and_rest_with_postgres() {
    let Some(url) = common::postgres() else {
        return;
    };
    let schema = common::unique_topic("alerts");
    let alice = common::create_user(&url, &schema, "alice");
    let bob = common::create_user(&url, &schema, "bob");
    // The same name twice is refused with a message.
    let again = gostocks(&[
        "users",
        "create",
        "alice",
        "--postgres",
        &url,
        "--postgres-schema",
        &schema,
    ]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists"));
    // Keys never reach the logs; only a salted hash is stored.
    let stored: i64 = psql_one(
        &url,
        &schema,
        &format!(
            "SELECT count(*) FROM users WHERE api_key_hash LIKE '%{}%'",
            &alice[6..]
        ),
    )
    .await;
    assert_eq!(stored, 0, "the key itself is not stored");

    let run = start_with_postgres(&url, &schema, 0);
    let mut c = client(&run.grpc).await;

    // No key, a wrong key: UNAUTHENTICATED.
    let e = c
        .get_alerts(v1::GetAlertsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    let e = c
        .get_alerts(authed(
            v1::GetAlertsRequest::default(),
            "gsk_1_00000000000000000000000000000000",
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);

    // Validation names the field.
    for (req, field) in [
        (price_above("AAPL", -5), "threshold"),
        (price_above("A APL", 5), "symbol"),
        (
            v1::CreateAlertRequest {
                window: "60s".into(),
                ..price_above("AAPL", 5)
            },
            "window",
        ),
        (
            v1::CreateAlertRequest {
                condition: v1::AlertCondition::VolatilityAbove as i32,
                window: "7s".into(),
                ..price_above("AAPL", 5)
            },
            "window",
        ),
        (
            v1::CreateAlertRequest {
                condition: 0,
                ..price_above("AAPL", 5)
            },
            "condition",
        ),
        (
            v1::CreateAlertRequest {
                condition: v1::AlertCondition::Inside as i32,
                ..price_above("AAPL", 5)
            },
            "upper",
        ),
        (
            v1::CreateAlertRequest {
                upper: Some(v1::Decimal {
                    mantissa: 9,
                    scale: 0,
                }),
                ..price_above("AAPL", 5)
            },
            "upper",
        ),
        (
            v1::CreateAlertRequest {
                condition: v1::AlertCondition::ExitsChannel as i32,
                upper: Some(v1::Decimal {
                    mantissa: 5,
                    scale: 0,
                }),
                ..price_above("AAPL", 5)
            },
            "upper",
        ),
    ] {
        let e = c.create_alert(authed(req, &alice)).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{field}: {}", e.message());
        assert!(
            e.message().starts_with(field),
            "names {field}: {}",
            e.message()
        );
    }

    // Alice's alerts: one that fires on the next tick, one that never fires.
    let fires = c
        .create_alert(authed(price_above("AAPL", 1), &alice))
        .await
        .expect("create")
        .into_inner();
    let never = c
        .create_alert(authed(price_above("AAPL", 1_000_000), &alice))
        .await
        .expect("create")
        .into_inner();
    assert_eq!(fires.state, v1::AlertState::Active as i32);

    // Bob sees none of them, cannot delete them (NOT_FOUND, as for no alert at all).
    let bobs = c
        .get_alerts(authed(v1::GetAlertsRequest::default(), &bob))
        .await
        .unwrap()
        .into_inner();
    assert!(bobs.alerts.is_empty());
    let e = c
        .delete_alert(authed(
            v1::DeleteAlertRequest {
                id: never.id.clone(),
            },
            &bob,
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    // An id or page token with a NUL byte is INVALID_ARGUMENT, not an outage of the store.
    let e = c
        .delete_alert(authed(v1::DeleteAlertRequest { id: "a\0b".into() }, &bob))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    let e = c
        .get_alerts(authed(
            v1::GetAlertsRequest {
                page_size: 0,
                page_token: "\0".into(),
            },
            &bob,
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    // A user needs a name.
    for name in ["", "  "] {
        let out = gostocks(&[
            "users",
            "create",
            name,
            "--postgres",
            &url,
            "--postgres-schema",
            &schema,
        ]);
        assert!(!out.status.success(), "users create {name:?} is refused");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("user name"), "{stderr}");
    }

    // Alice's watch from the start gets the firing; Bob's gets nothing.
    let mut alice_watch = c
        .watch_alert_events(authed(
            v1::WatchAlertEventsRequest {
                after_event_id: 0,
                from_start: true,
            },
            &alice,
        ))
        .await
        .expect("watch")
        .into_inner();
    let mut bob_watch = c
        .watch_alert_events(authed(
            v1::WatchAlertEventsRequest {
                after_event_id: 0,
                from_start: true,
            },
            &bob,
        ))
        .await
        .expect("watch")
        .into_inner();
    let event = tokio::time::timeout(Duration::from_secs(30), alice_watch.message())
        .await
        .expect("an event within 30 s")
        .expect("stream ok")
        .expect("an event");
    assert_eq!(event.alert_id, fires.id);
    assert_eq!(event.symbol, "AAPL");
    assert!(
        event.time_ns >= fires.created_ns,
        "the alert applies from its creation"
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(500), bob_watch.message())
            .await
            .is_err(),
        "bob sees none of alice's events"
    );

    // Postgres has the event once and the once-alert triggered.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let n = psql_one(
            &url,
            &schema,
            &format!(
                "SELECT count(*) FROM alerts WHERE id = '{}' AND state = 'triggered'",
                fires.id
            ),
        )
        .await;
        if n == 1 || Instant::now() > deadline {
            assert_eq!(n, 1, "the once-alert is triggered");
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let events = psql_one(
        &url,
        &schema,
        &format!(
            "SELECT count(*) FROM alert_events WHERE alert_id = '{}'",
            fires.id
        ),
    )
    .await;
    assert_eq!(events, 1);

    // REST, through the gateway's gRPC client: the same rules, codes mapped to statuses.
    let http = run.http.clone();
    let alice_key = alice.clone();
    let bob_key = bob.clone();
    let never_id = never.id.clone();
    tokio::task::spawn_blocking(move || {
        let (status, body) = common::request(&http, "GET", "/alerts", None, "");
        assert_eq!((status, body["code"].as_str()), (401, Some("unauthenticated")));
        let (status, body) = common::request(
            &http,
            "POST",
            "/alerts",
            Some(&alice_key),
            r#"{"symbol":"MSFT","condition":"crosses_below","threshold":"400.12345678","mode":"rearm","hysteresis":0.5,"cooldown":"30s"}"#,
        );
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["threshold"], "400.12345678", "an exact decimal, as a string");
        assert_eq!(body["cooldown_ns"], 30_000_000_000i64);
        let (status, body) = common::request(
            &http,
            "POST",
            "/alerts",
            Some(&alice_key),
            r#"{"symbol":"MSFT","condition":"sma_cross_above","threshold":1}"#,
        );
        assert_eq!(status, 400);
        assert!(body["message"].as_str().unwrap().starts_with("window"), "{body}");
        let (status, body) = common::request(
            &http,
            "POST",
            "/alerts",
            Some(&alice_key),
            r#"{"symbol":"MSFT","condition":"change_pct_below","threshold":"0.5"}"#,
        );
        assert_eq!(status, 400, "a change over a window needs the window");
        assert!(body["message"].as_str().unwrap().starts_with("window"), "{body}");
        let (status, _) = common::request(&http, "POST", "/alerts", Some(&alice_key), "{not json");
        assert_eq!(status, 400);
        let huge = format!(r#"{{"symbol":"{}"}}"#, "A".repeat(20_000));
        let (status, _) = common::request(&http, "POST", "/alerts", Some(&alice_key), &huge);
        assert_eq!(status, 413, "bodies over the limit are refused");

        let (status, body) = common::request(&http, "GET", "/alerts?page_size=2", Some(&alice_key), "");
        assert_eq!(status, 200);
        assert_eq!(body["alerts"].as_array().unwrap().len(), 2);
        let token = body["next_page_token"].as_str().expect("a next page").to_owned();
        let (_, body) = common::request(
            &http,
            "GET",
            &format!("/alerts?page_size=2&page_token={token}"),
            Some(&alice_key),
            "",
        );
        assert_eq!(body["alerts"].as_array().unwrap().len(), 1);
        assert!(body["next_page_token"].is_null());

        // Bad input is a 400 on Postgres too, never "the alert store is unavailable".
        for path in ["/alerts?page_token=%00", "/alerts?page_token=a%00b"] {
            let (status, body) = common::request(&http, "GET", path, Some(&alice_key), "");
            assert_eq!(status, 400, "{path}: {body}");
        }
        let (status, body) =
            common::request(&http, "DELETE", "/alerts/a%00b", Some(&alice_key), "");
        assert_eq!(status, 400, "{body}");

        let (status, _) =
            common::request(&http, "DELETE", &format!("/alerts/{never_id}"), Some(&bob_key), "");
        assert_eq!(status, 404, "bob cannot delete alice's alert");
        let (status, _) =
            common::request(&http, "DELETE", &format!("/alerts/{never_id}"), Some(&alice_key), "");
        assert_eq!(status, 200);
        let (_, body) = common::request(&http, "GET", "/alerts/events?after=0", Some(&alice_key), "");
        assert_eq!(body["events"].as_array().unwrap().len(), 1, "{body}");
        let (_, body) = common::request(&http, "GET", "/alerts/events?after=0", Some(&bob_key), "");
        assert!(body["events"].as_array().unwrap().is_empty());
    })
    .await
    .expect("REST checks");
    drop(run);

    // A restart loads the active alerts from Postgres: the rearming MSFT one (the once-alert
    // fired and the other was deleted).
    let _run = start_with_postgres(&url, &schema, 1);
}

#[test]
fn the_in_memory_default_serves_alerts_too() {
    let run = common::start(&["--speed", "20x"]);
    let key = run.demo_key.clone().expect("a demo key is printed");
    let mut ids = Vec::new();
    for body in [
        r#"{"symbol":"AAPL","condition":"price_above","threshold":1}"#,
        // A channel around every price: inside on the next tick.
        r#"{"symbol":"AAPL","condition":"inside","threshold":"1","upper":"1000000.00000001"}"#,
    ] {
        let (status, body) = common::request(&run.http, "POST", "/alerts", Some(&key), body);
        assert_eq!(status, 201, "{body}");
        ids.push(body["id"].as_str().unwrap().to_owned());
        if body["condition"] == "inside" {
            assert_eq!(body["upper"], "1000000.00000001", "exact, as a string");
        } else {
            assert!(body["upper"].is_null(), "{body}");
        }
    }
    for (body, field) in [
        (
            r#"{"symbol":"AAPL","condition":"outside","threshold":1}"#,
            "upper",
        ),
        (
            r#"{"symbol":"AAPL","condition":"enters_channel","threshold":5,"upper":4}"#,
            "upper",
        ),
        (
            r#"{"symbol":"AAPL","condition":"outside","threshold":1,"upper":3,"mode":"rearm","hysteresis":"1.00000001"}"#,
            "hysteresis",
        ),
    ] {
        let (status, answer) = common::request(&run.http, "POST", "/alerts", Some(&key), body);
        assert_eq!(status, 400, "{body}: {answer}");
        assert!(
            answer["message"].as_str().unwrap().starts_with(field),
            "{answer}"
        );
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, body) = common::request(&run.http, "GET", "/alerts/events?after=0", Some(&key), "");
        let mut fired: Vec<String> = body["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["alert_id"].as_str().unwrap().to_owned())
            .collect();
        fired.sort();
        if fired.len() == 2 {
            let mut want = ids.clone();
            want.sort();
            assert_eq!(fired, want, "each once");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "both alerts fired within 30 s: {body}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
