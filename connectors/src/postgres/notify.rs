//! The queries of notifications: channels, and the outbox of deliveries (one row per event and
//! channel, queued by [`super::alerts::insert_event`] in the statement that stores the event).

use std::time::Duration;

use gostocks_core::Fixed;
use gostocks_core::alerts::{AlertEvent, Condition};
use tokio_postgres::Client;

use super::alerts::StoredEvent;
use crate::error::Error;

/// A notification channel, as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredChannel {
    /// Its id (`ch_` and 16 hex digits).
    pub id: String,
    /// The owning user.
    pub owner: i64,
    /// `webhook`, `slack`, `discord` or `teams`.
    pub kind: String,
    /// Where deliveries are POSTed.
    pub url: String,
    /// The HMAC key of a webhook (empty for the presets).
    pub secret: String,
    /// Creation, in unix ms.
    pub created_ms: i64,
}

/// A claimed delivery: what to send, where, and how it stands.
#[derive(Clone, Debug)]
pub struct Claimed {
    /// The delivery's id.
    pub id: i64,
    /// Attempts so far, this one included.
    pub attempts: i32,
    /// How long ago the event was queued.
    pub age: Duration,
    /// The event.
    pub event: StoredEvent,
    /// The alert's condition.
    pub condition: Condition,
    /// The alert's threshold.
    pub threshold: Fixed,
    /// The channel.
    pub channel: StoredChannel,
}

/// How a delivery stands (the visible state).
#[derive(Clone, Debug, PartialEq)]
pub struct DeliveryState {
    /// The channel.
    pub channel_id: String,
    /// `pending`, `delivered` or `failed`.
    pub state: String,
    /// Attempts so far.
    pub attempts: i32,
    /// The last response's status, if any.
    pub last_status: Option<i32>,
    /// The last error, if any.
    pub last_error: Option<String>,
}

