//! Where users, alerts and events live: Postgres, or memory for the embedded default.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use gostocks_connectors::postgres::alerts::{StoredAlert, StoredEvent};
use gostocks_connectors::postgres::notify as pgn;
use gostocks_connectors::postgres::notify::{Claimed, DeliveryState, StoredChannel};
use gostocks_connectors::postgres::{self, alerts as pg};
use gostocks_core::alerts::{AlertEvent, EventKind};
use tokio_postgres::Client;

/// The alert store.
pub enum Store {
    /// Kept until exit (no Postgres configured).
    Memory(Mutex<Memory>),
    /// Postgres, reconnected when the connection drops.
    Postgres(Pg),
}

/// The in-memory store.
#[derive(Default)]
pub struct Memory {
    users: Vec<(String, String)>,
    alerts: BTreeMap<String, StoredAlert>,
    events: Vec<StoredEvent>,
    seen: HashSet<(String, u64, u64)>,
    channels: BTreeMap<String, StoredChannel>,
    /// The in-memory outbox: lost at exit, like the events.
    outbox: Vec<MemDelivery>,
}

/// A delivery of the in-memory outbox (the columns of the `deliveries` table).
struct MemDelivery {
    id: i64,
    /// Index into `Memory::events`.
    event: usize,
    channel_id: String,
    state: DeliveryState,
    next_at: Instant,
    created: Instant,
}

/// A Postgres connection that reconnects on demand.
pub struct Pg {
    url: String,
    schema: Option<String>,
    ca_file: Option<std::path::PathBuf>,
    client: tokio::sync::Mutex<Option<Arc<Client>>>,
}

impl Pg {
    async fn client(&self) -> anyhow::Result<Arc<Client>> {
        let mut guard = self.client.lock().await;
        if let Some(c) = guard.as_ref().filter(|c| !c.is_closed()) {
            return Ok(Arc::clone(c));
        }
        let c =
            postgres::connect_with_ca(&self.url, self.schema.as_deref(), self.ca_file.as_deref());
        let c = Arc::new(c.await?);
        *guard = Some(Arc::clone(&c));
        Ok(c)
    }
}

impl Store {
    /// The in-memory store.
    pub fn memory() -> Store {
        Store::Memory(Mutex::default())
    }

    /// Connects to Postgres at `url` (in `schema`, if given; TLS as its `sslmode` says,
    /// trusting the CA certificates of `ca_file`, see [`postgres::tls`]) and applies the
    /// migrations.
    pub async fn postgres_with_ca(
        url: &str,
        schema: Option<&str>,
        ca_file: Option<&std::path::Path>,
    ) -> anyhow::Result<Store> {
        let mut client = postgres::connect_with_ca(url, schema, ca_file)
            .await
            .context("connecting to Postgres: is it running, and is --postgres right?")?;
        let ran = postgres::migrate(&mut client).await?;
        if ran > 0 {
            tracing::info!(migrations = ran, "applied migrations");
        }
        Ok(Store::Postgres(Pg {
            url: url.to_owned(),
            schema: schema.map(str::to_owned),
            ca_file: ca_file.map(std::path::Path::to_path_buf),
            client: tokio::sync::Mutex::new(Some(Arc::new(client))),
        }))
    }

    fn mem(m: &Mutex<Memory>) -> std::sync::MutexGuard<'_, Memory> {
        m.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Creates user `name` and returns its id and API key (shown once, never stored).
    pub async fn create_user(&self, name: &str) -> anyhow::Result<(i64, String)> {
        check_user_name(name)?;
        match self {
            Store::Memory(m) => {
                let mut m = Store::mem(m);
                anyhow::ensure!(
                    m.users.iter().all(|(n, _)| n != name),
                    "a user named `{name}` exists; pick another name"
                );
                let id = m.users.len() as i64 + 1;
                let key = super::new_key(id);
                m.users.push((name.to_owned(), super::hash_key(&key)));
                Ok((id, key))
            }
            Store::Postgres(pg) => {
                let c = pg.client().await?;
                // The key embeds the id, which exists only after the insert: insert with a
                // placeholder that matches no key, then set the real hash.
                let id = pg::create_user(&c, name, "-")
                    .await?
                    .with_context(|| format!("a user named `{name}` exists; pick another name"))?;
                let key = super::new_key(id);
                c.execute(
                    "UPDATE users SET api_key_hash = $1 WHERE id = $2",
                    &[&super::hash_key(&key), &id],
                )
                .await
                .context("storing the key hash")?;
                Ok((id, key))
            }
        }
    }

