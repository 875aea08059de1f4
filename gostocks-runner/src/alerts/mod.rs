//! The alert service's state: users and their keys, alert rules, and fired events, kept in
//! Postgres (or in memory when none is configured), with the channel of rule changes into the
//! dataflow and the broadcast of recorded events to live watchers. Fired events come back
//! through the alert store's sink (`sinks/alert_events.rs`), which calls [`AlertHub::record`].

mod keys;
pub mod service;
mod store;

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::mpsc::Sender;

use gostocks_connectors::postgres::alerts::{StoredAlert, StoredEvent};
use gostocks_core::Span;
use gostocks_core::alerts::{AlertEvent, AlertRule, EventKind, Mode, window_index};
use tokio::sync::broadcast;

pub use keys::{hash_key, new_key, user_of_key, verify_key};
pub use store::Store;

/// A change of the rule collection for the dataflow: the rule, and +1 to insert it or -1 to
/// retract it. It applies from the dataflow's input time when it arrives.
pub type RuleChange = (AlertRule, isize);

/// How a delivery attempt ended, for the live feeds (`GET /alerts/stream`).
#[derive(Clone, Debug)]
pub struct DeliveryUpdate {
    /// The event's owner.
    pub owner: i64,
    /// The event.
    pub event_id: i64,
    /// The channel.
    pub channel_id: String,
    /// `pending` (to be retried), `delivered` or `failed`.
    pub state: &'static str,
    /// Attempts so far.
    pub attempts: i32,
    /// The receiver's HTTP status, if it answered.
    pub last_status: Option<u16>,
    /// Why the attempt failed, if it did.
    pub last_error: Option<String>,
}

/// What the services share.
pub struct AlertHub {
    /// Where users, alerts and events live.
    pub store: Store,
    /// The analytics windows (rules name them by length).
    pub windows: Vec<Span>,
    /// The analytics bars (the bar modes name them by length).
    pub bars: Vec<Span>,
    rules: Mutex<Sender<RuleChange>>,
    /// Where the rules judged on quotes go (the quote feed), when the runner reads quotes.
    quote_rules: Mutex<Option<Sender<RuleChange>>>,
    /// Owner and mode of every rule whose events are recorded, by alert id.
    owners: Mutex<HashMap<String, (i64, Mode)>>,
    /// Every rule in the dataflow, by alert id, as inserted: a retraction must match it
    /// exactly, and retracts nothing that is not there (a paused or triggered alert after a
    /// restart).
    live: Mutex<HashMap<String, AlertRule>>,
    events: broadcast::Sender<StoredEvent>,
    deliveries: broadcast::Sender<DeliveryUpdate>,
    /// Woken when an event is stored (it may have queued deliveries) or an attempt ends.
    pub wake: tokio::sync::Notify,
    /// Whether channels may point at loopback, private or link-local addresses.
    pub allow_private: bool,
    /// One process of a timely cluster: other processes' hubs insert rules too (see
    /// [`AlertHub::in_cluster`]).
    clustered: bool,
}

impl AlertHub {
    /// A hub over `store` that sends rule changes to `rules`.
    pub fn new(
        store: Store,
        windows: Vec<Span>,
        bars: Vec<Span>,
        rules: Sender<RuleChange>,
    ) -> AlertHub {
        AlertHub {
            store,
            windows,
            bars,
            rules: Mutex::new(rules),
            quote_rules: Mutex::new(None),
            owners: Mutex::new(HashMap::new()),
            live: Mutex::new(HashMap::new()),
            events: broadcast::channel(4096).0,
            deliveries: broadcast::channel(1024).0,
            wake: tokio::sync::Notify::new(),
            allow_private: false,
            clustered: false,
        }
    }

    /// One process of a timely cluster sharing its store (Postgres) with the others: an alert
    /// may have been inserted into the dataflow by another process's hub. So a retraction this
    /// hub did not insert is sent as given (the stored alert's rule is the one inserted), and an
    /// event of an alert this hub does not know is recorded if the store has the alert active.
    pub fn in_cluster(mut self, clustered: bool) -> AlertHub {
        self.clustered = clustered;
        self
    }

