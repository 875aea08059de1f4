//! The alert service's state: users and their keys, alert rules, and fired events, kept in
//! Postgres (or in memory when none is configured), with the channels that connect them to the
//! dataflow (rule changes in, events out) and to live watchers.

mod keys;
pub mod service;
mod store;

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::mpsc::Sender;
use std::time::Duration;

use backon::Retryable;

use gostocks_connectors::postgres::alerts::{StoredAlert, StoredEvent};
use gostocks_core::Span;
use gostocks_core::alerts::{AlertRule, Mode, window_index};
use tokio::sync::broadcast;

/// The store's retry policy: the sinks' ([`crate::sinks::driver::backoff`]), which never gives
/// up; an event is recorded once the store is back.
fn store_backoff() -> backon::ExponentialBuilder {
    crate::sinks::driver::backoff(Duration::from_millis(100), Duration::from_secs(5))
}

pub use keys::{hash_key, new_key, user_of_key, verify_key};
pub use store::Store;

/// A change of the rule collection for the dataflow: `diff` +1 inserts, -1 retracts.
#[derive(Clone, Debug)]
pub struct RuleChange {
    /// The rule.
    pub rule: AlertRule,
    /// +1 or -1.
    pub diff: isize,
}

/// What the services share.
pub struct AlertHub {
    /// Where users, alerts and events live.
    pub store: Store,
    /// The analytics windows (rules name them by length).
    pub windows: Vec<Span>,
    rules: Mutex<Sender<RuleChange>>,
    /// Owner and mode of every rule in the dataflow, by alert id.
    owners: Mutex<HashMap<String, (i64, Mode)>>,
    events: broadcast::Sender<StoredEvent>,
}

impl AlertHub {
    /// A hub over `store` that feeds rule changes to `rules`.
    pub fn new(store: Store, windows: Vec<Span>, rules: Sender<RuleChange>) -> AlertHub {
        AlertHub {
            store,
            windows,
            rules: Mutex::new(rules),
            owners: Mutex::new(HashMap::new()),
            events: broadcast::channel(4096).0,
        }
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
        Some(AlertRule {
            id: a.id.clone(),
            symbol: gostocks_core::Symbol::new(&a.symbol).ok()?,
            condition: a.condition,
            threshold: a.threshold,
            mode: a.mode,
            hysteresis: a.hysteresis,
            cooldown_ns: a.cooldown_ns,
            window,
            created_ns: a.created_ns,
            // The store keeps neither yet (issue 27): no bar modes, and no guard, whose pause
            // the service cannot show.
            bar_ns: None,
            storm: None,
        })
    }

    /// Sends a rule change into the running dataflow.
    pub fn change(&self, owner: i64, rule: AlertRule, diff: isize) {
        {
            let mut owners = self.owners.lock().unwrap_or_else(|e| e.into_inner());
            if diff > 0 {
                owners.insert(rule.id.clone(), (owner, rule.mode));
            } else {
                owners.remove(&rule.id);
            }
        }
        let _ = self
            .rules
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send(RuleChange { rule, diff });
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

    /// Records the events the dataflow fired, in order, forever: each is stored (idempotently,
    /// retried with backoff while the store is down), a fired once-alert is marked triggered,
    /// and new events are broadcast to watchers.
    pub async fn record_events(
        &self,
        mut fired: tokio::sync::mpsc::UnboundedReceiver<crate::dataflow::Fired>,
        market: std::sync::Arc<crate::state::MarketState>,
    ) {
        while let Some(fired) = fired.recv().await {
            let event = match fired {
                crate::dataflow::Fired::Event(e) => e,
                // Every event before the mark is recorded: pass the mark on to the sinks.
                crate::dataflow::Fired::Mark(t) => {
                    market.mark(t).await;
                    continue;
                }
            };
            let Some((owner, mode)) = self
                .owners
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&event.alert_id)
                .copied()
            else {
                continue;
            };
            let id = (|| self.store.insert_event(owner, &event))
                .retry(store_backoff())
                .notify(|error, retry_in| {
                    tracing::warn!(
                        error = format!("{error:#}"),
                        ?retry_in,
                        "recording an alert event failed; retrying"
                    )
                })
                .await
                .unwrap_or_default();
            if mode == Mode::Once {
                self.owners
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&event.alert_id);
                let _ = (|| self.store.mark_triggered(&event.alert_id))
                    .retry(store_backoff())
                    .notify(|error, retry_in| {
                        tracing::warn!(
                            error = format!("{error:#}"),
                            ?retry_in,
                            "marking an alert triggered failed; retrying"
                        )
                    })
                    .await;
            }
            if let Some(id) = id {
                market
                    .emit_async(crate::sinks::Output::Event(event.clone()))
                    .await;
                let _ = self.events.send(StoredEvent { id, owner, event });
            }
        }
    }
}