    /// The user a bearer key belongs to, if it is valid.
    pub async fn authenticate(&self, key: &str) -> anyhow::Result<Option<i64>> {
        let Some(id) = super::user_of_key(key) else {
            return Ok(None);
        };
        let hash = match self {
            Store::Memory(m) => Store::mem(m)
                .users
                .get((id - 1).max(0) as usize)
                .map(|(_, h)| h.clone()),
            Store::Postgres(pg) => pg::key_hash(&*pg.client().await?, id).await?,
        };
        Ok(hash.filter(|h| super::verify_key(key, h)).map(|_| id))
    }

    /// Stores a new alert.
    pub async fn insert_alert(&self, a: &StoredAlert) -> anyhow::Result<()> {
        match self {
            Store::Memory(m) => {
                Store::mem(m).alerts.insert(a.id.clone(), a.clone());
                Ok(())
            }
            Store::Postgres(pg) => Ok(pg::insert_alert(&*pg.client().await?, a).await?),
        }
    }

    /// A page of `owner`'s alerts after id `after`.
    pub async fn list_alerts(
        &self,
        owner: i64,
        after: &str,
        limit: usize,
    ) -> anyhow::Result<Vec<StoredAlert>> {
        match self {
            Store::Memory(m) => Ok(Store::mem(m)
                .alerts
                .range::<str, _>((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded))
                .map(|(_, a)| a)
                .filter(|a| a.owner == owner && a.state != "deleted")
                .take(limit)
                .cloned()
                .collect()),
            Store::Postgres(pg) => {
                Ok(pg::list_alerts(&*pg.client().await?, owner, after, limit as i64).await?)
            }
        }
    }

    /// Deletes `owner`'s alert `id`; `None` if they have no such alert.
    pub async fn delete_alert(&self, owner: i64, id: &str) -> anyhow::Result<Option<StoredAlert>> {
        match self {
            Store::Memory(m) => {
                let mut m = Store::mem(m);
                Ok(m.alerts
                    .get_mut(id)
                    .filter(|a| a.owner == owner && a.state != "deleted")
                    .map(|a| {
                        a.state = "deleted".into();
                        a.clone()
                    }))
            }
            Store::Postgres(pg) => Ok(pg::delete_alert(&*pg.client().await?, owner, id).await?),
        }
    }

    /// Every active alert.
    pub async fn active_alerts(&self) -> anyhow::Result<Vec<StoredAlert>> {
        match self {
            Store::Memory(m) => Ok(Store::mem(m)
                .alerts
                .values()
                .filter(|a| a.state == "active")
                .cloned()
                .collect()),
            Store::Postgres(pg) => Ok(pg::active_alerts(&*pg.client().await?).await?),
        }
    }

    /// The active alert `id`, whoever owns it.
    pub async fn active_alert(&self, id: &str) -> anyhow::Result<Option<StoredAlert>> {
        match self {
            Store::Memory(m) => Ok(Store::mem(m)
                .alerts
                .get(id)
                .filter(|a| a.state == "active")
                .cloned()),
            Store::Postgres(pg) => Ok(pg::active_alert(&*pg.client().await?, id).await?),
        }
    }

    /// Ends an active alert's activity: `triggered` (a once-alert that fired) or `paused` with
    /// `reason`. An alert no longer active is left as it is.
    pub async fn settle(&self, id: &str, state: &str, reason: Option<&str>) -> anyhow::Result<()> {
        match self {
            Store::Memory(m) => {
                if let Some(a) = Store::mem(m)
                    .alerts
                    .get_mut(id)
                    .filter(|a| a.state == "active")
                {
                    a.state = state.into();
                    a.paused_reason = reason.map(str::to_owned);
                }
                Ok(())
            }
            Store::Postgres(pg) => Ok(pg::settle(&*pg.client().await?, id, state, reason).await?),
        }
    }

    /// `owner`'s alert `id`, unless deleted.
    pub async fn get_alert(&self, owner: i64, id: &str) -> anyhow::Result<Option<StoredAlert>> {
        match self {
            Store::Memory(m) => Ok(Store::mem(m)
                .alerts
                .get(id)
                .filter(|a| a.owner == owner && a.state != "deleted")
                .cloned()),
            Store::Postgres(pg) => Ok(pg::get_alert(&*pg.client().await?, owner, id).await?),
        }
    }

