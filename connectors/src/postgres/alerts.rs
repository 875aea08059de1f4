//! The queries of the alert service: users, alert rules and alert events.

use gostocks_core::Fixed;
use gostocks_core::alerts::{AlertEvent, Condition, EventKind, Mode, PauseReason, StormGuard};
use tokio_postgres::{Client, Row};

use crate::error::Error;

/// An alert row, as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredAlert {
    /// Its id.
    pub id: String,
    /// The owning user.
    pub owner: i64,
    /// Symbol.
    pub symbol: String,
    /// Condition.
    pub condition: Condition,
    /// Threshold.
    pub threshold: Fixed,
    /// Mode.
    pub mode: Mode,
    /// Hysteresis.
    pub hysteresis: Fixed,
    /// Cooldown in ns.
    pub cooldown_ns: u64,
    /// Window length in ns, for windowed conditions.
    pub window_ns: Option<u64>,
    /// Creation, in event time.
    pub created_ns: u64,
    /// `active`, `triggered`, `paused` or `deleted`.
    pub state: String,
    /// The notification channels it notifies (ids, in order).
    pub channels: Vec<String>,
    /// The bar size in ns, for the bar modes.
    pub bar_ns: Option<u64>,
    /// The storm guard; `None` when off.
    pub storm: Option<StormGuard>,
    /// Why a `paused` alert is paused (e.g. `storm`).
    pub paused_reason: Option<String>,
    /// The channel conditions' upper edge.
    pub upper: Option<Fixed>,
}

/// An alert event, as stored: its id orders a user's events.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredEvent {
    /// Its id (increasing).
    pub id: i64,
    /// The owning user.
    pub owner: i64,
    /// The event.
    pub event: AlertEvent,
}