    /// Sends the rules judged on quotes (`spread_above`) to `rules`, the quote feed's channel,
    /// rather than to the trade dataflow.
    pub fn with_quote_rules(self, rules: Sender<RuleChange>) -> AlertHub {
        *self.quote_rules.lock().unwrap_or_else(|e| e.into_inner()) = Some(rules);
        self
    }

    /// Whether rules judged on quotes have somewhere to go.
    pub fn reads_quotes(&self) -> bool {
        self.quote_rules
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    /// Allows (or not) channels to private destinations.
    pub fn with_allow_private(mut self, allow: bool) -> AlertHub {
        self.allow_private = allow;
        self
    }

    /// The rule the dataflow matches for a stored alert; `None` if its window is no longer
    /// configured (it is then skipped, with a warning).
    pub fn rule_of(&self, a: &StoredAlert) -> Option<AlertRule> {
        let window = match a.window_ns {
            Some(ns) => {
                let label = format!("{ns}ns");
                match window_index(&label, &self.windows) {
                    Ok(i) => Some(i),
                    Err(_) => {
                        tracing::warn!(alert = %a.id, window_ns = ns, "alert names a window this run does not compute; skipped");
                        return None;
                    }
                }
            }
            None => None,
        };
        Some(
            AlertRule::new(
                a.id.clone(),
                gostocks_core::Symbol::new(&a.symbol).ok()?,
                a.condition,
                a.threshold,
            )
            .with_mode(a.mode)
            .with_hysteresis(a.hysteresis)
            .with_cooldown_ns(a.cooldown_ns)
            .with_window(window)
            .with_created_ns(a.created_ns)
            .with_bar_ns(a.bar_ns)
            .with_storm(a.storm)
            .with_upper(a.upper),
        )
    }

    /// Sends a rule change into the running dataflow: `diff > 0` inserts `rule`; otherwise
    /// the rule of the same id that is in the dataflow (if any) is retracted.
    pub fn change(&self, owner: i64, rule: AlertRule, diff: isize) {
        let mut owners = self.owners.lock().unwrap_or_else(|e| e.into_inner());
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        let trade_rules = self.rules.lock().unwrap_or_else(|e| e.into_inner());
        let quote_rules = self.quote_rules.lock().unwrap_or_else(|e| e.into_inner());
        // A rule judged on quotes goes to the quote feed; with none, it cannot fire (the
        // service refuses to create one), and a stored one waits for a runner that reads quotes.
        let rules = if rule.condition.on_quotes() {
            match quote_rules.as_ref() {
                Some(q) => q,
                None => return,
            }
        } else {
            &*trade_rules
        };
        if diff > 0 {
            owners.insert(rule.id.clone(), (owner, rule.mode));
            live.insert(rule.id.clone(), rule.clone());
            let _ = rules.send((rule, 1));
        } else {
            owners.remove(&rule.id);
            match live.remove(&rule.id) {
                Some(inserted) => {
                    let _ = rules.send((inserted, -1));
                }
                None if self.clustered => {
                    let _ = rules.send((rule, -1));
                }
                None => {}
            }
        }
    }

    /// Loads the active alerts into the dataflow (start-up).
    pub async fn load_active(&self) -> anyhow::Result<usize> {
        let active = self.store.active_alerts().await?;
        let mut n = 0;
        for a in &active {
            if let Some(rule) = self.rule_of(a) {
                self.change(a.owner, rule, 1);
                n += 1;
            }
        }
        Ok(n)
    }

    /// A live feed of recorded events (of every user: filter by owner).
    pub fn subscribe(&self) -> broadcast::Receiver<StoredEvent> {
        self.events.subscribe()
    }

    /// A live feed of delivery outcomes (of every user: filter by owner).
    pub fn subscribe_deliveries(&self) -> broadcast::Receiver<DeliveryUpdate> {
        self.deliveries.subscribe()
    }

    /// Tells the live feeds how a delivery attempt ended (once it is recorded).
    pub fn delivery_updated(&self, update: DeliveryUpdate) {
        let _ = self.deliveries.send(update);
    }

    /// Records an event the dataflow fired: stored (idempotently: a replayed event is stored
    /// once), a fired `once` alert marked triggered, a paused alert marked paused, and a newly
    /// stored event broadcast to watchers. An event of an alert that is gone (deleted, `once`
    /// and already triggered, or paused) is dropped. `Err` (the store failed) is worth
    /// retrying: every step is idempotent.
    pub async fn record(&self, event: &AlertEvent) -> anyhow::Result<()> {
        let known = self
            .owners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&*event.alert_id)
            .copied();
        let known = match known {
            // Created through another process of the cluster.
            None if self.clustered => self.store.active_alert(&event.alert_id).await?.map(|a| {
                let owner = (a.owner, a.mode);
                self.owners
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(a.id, owner);
                owner
            }),
            known => known,
        };
        let Some((owner, mode)) = known else {
            return Ok(());
        };
        let id = self.store.insert_event(owner, event).await?;
        // Marked before it is forgotten: a retry after a failure here finds the owner again.
        // The rule stays in the dataflow (which fires nothing more for it) until resumed or
        // deleted.
        let done = match event.kind {
            EventKind::Paused { reason } => {
                self.store
                    .settle(&event.alert_id, "paused", Some(reason.as_str()))
                    .await?;
                true
            }
            EventKind::Fired if mode == Mode::Once => {
                self.store
                    .settle(&event.alert_id, "triggered", None)
                    .await?;
                true
            }
            EventKind::Fired => false,
        };
        if done {
            self.owners
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&*event.alert_id);
        }
        if let Some(id) = id {
            self.wake.notify_one();
            let _ = self.events.send(StoredEvent {
                id,
                owner,
                event: event.clone(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gostocks_core::alerts::Condition;

    fn stored(id: &str, owner: i64) -> StoredAlert {
        StoredAlert {
            id: id.into(),
            owner,
            symbol: "AAPL".into(),
            condition: Condition::PriceAbove,
            threshold: "100".parse().expect("threshold"),
            mode: Mode::Rearm,
            hysteresis: gostocks_core::Fixed::ZERO,
            cooldown_ns: 0,
            window_ns: None,
            created_ns: 0,
            state: "active".into(),
            channels: Vec::new(),
            bar_ns: None,
            storm: None,
            paused_reason: None,
            upper: None,
        }
    }

    fn hub(clustered: bool) -> (AlertHub, std::sync::mpsc::Receiver<RuleChange>) {
        let (tx, rx) = std::sync::mpsc::channel();
        let hub = AlertHub::new(Store::memory(), Vec::new(), Vec::new(), tx).in_cluster(clustered);
        (hub, rx)
    }

    /// In a cluster, an alert created through one process may be deleted through another,
    /// whose hub never inserted its rule: the retraction still reaches the dataflow. Alone, a
    /// hub retracts only what it inserted (a paused alert after a restart is not there).
    #[test]
    fn a_cluster_hub_retracts_a_rule_another_process_inserted() {
        for clustered in [true, false] {
            let (hub, rx) = hub(clustered);
            let rule = hub.rule_of(&stored("al_1", 7)).expect("a rule");
            hub.change(7, rule.clone(), -1);
            let sent: Vec<RuleChange> = rx.try_iter().collect();
            let want = if clustered { vec![(rule, -1)] } else { vec![] };
            assert_eq!(sent, want, "clustered: {clustered}");
        }
    }

    /// In a cluster, an event may be computed on the process of its symbol's worker, whose hub
    /// did not create the alert: it finds the alert in the shared store and records the event.
    #[tokio::test]
    async fn a_cluster_hub_records_events_of_alerts_it_did_not_create() {
        for clustered in [true, false] {
            let (hub, _rx) = hub(clustered);
            let (owner, _) = hub.store.create_user("u").await.expect("user");
            hub.store
                .insert_alert(&stored("al_2", owner))
                .await
                .expect("alert");
            let event = AlertEvent::new(
                "al_2",
                gostocks_core::Symbol::new("AAPL").expect("symbol"),
                1_000,
                0,
                "101".parse().expect("price"),
                101.0,
                EventKind::Fired,
            );
            hub.record(&event).await.expect("recorded");
            let events = hub.store.events_after(owner, 0, 10).await.expect("events");
            assert_eq!(
                events.len(),
                usize::from(clustered),
                "clustered: {clustered}"
            );
        }
    }
}