fn pg(context: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> Error {
    let context = context.into();
    move |source| Error::Postgres { context, source }
}

const CHANNEL_COLUMNS: &str = "channels.id, channels.owner_id, channels.kind, channels.url, channels.secret, \
     (extract(epoch FROM channels.created_at) * 1000)::bigint";

fn channel(r: &tokio_postgres::Row, at: usize) -> StoredChannel {
    StoredChannel {
        id: r.get(at),
        owner: r.get(at + 1),
        kind: r.get(at + 2),
        url: r.get(at + 3),
        secret: r.get(at + 4),
        created_ms: r.get(at + 5),
    }
}

/// Stores a channel unless its owner already has `max` of them; `false` when they have.
pub async fn insert_channel(client: &Client, c: &StoredChannel, max: i64) -> Result<bool, Error> {
    let n = client
        .execute(
            "INSERT INTO channels (id, owner_id, kind, url, secret) \
             SELECT $1, $2, $3, $4, $5 WHERE (SELECT count(*) FROM channels WHERE owner_id = $2) < $6",
            &[&c.id, &c.owner, &c.kind, &c.url, &c.secret, &max],
        )
        .await
        .map_err(pg("storing a channel"))?;
    Ok(n == 1)
}

/// `owner`'s channels, by id.
pub async fn list_channels(client: &Client, owner: i64) -> Result<Vec<StoredChannel>, Error> {
    let rows = client
        .query(
            &format!("SELECT {CHANNEL_COLUMNS} FROM channels WHERE owner_id = $1 ORDER BY id"),
            &[&owner],
        )
        .await
        .map_err(pg("listing channels"))?;
    Ok(rows.iter().map(|r| channel(r, 0)).collect())
}

/// Deletes `owner`'s channel `id` (detaching it from alerts, dropping its pending deliveries);
/// `false` when they have no such channel.
pub async fn delete_channel(client: &Client, owner: i64, id: &str) -> Result<bool, Error> {
    let n = client
        .execute(
            "DELETE FROM channels WHERE id = $1 AND owner_id = $2",
            &[&id, &owner],
        )
        .await
        .map_err(pg("deleting a channel"))?;
    Ok(n == 1)
}

/// Claims at most `limit` due pending deliveries, leasing each for `lease` (a runner that dies
/// mid-attempt leaves it due again when the lease ends) and counting the attempt. Deliveries
/// another runner holds are skipped.
pub async fn claim(client: &Client, limit: i64, lease: Duration) -> Result<Vec<Claimed>, Error> {
    let lease_ms = lease.as_millis() as i64;
    let rows = client
        .query(
            &format!(
                "WITH c AS (UPDATE deliveries SET attempts = attempts + 1, next_at = now() + $2::bigint * interval '1 millisecond' \
                 WHERE id IN (SELECT id FROM deliveries WHERE state = 'pending' AND next_at <= now() \
                 ORDER BY next_at LIMIT $1 FOR UPDATE SKIP LOCKED) \
                 RETURNING id, event_id, channel_id, attempts, created_at) \
                 SELECT c.id, c.attempts, (extract(epoch FROM now() - c.created_at) * 1000)::bigint, \
                 e.id, e.owner_id, e.alert_id, e.symbol, e.tick_time_ns, e.tick_seq, e.price::text, e.value, \
                 a.condition, a.threshold::text, {CHANNEL_COLUMNS} \
                 FROM c JOIN alert_events e ON e.id = c.event_id JOIN alerts a ON a.id = e.alert_id \
                 JOIN channels ON channels.id = c.channel_id ORDER BY c.id"
            ),
            &[&limit, &lease_ms],
        )
        .await
        .map_err(pg("claiming deliveries"))?;
    Ok(rows
        .iter()
        .map(|r| Claimed {
            id: r.get(0),
            attempts: r.get(1),
            age: Duration::from_millis(r.get::<_, i64>(2).max(0) as u64),
            event: StoredEvent {
                id: r.get(3),
                owner: r.get(4),
                event: AlertEvent::new(
                    r.get::<_, String>(5),
                    gostocks_core::Symbol::new(r.get::<_, &str>(6)).unwrap_or_else(|_| {
                        gostocks_core::Symbol::new("?").expect("a one-letter symbol")
                    }),
                    r.get::<_, i64>(7) as u64,
                    r.get::<_, i64>(8) as u64,
                    r.get::<_, String>(9).parse().unwrap_or_default(),
                    r.get(10),
                    Default::default(),
                ),
            },
            condition: r
                .get::<_, String>(11)
                .parse()
                .unwrap_or(Condition::PriceAbove),
            threshold: r.get::<_, String>(12).parse().unwrap_or_default(),
            channel: channel(r, 13),
        })
        .collect())
}

/// Records the end of an attempt: `state` (`delivered`, `failed`, or `pending` again, due after
/// `retry_after`), with the response status and the error, if any.
pub async fn finish(
    client: &Client,
    id: i64,
    state: &str,
    retry_after: Duration,
    status: Option<i32>,
    error: Option<&str>,
) -> Result<(), Error> {
    let ms = retry_after.as_millis() as i64;
    client
        .execute(
            "UPDATE deliveries SET state = $2, last_status = $3, last_error = $4, \
             next_at = now() + $5::bigint * interval '1 millisecond', \
             done_at = CASE WHEN $2 = 'pending' THEN NULL ELSE now() END WHERE id = $1",
            &[&id, &state, &status, &error, &ms],
        )
        .await
        .map_err(pg("recording a delivery attempt"))?;
    Ok(())
}

/// How the deliveries of `owner`'s event `event_id` stand, by channel; `None` if they have no
/// such event.
pub async fn deliveries_of(
    client: &Client,
    owner: i64,
    event_id: i64,
) -> Result<Option<Vec<DeliveryState>>, Error> {
    let found = client
        .query_opt(
            "SELECT 1 FROM alert_events WHERE id = $1 AND owner_id = $2",
            &[&event_id, &owner],
        )
        .await
        .map_err(pg("reading an event"))?;
    if found.is_none() {
        return Ok(None);
    }
    let rows = client
        .query(
            "SELECT channel_id, state, attempts, last_status, last_error FROM deliveries \
             WHERE event_id = $1 ORDER BY channel_id",
            &[&event_id],
        )
        .await
        .map_err(pg("reading deliveries"))?;
    Ok(Some(
        rows.iter()
            .map(|r| DeliveryState {
                channel_id: r.get(0),
                state: r.get(1),
                attempts: r.get(2),
                last_status: r.get(3),
                last_error: r.get(4),
            })
            .collect(),
    ))
}

/// How many deliveries are pending.
pub async fn depth(client: &Client) -> Result<i64, Error> {
    let row = client
        .query_one(
            "SELECT count(*) FROM deliveries WHERE state = 'pending'",
            &[],
        )
        .await
        .map_err(pg("counting pending deliveries"))?;
    Ok(row.get(0))
}
