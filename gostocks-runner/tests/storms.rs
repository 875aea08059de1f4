//! Issue 27 through a running `gostocks run` on Postgres: the trigger frequencies, the creation
//! warning, an alert its storm guard pauses (listed paused, its pause an event), and resuming
//! it over REST.

mod common;

use std::time::{Duration, Instant};

use serde_json::Value;

/// Polls `GET path` as `key` until `done` holds of the body, for at most 30 s.
fn wait_for(http: &str, path: &str, key: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = common::request(http, "GET", path, Some(key), "");
        assert_eq!(status, 200, "{body}");
        if done(&body) {
            return body;
        }
        assert!(Instant::now() < deadline, "{what} within 30 s: {body}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn alert<'a>(list: &'a Value, id: &str) -> Option<&'a Value> {
    list["alerts"]
        .as_array()
        .expect("alerts")
        .iter()
        .find(|a| a["id"] == id)
}

fn events_of<'a>(body: &'a Value, id: &str) -> Vec<&'a Value> {
    body["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["alert_id"] == id)
        .collect()
}

#[test]
fn a_storm_pauses_an_alert_until_its_owner_resumes_it() {
    let Some(url) = common::postgres() else {
        return;
    };
    let schema = common::unique_topic("storms");
    let alice = common::create_user(&url, &schema, "alice");
    let bob = common::create_user(&url, &schema, "bob");
    let run = common::start(&[
        "--speed",
        "20x",
        "--postgres",
        &url,
        "--postgres-schema",
        &schema,
    ]);
    let http = run.http.as_str();
    let post = |body: &str| common::request(http, "POST", "/alerts", Some(&alice), body);

    // A rearm alert with no hysteresis and no cooldown is created, with a warning.
    let (status, body) =
        post(r#"{"symbol":"MSFT","condition":"crosses_above","threshold":1000,"mode":"rearm"}"#);
    assert_eq!(status, 201, "{body}");
    let warning = body["warning"].as_str().expect("a warning");
    assert!(warning.contains("hysteresis"), "{warning}");
    assert_eq!(
        body["storm"],
        serde_json::json!({"max_events": 15, "within_ns": 180_000_000_000i64}),
        "the default guard"
    );
    // With a cooldown there is nothing to warn about; the guard can be turned off.
    let (status, body) = post(
        r#"{"symbol":"MSFT","condition":"crosses_above","threshold":1000,"mode":"rearm","cooldown":"1m","storm":"off"}"#,
    );
    assert_eq!(status, 201, "{body}");
    assert!(body["warning"].is_null(), "{body}");
    assert_eq!(body["storm"], "off");

    // The bar modes take one of the configured bars.
    let (status, body) = post(
        r#"{"symbol":"MSFT","condition":"price_above","threshold":1000,"mode":"once_per_bar","bar":"1m"}"#,
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        (body["mode"].as_str(), body["bar"].as_str()),
        (Some("once_per_bar"), Some("1m"))
    );
    for bad in [
        r#"{"symbol":"MSFT","condition":"price_above","threshold":1000,"mode":"once_per_bar","bar":"7m"}"#,
        r#"{"symbol":"MSFT","condition":"price_above","threshold":1000,"mode":"once_per_bar_close"}"#,
    ] {
        let (status, body) = post(bad);
        assert_eq!(status, 400, "{body}");
        assert!(
            body["message"].as_str().unwrap().starts_with("bar"),
            "names bar: {body}"
        );
    }

    // Every second above a level the prices are always above, with a tight guard: two
    // events, then the pause.
    let (status, body) = post(
        r#"{"symbol":"AAPL","condition":"price_above","threshold":1,"mode":"once_per_interval","cooldown":"1s","storm":{"max_events":2,"within":"1h"}}"#,
    );
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_str().expect("an id").to_owned();
    let list = wait_for(http, "/alerts", &alice, "the storm pauses it", |b| {
        alert(b, &id).is_some_and(|a| a["state"] == "paused")
    });
    assert_eq!(alert(&list, &id).unwrap()["paused_reason"], "storm");
    let events = wait_for(
        http,
        "/alerts/events?after=0",
        &alice,
        "three events",
        |b| events_of(b, &id).len() >= 3,
    );
    let events = events_of(&events, &id);
    let kinds: Vec<_> = events.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["fired", "fired", "paused"], "{events:?}");
    assert_eq!(events[2]["reason"], "storm");
    let last = events[2]["id"].as_i64().unwrap();

    // Only its owner resumes it; an active alert is a conflict.
    let resume = format!("/alerts/{id}/resume");
    let (status, _) = common::request(http, "POST", &resume, Some(&bob), "");
    assert_eq!(status, 404, "bob cannot resume alice's alert");
    let (status, body) = common::request(http, "POST", &resume, Some(&alice), "");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"], "active");
    assert!(body["paused_reason"].is_null(), "{body}");
    let created = body["created_ns"].as_i64().unwrap();
    assert!(
        created > events[2]["time_ns"].as_i64().unwrap(),
        "a new creation time"
    );
    let (status, body) = common::request(http, "POST", &resume, Some(&alice), "");
    assert_eq!(status, 409, "{body}");

    // It fires again, from its new creation time, and is paused again by the same guard.
    let again = wait_for(
        http,
        &format!("/alerts/events?after={last}"),
        &alice,
        "firings after the resume",
        |b| !events_of(b, &id).is_empty(),
    );
    let first = events_of(&again, &id)[0];
    assert_eq!(first["kind"], "fired");
    assert!(first["time_ns"].as_i64().unwrap() >= created, "{first}");
    wait_for(http, "/alerts", &alice, "the storm pauses it again", |b| {
        alert(b, &id).is_some_and(|a| a["state"] == "paused")
    });
}