    /// Makes `owner`'s paused or triggered alert `id` active again from `created_ns`; `None`
    /// when they have no such alert in either state.
    pub async fn resume_alert(
        &self,
        owner: i64,
        id: &str,
        created_ns: u64,
    ) -> anyhow::Result<Option<StoredAlert>> {
        match self {
            Store::Memory(m) => Ok(Store::mem(m)
                .alerts
                .get_mut(id)
                .filter(|a| a.owner == owner && (a.state == "paused" || a.state == "triggered"))
                .map(|a| {
                    a.state = "active".into();
                    a.paused_reason = None;
                    a.created_ns = created_ns;
                    a.clone()
                })),
            Store::Postgres(pg) => {
                Ok(pg::resume_alert(&*pg.client().await?, owner, id, created_ns).await?)
            }
        }
    }

    /// Records an event; `None` when it was already recorded.
    pub async fn insert_event(&self, owner: i64, e: &AlertEvent) -> anyhow::Result<Option<i64>> {
        match self {
            Store::Memory(m) => {
                let mut m = Store::mem(m);
                if !m.seen.insert((e.alert_id.to_string(), e.time_ns, e.seq)) {
                    return Ok(None);
                }
                let id = m.events.len() as i64 + 1;
                m.events.push(StoredEvent {
                    id,
                    owner,
                    event: e.clone(),
                });
                // Only a firing is pushed, as in Postgres.
                let channels = m
                    .alerts
                    .get(&*e.alert_id)
                    .filter(|_| e.kind == EventKind::Fired)
                    .map(|a| a.channels.clone())
                    .unwrap_or_default();
                let now = Instant::now();
                for channel_id in channels {
                    let id = m.outbox.len() as i64 + 1;
                    let event = m.events.len() - 1;
                    m.outbox.push(MemDelivery {
                        id,
                        event,
                        state: DeliveryState {
                            channel_id: channel_id.clone(),
                            state: "pending".into(),
                            attempts: 0,
                            last_status: None,
                            last_error: None,
                        },
                        channel_id,
                        next_at: now,
                        created: now,
                    });
                }
                Ok(Some(id))
            }
            Store::Postgres(pg) => Ok(pg::insert_event(&*pg.client().await?, owner, e).await?),
        }
    }

    /// `owner`'s events after id `after`, at most `limit`.
    pub async fn events_after(
        &self,
        owner: i64,
        after: i64,
        limit: usize,
    ) -> anyhow::Result<Vec<StoredEvent>> {
        match self {
            Store::Memory(m) => Ok(Store::mem(m)
                .events
                .iter()
                .filter(|e| e.owner == owner && e.id > after)
                .take(limit)
                .cloned()
                .collect()),
            Store::Postgres(pg) => {
                Ok(pg::events_after(&*pg.client().await?, owner, after, limit as i64).await?)
            }
        }
    }
}

impl Store {
    /// Stores a channel unless its owner has `max` already; `false` when they have.
    pub async fn insert_channel(&self, c: &StoredChannel, max: usize) -> anyhow::Result<bool> {
        match self {
            Store::Memory(m) => {
                let mut m = Store::mem(m);
                if m.channels.values().filter(|x| x.owner == c.owner).count() >= max {
                    return Ok(false);
                }
                m.channels.insert(c.id.clone(), c.clone());
                Ok(true)
            }
            Store::Postgres(pg) => {
                Ok(pgn::insert_channel(&*pg.client().await?, c, max as i64).await?)
            }
        }
    }

    /// `owner`'s channels, by id.
    pub async fn list_channels(&self, owner: i64) -> anyhow::Result<Vec<StoredChannel>> {
        match self {
            Store::Memory(m) => Ok(Store::mem(m)
                .channels
                .values()
                .filter(|c| c.owner == owner)
                .cloned()
                .collect()),
            Store::Postgres(pg) => Ok(pgn::list_channels(&*pg.client().await?, owner).await?),
        }
    }

    /// Deletes `owner`'s channel `id`, detaching it from their alerts and dropping its
    /// deliveries; `false` when they have no such channel.
    pub async fn delete_channel(&self, owner: i64, id: &str) -> anyhow::Result<bool> {
        match self {
            Store::Memory(m) => {
                let mut m = Store::mem(m);
                if m.channels.get(id).is_none_or(|c| c.owner != owner) {
                    return Ok(false);
                }
                m.channels.remove(id);
                for a in m.alerts.values_mut() {
                    a.channels.retain(|c| c != id);
                }
                m.outbox.retain(|d| d.channel_id != id);
                Ok(true)
            }
            Store::Postgres(pg) => Ok(pgn::delete_channel(&*pg.client().await?, owner, id).await?),
        }
    }