fn pg(context: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> Error {
    let context = context.into();
    move |source| Error::Postgres { context, source }
}

fn fixed(text: &str) -> Fixed {
    // NUMERIC renders as plain decimal text, which Fixed reads exactly; a value that does not
    // fit was never written by us.
    text.parse().unwrap_or_default()
}

const ALERT_COLUMNS: &str = "id, owner_id, symbol, condition, threshold::text, mode, hysteresis::text, cooldown_ns, window_ns, created_ns, state, \
     ARRAY(SELECT channel_id FROM alert_channels ac WHERE ac.alert_id = alerts.id ORDER BY channel_id), \
     bar_ns, storm_max_events, storm_within_ns, paused_reason, upper::text";

fn alert(row: &Row) -> StoredAlert {
    StoredAlert {
        id: row.get(0),
        owner: row.get(1),
        symbol: row.get(2),
        condition: row
            .get::<_, String>(3)
            .parse()
            .unwrap_or(Condition::PriceAbove),
        threshold: fixed(&row.get::<_, String>(4)),
        mode: row.get::<_, String>(5).parse().unwrap_or(Mode::Once),
        hysteresis: fixed(&row.get::<_, String>(6)),
        cooldown_ns: row.get::<_, i64>(7) as u64,
        window_ns: row.get::<_, Option<i64>>(8).map(|w| w as u64),
        created_ns: row.get::<_, i64>(9) as u64,
        state: row.get(10),
        channels: row.get(11),
        bar_ns: row.get::<_, Option<i64>>(12).map(|b| b as u64),
        storm: match (row.get::<_, Option<i32>>(13), row.get::<_, Option<i64>>(14)) {
            (Some(max_events), Some(within_ns)) => {
                Some(StormGuard::new(max_events as u32, within_ns as u64))
            }
            _ => None,
        },
        paused_reason: row.get(15),
        upper: row.get::<_, Option<String>>(16).map(|u| fixed(&u)),
    }
}

/// The `kind` and `reason` columns of an event.
fn kind_columns(kind: EventKind) -> (&'static str, Option<&'static str>) {
    match kind {
        EventKind::Fired => ("fired", None),
        EventKind::Paused { reason } => ("paused", Some(reason.as_str())),
    }
}

/// The kind of an event from its columns; an unknown pause reason reads as a storm, the only
/// one written.
fn kind_of(kind: &str, _reason: Option<&str>) -> EventKind {
    match kind {
        "paused" => EventKind::Paused {
            reason: PauseReason::Storm,
        },
        _ => EventKind::Fired,
    }
}

/// Creates a user with the given key hash; `None` if the name is taken.
pub async fn create_user(
    client: &Client,
    name: &str,
    key_hash: &str,
) -> Result<Option<i64>, Error> {
    let row = client
        .query_opt(
            "INSERT INTO users (name, api_key_hash) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING RETURNING id",
            &[&name, &key_hash],
        )
        .await
        .map_err(pg("creating a user"))?;
    Ok(row.map(|r| r.get(0)))
}

/// The stored key hash of user `id`.
pub async fn key_hash(client: &Client, id: i64) -> Result<Option<String>, Error> {
    let row = client
        .query_opt("SELECT api_key_hash FROM users WHERE id = $1", &[&id])
        .await
        .map_err(pg("reading a user"))?;
    Ok(row.map(|r| r.get(0)))
}

/// Stores a new alert with its channels (one statement: both or neither). The caller checks
/// that the channels are the owner's.
pub async fn insert_alert(client: &Client, a: &StoredAlert) -> Result<(), Error> {
    client
        .execute(
            "WITH a AS (INSERT INTO alerts (id, owner_id, symbol, condition, threshold, mode, hysteresis, cooldown_ns, window_ns, created_ns, state, \
             bar_ns, storm_max_events, storm_within_ns, paused_reason, upper) \
             VALUES ($1, $2, $3, $4, CAST($5::text AS numeric), $6, CAST($7::text AS numeric), $8, $9, $10, $11, $13, $14, $15, $16, CAST($17::text AS numeric)) RETURNING id) \
             INSERT INTO alert_channels (alert_id, channel_id) SELECT a.id, c FROM a, unnest($12::text[]) AS c",
            &[
                &a.id,
                &a.owner,
                &a.symbol,
                &a.condition.as_str(),
                &a.threshold.to_string(),
                &a.mode.as_str(),
                &a.hysteresis.to_string(),
                &(a.cooldown_ns as i64),
                &a.window_ns.map(|w| w as i64),
                &(a.created_ns as i64),
                &a.state,
                &a.channels,
                &a.bar_ns.map(|b| b as i64),
                &a.storm.map(|g| g.max_events as i32),
                &a.storm.map(|g| g.within_ns as i64),
                &a.paused_reason,
                &a.upper.map(|u| u.to_string()),
            ],
        )
        .await
        .map_err(pg("storing an alert"))?;
    Ok(())
}

/// One page of `owner`'s alerts (not deleted), by id, after `after`.
pub async fn list_alerts(
    client: &Client,
    owner: i64,
    after: &str,
    limit: i64,
) -> Result<Vec<StoredAlert>, Error> {
    let rows = client
        .query(
            &format!(
                "SELECT {ALERT_COLUMNS} FROM alerts WHERE owner_id = $1 AND id > $2 AND state <> 'deleted' ORDER BY id LIMIT $3"
            ),
            &[&owner, &after, &limit],
        )
        .await
        .map_err(pg("listing alerts"))?;
    Ok(rows.iter().map(alert).collect())
}

/// Marks `owner`'s alert `id` deleted; `None` when no such alert of theirs exists.
pub async fn delete_alert(
    client: &Client,
    owner: i64,
    id: &str,
) -> Result<Option<StoredAlert>, Error> {
    let row = client
        .query_opt(
            &format!(
                "UPDATE alerts SET state = 'deleted' WHERE id = $1 AND owner_id = $2 AND state <> 'deleted' RETURNING {ALERT_COLUMNS}"
            ),
            &[&id, &owner],
        )
        .await
        .map_err(pg("deleting an alert"))?;
    Ok(row.as_ref().map(alert))
}

/// Every active alert (loaded at start-up).
pub async fn active_alerts(client: &Client) -> Result<Vec<StoredAlert>, Error> {
    let rows = client
        .query(
            &format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE state = 'active' ORDER BY id"),
            &[],
        )
        .await
        .map_err(pg("loading active alerts"))?;
    Ok(rows.iter().map(alert).collect())
}

/// The active alert `id`, whoever owns it.
pub async fn active_alert(client: &Client, id: &str) -> Result<Option<StoredAlert>, Error> {
    let row = client
        .query_opt(
            &format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE id = $1 AND state = 'active'"),
            &[&id],
        )
        .await
        .map_err(pg("reading an alert"))?;
    Ok(row.as_ref().map(alert))
}

/// Ends an active alert's activity: `triggered` (a once-alert that fired) or `paused` with
/// `reason` (e.g. `storm`). An alert no longer active is left as it is.
pub async fn settle(
    client: &Client,
    id: &str,
    state: &str,
    reason: Option<&str>,
) -> Result<(), Error> {
    client
        .execute(
            "UPDATE alerts SET state = $2, paused_reason = $3 WHERE id = $1 AND state = 'active'",
            &[&id, &state, &reason],
        )
        .await
        .map_err(pg("settling an alert"))?;
    Ok(())
}

/// `owner`'s alert `id` (not deleted).
pub async fn get_alert(
    client: &Client,
    owner: i64,
    id: &str,
) -> Result<Option<StoredAlert>, Error> {
    let row = client
        .query_opt(
            &format!(
                "SELECT {ALERT_COLUMNS} FROM alerts WHERE id = $1 AND owner_id = $2 AND state <> 'deleted'"
            ),
            &[&id, &owner],
        )
        .await
        .map_err(pg("reading an alert"))?;
    Ok(row.as_ref().map(alert))
}

/// Makes `owner`'s paused or triggered alert `id` active again, applying from `created_ns`;
/// `None` when they have no such alert that is paused or triggered.
pub async fn resume_alert(
    client: &Client,
    owner: i64,
    id: &str,
    created_ns: u64,
) -> Result<Option<StoredAlert>, Error> {
    let row = client
        .query_opt(
            &format!(
                "UPDATE alerts SET state = 'active', paused_reason = NULL, created_ns = $3 \
                 WHERE id = $1 AND owner_id = $2 AND state IN ('paused', 'triggered') RETURNING {ALERT_COLUMNS}"
            ),
            &[&id, &owner, &(created_ns as i64)],
        )
        .await
        .map_err(pg("resuming an alert"))?;
    Ok(row.as_ref().map(alert))
}

/// Records an event; `None` if it was already recorded (its identity is the alert, tick time
/// and tick seq), so replaying ticks never doubles an event. The same statement (so the same
/// transaction) queues a delivery of a firing to each channel of the alert in the outbox (a pause
/// is shown over the API, not pushed: the push formats know only firings).
pub async fn insert_event(
    client: &Client,
    owner: i64,
    e: &AlertEvent,
) -> Result<Option<i64>, Error> {
    let (kind, reason) = kind_columns(e.kind);
    let row = client
        .query_opt(
            "WITH e AS (INSERT INTO alert_events (alert_id, owner_id, symbol, tick_time_ns, tick_seq, price, value, kind, reason) \
             VALUES ($1, $2, $3, $4, $5, CAST($6::text AS numeric), $7, $8, $9) \
             ON CONFLICT (alert_id, tick_time_ns, tick_seq) DO NOTHING RETURNING id), \
             d AS (INSERT INTO deliveries (event_id, channel_id) \
             SELECT e.id, ac.channel_id FROM e JOIN alert_channels ac ON ac.alert_id = $1 WHERE $8 = 'fired' RETURNING 1) \
             SELECT id, (SELECT count(*) FROM d) FROM e",
            &[
                &&*e.alert_id,
                &owner,
                &e.symbol.as_str(),
                &(e.time_ns as i64),
                &(e.seq as i64),
                &e.price.to_string(),
                &e.value,
                &kind,
                &reason,
            ],
        )
        .await
        .map_err(pg("recording an alert event"))?;
    Ok(row.map(|r| r.get(0)))
}

/// `owner`'s events with ids above `after`, in id order, at most `limit`.
pub async fn events_after(
    client: &Client,
    owner: i64,
    after: i64,
    limit: i64,
) -> Result<Vec<StoredEvent>, Error> {
    let rows = client
        .query(
            "SELECT id, owner_id, alert_id, symbol, tick_time_ns, tick_seq, price::text, value, kind, reason FROM alert_events \
             WHERE owner_id = $1 AND id > $2 ORDER BY id LIMIT $3",
            &[&owner, &after, &limit],
        )
        .await
        .map_err(pg("reading alert events"))?;
    Ok(rows
        .iter()
        .map(|r| StoredEvent {
            id: r.get(0),
            owner: r.get(1),
            event: AlertEvent::new(
                r.get::<_, String>(2),
                gostocks_core::Symbol::new(r.get::<_, &str>(3)).unwrap_or_else(|_| {
                    gostocks_core::Symbol::new("?").expect("a one-letter symbol")
                }),
                r.get::<_, i64>(4) as u64,
                r.get::<_, i64>(5) as u64,
                fixed(&r.get::<_, String>(6)),
                r.get(7),
                kind_of(r.get(8), r.get(9)),
            ),
        })
        .collect())
}