    /// Claims at most `limit` due pending deliveries, each leased for `lease`, its attempt counted.
    pub async fn claim(&self, limit: usize, lease: Duration) -> anyhow::Result<Vec<Claimed>> {
        match self {
            Store::Memory(m) => {
                let mut guard = Store::mem(m);
                let m = &mut *guard;
                let now = Instant::now();
                let mut out = Vec::new();
                for d in m
                    .outbox
                    .iter_mut()
                    .filter(|d| d.state.state == "pending" && d.next_at <= now)
                    .take(limit)
                {
                    let (Some(event), Some(channel)) =
                        (m.events.get(d.event), m.channels.get(&d.channel_id))
                    else {
                        continue;
                    };
                    let Some(alert) = m.alerts.get(&*event.event.alert_id) else {
                        continue;
                    };
                    d.state.attempts += 1;
                    d.next_at = now + lease;
                    out.push(Claimed {
                        id: d.id,
                        attempts: d.state.attempts,
                        age: now - d.created,
                        event: event.clone(),
                        condition: alert.condition,
                        threshold: alert.threshold,
                        channel: channel.clone(),
                    });
                }
                Ok(out)
            }
            Store::Postgres(pg) => Ok(pgn::claim(&*pg.client().await?, limit as i64, lease).await?),
        }
    }

    /// Records the end of an attempt (see [`pgn::finish`]).
    pub async fn finish(
        &self,
        id: i64,
        state: &str,
        retry_after: Duration,
        status: Option<i32>,
        error: Option<&str>,
    ) -> anyhow::Result<()> {
        match self {
            Store::Memory(m) => {
                let mut m = Store::mem(m);
                if let Some(d) = m.outbox.iter_mut().find(|d| d.id == id) {
                    d.state.state = state.to_owned();
                    d.state.last_status = status;
                    d.state.last_error = error.map(str::to_owned);
                    d.next_at = Instant::now() + retry_after;
                }
                Ok(())
            }
            Store::Postgres(pg) => {
                Ok(
                    pgn::finish(&*pg.client().await?, id, state, retry_after, status, error)
                        .await?,
                )
            }
        }
    }

    /// How the deliveries of `owner`'s event `event_id` stand; `None` if no such event of theirs.
    pub async fn deliveries_of(
        &self,
        owner: i64,
        event_id: i64,
    ) -> anyhow::Result<Option<Vec<DeliveryState>>> {
        match self {
            Store::Memory(m) => {
                let m = Store::mem(m);
                let Some(index) = m
                    .events
                    .iter()
                    .position(|e| e.id == event_id && e.owner == owner)
                else {
                    return Ok(None);
                };
                let mut out: Vec<DeliveryState> = m
                    .outbox
                    .iter()
                    .filter(|d| d.event == index)
                    .map(|d| d.state.clone())
                    .collect();
                out.sort_by(|a, b| a.channel_id.cmp(&b.channel_id));
                Ok(Some(out))
            }
            Store::Postgres(pg) => {
                Ok(pgn::deliveries_of(&*pg.client().await?, owner, event_id).await?)
            }
        }
    }

    /// How many deliveries are pending.
    pub async fn outbox_depth(&self) -> anyhow::Result<i64> {
        match self {
            Store::Memory(m) => Ok(Store::mem(m)
                .outbox
                .iter()
                .filter(|d| d.state.state == "pending")
                .count() as i64),
            Store::Postgres(pg) => Ok(pgn::depth(&*pg.client().await?).await?),
        }
    }
}

/// The longest user name, in characters.
pub const MAX_USER_NAME: usize = 64;

/// A user name is 1 to [`MAX_USER_NAME`] characters, not blank, without control characters.
fn check_user_name(name: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        !name.trim().is_empty(),
        "a user name must not be empty or blank; e.g. `gostocks users create alice`"
    );
    anyhow::ensure!(
        name.chars().count() <= MAX_USER_NAME && !name.chars().any(char::is_control),
        "a user name is at most {MAX_USER_NAME} characters without control characters, got {}",
        gostocks_core::symbol::excerpt(name)
    );
    Ok(())
}
