//! AlertService (tonic): every call authenticated by `authorization: Bearer <key>`.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use gostocks_connectors::postgres::alerts::{StoredAlert, StoredEvent};
use gostocks_connectors::postgres::notify::StoredChannel;
use gostocks_core::alerts::{AlertSpec, Condition, EventKind, Mode, StormSpec};
use gostocks_core::{Fixed, Span};
use gostocks_proto::v1;
use gostocks_proto::v1::alert_service_server::AlertService;
use rand::Rng;
use tonic::{Request, Response, Status};

use super::AlertHub;
use crate::state::MarketState;

/// The most alerts one GetAlerts page holds.
pub const MAX_PAGE: u32 = 500;
const DEFAULT_PAGE: u32 = 50;

/// AlertService over the hub.
pub struct Alerts {
    hub: Arc<AlertHub>,
    market: Arc<MarketState>,
    shutdown: crate::shutdown::Shutdown,
}

impl Alerts {
    /// The service over the hub; `AlertServiceServer::from_arc` serves it over gRPC, and the
    /// REST gateway calls it in process.
    /// Its watches and long polls end when `shutdown` starts.
    pub fn new(
        hub: Arc<AlertHub>,
        market: Arc<MarketState>,
        shutdown: crate::shutdown::Shutdown,
    ) -> Alerts {
        Alerts {
            hub,
            market,
            shutdown,
        }
    }

    /// The hub the service works on.
    pub fn hub(&self) -> &Arc<AlertHub> {
        &self.hub
    }

    /// The caller's user id, from its `authorization: Bearer <key>`; UNAUTHENTICATED without a
    /// valid key.
    pub async fn authenticate<T>(&self, req: &Request<T>) -> Result<i64, Status> {
        self.user(req).await
    }

    async fn user<T>(&self, req: &Request<T>) -> Result<i64, Status> {
        let header = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                Status::unauthenticated(
                    "missing `authorization: Bearer <key>` metadata; create a key with `gostocks users create NAME`",
                )
            })?;
        let key = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or_else(|| Status::unauthenticated("authorization must be `Bearer <key>`"))?
            .trim();
        // A key that cannot be one is refused before any store call: never an outage.
        if crate::alerts::user_of_key(key).is_none() {
            return Err(Status::unauthenticated("the API key is not valid"));
        }
        match self.hub.store.authenticate(key).await {
            Ok(Some(id)) => Ok(id),
            Ok(None) => Err(Status::unauthenticated("the API key is not valid")),
            Err(error) => {
                tracing::warn!(error = format!("{error:#}"), "authenticating failed");
                Err(Status::unavailable(
                    "the alert store is unavailable; retry shortly",
                ))
            }
        }
    }
}

/// The longest alert id a request may name (ids the service assigns are `al_` and 16 hex digits).
pub const MAX_ALERT_ID: usize = 64;

/// Checks an alert id (or page token, which is one) from a request: 1 to [`MAX_ALERT_ID`] ASCII
/// letters, digits, `_` or `-`. Anything else is INVALID_ARGUMENT naming `field`, before any
/// store call, so bad input never reads as an outage.
pub fn check_id(field: &str, id: &str) -> Result<(), Status> {
    if id.is_empty()
        || id.len() > MAX_ALERT_ID
        || !id
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
    {
        return Err(Status::invalid_argument(format!(
            "{field}: {} is not an alert id (like al_0123456789abcdef: letters, digits, _ and -, at most {MAX_ALERT_ID})",
            gostocks_core::symbol::excerpt(id)
        )));
    }
    Ok(())
}

impl Alerts {
    /// The caller's events with ids above `after` (at most `max`, oldest first), waiting until
    /// `deadline` for the first one when none is stored yet: the REST long poll. It reads the
    /// store and the live feed directly and holds nothing once it returns.
    pub async fn poll_events<T>(
        &self,
        req: &Request<T>,
        after: i64,
        deadline: tokio::time::Instant,
        max: usize,
    ) -> Result<Vec<v1::AlertEvent>, Status> {
        let owner = self.user(req).await?;
        if after < 0 {
            return Err(Status::invalid_argument("after: an event id, 0 or more"));
        }
        // Subscribe before reading the store, so nothing falls between the two.
        let mut live = self.hub.subscribe();
        loop {
            let stored = self
                .hub
                .store
                .events_after(owner, after, max)
                .await
                .map_err(internal)?;
            if !stored.is_empty() || tokio::time::Instant::now() >= deadline {
                return Ok(stored.iter().map(proto_event).collect());
            }
            loop {
                let received = tokio::select! {
                    // Shutting down: answer with what there is (nothing new).
                    () = self.shutdown.wait() => return Ok(Vec::new()),
                    received = tokio::time::timeout_at(deadline, live.recv()) => received,
                };
                match received {
                    Err(_) | Ok(Err(tokio::sync::broadcast::error::RecvError::Closed)) => {
                        return Ok(Vec::new());
                    }
                    Ok(Ok(e)) if e.owner == owner && e.id > after => break,
                    Ok(Ok(_)) => {}
                    // Fell behind the live feed: the store has what was missed.
                    Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => break,
                }
            }
        }
    }
}

fn internal(error: anyhow::Error) -> Status {
    tracing::warn!(error = format!("{error:#}"), "alert store call failed");
    Status::unavailable("the alert store is unavailable; retry shortly")
}

fn condition_of(c: i32) -> Option<Condition> {
    Some(match v1::AlertCondition::try_from(c).ok()? {
        v1::AlertCondition::PriceAbove => Condition::PriceAbove,
        v1::AlertCondition::PriceBelow => Condition::PriceBelow,
        v1::AlertCondition::CrossesAbove => Condition::CrossesAbove,
        v1::AlertCondition::CrossesBelow => Condition::CrossesBelow,
        v1::AlertCondition::SmaCrossAbove => Condition::SmaCrossAbove,
        v1::AlertCondition::SmaCrossBelow => Condition::SmaCrossBelow,
        v1::AlertCondition::VolatilityAbove => Condition::VolatilityAbove,
        v1::AlertCondition::ChangePctAbove => Condition::ChangePctAbove,
        v1::AlertCondition::ChangePctBelow => Condition::ChangePctBelow,
        v1::AlertCondition::VolumeAbove => Condition::VolumeAbove,
        v1::AlertCondition::VwapCrossAbove => Condition::VwapCrossAbove,
        v1::AlertCondition::VwapCrossBelow => Condition::VwapCrossBelow,
        v1::AlertCondition::EntersChannel => Condition::EntersChannel,
        v1::AlertCondition::ExitsChannel => Condition::ExitsChannel,
        v1::AlertCondition::Inside => Condition::Inside,
        v1::AlertCondition::Outside => Condition::Outside,
        v1::AlertCondition::SpreadAbove => Condition::SpreadAbove,
        v1::AlertCondition::Unspecified => return None,
    })
}

fn proto_condition(c: Condition) -> v1::AlertCondition {
    match c {
        Condition::PriceAbove => v1::AlertCondition::PriceAbove,
        Condition::PriceBelow => v1::AlertCondition::PriceBelow,
        Condition::CrossesAbove => v1::AlertCondition::CrossesAbove,
        Condition::CrossesBelow => v1::AlertCondition::CrossesBelow,
        Condition::SmaCrossAbove => v1::AlertCondition::SmaCrossAbove,
        Condition::SmaCrossBelow => v1::AlertCondition::SmaCrossBelow,
        Condition::VolatilityAbove => v1::AlertCondition::VolatilityAbove,
        Condition::ChangePctAbove => v1::AlertCondition::ChangePctAbove,
        Condition::ChangePctBelow => v1::AlertCondition::ChangePctBelow,
        Condition::VolumeAbove => v1::AlertCondition::VolumeAbove,
        Condition::VwapCrossAbove => v1::AlertCondition::VwapCrossAbove,
        Condition::VwapCrossBelow => v1::AlertCondition::VwapCrossBelow,
        Condition::EntersChannel => v1::AlertCondition::EntersChannel,
        Condition::ExitsChannel => v1::AlertCondition::ExitsChannel,
        Condition::Inside => v1::AlertCondition::Inside,
        Condition::Outside => v1::AlertCondition::Outside,
        Condition::SpreadAbove => v1::AlertCondition::SpreadAbove,
    }
}

/// The wire form of a stored alert.
pub fn proto_alert(a: &StoredAlert, windows: &[Span], bars: &[Span]) -> v1::Alert {
    v1::Alert {
        id: a.id.clone(),
        owner: a.owner.to_string(),
        symbol: a.symbol.clone(),
        condition: proto_condition(a.condition) as i32,
        threshold: Some(a.threshold.into()),
        mode: proto_mode(a.mode) as i32,
        hysteresis: Some(a.hysteresis.into()),
        cooldown_ns: a.cooldown_ns as i64,
        window: a.window_ns.map(|ns| label(ns, windows)).unwrap_or_default(),
        created_ns: a.created_ns as i64,
        state: match a.state.as_str() {
            "active" => v1::AlertState::Active,
            "triggered" => v1::AlertState::Triggered,
            "paused" => v1::AlertState::Paused,
            _ => v1::AlertState::Deleted,
        } as i32,
        channels: a.channels.clone(),
        bar: a.bar_ns.map(|ns| label(ns, bars)).unwrap_or_default(),
        storm: a.storm.map(|g| v1::StormGuard {
            max_events: Some(g.max_events),
            within_ns: Some(g.within_ns as i64),
        }),
        paused_reason: a.paused_reason.clone().unwrap_or_default(),
        warning: String::new(),
        upper: a.upper.map(Into::into),
    }
}

/// How the span of `ns` is configured among `spans` (e.g. `60s`), else in ns.
fn label(ns: u64, spans: &[Span]) -> String {
    spans
        .iter()
        .find(|w| w.ns() == ns)
        .map_or_else(|| format!("{ns}ns"), ToString::to_string)
}

fn proto_mode(m: Mode) -> v1::AlertMode {
    match m {
        Mode::Once => v1::AlertMode::Once,
        Mode::Rearm => v1::AlertMode::Rearm,
        Mode::OncePerBar => v1::AlertMode::OncePerBar,
        Mode::OncePerBarClose => v1::AlertMode::OncePerBarClose,
        Mode::OncePerInterval => v1::AlertMode::OncePerInterval,
    }
}

fn mode_of(m: v1::AlertMode) -> Mode {
    match m {
        v1::AlertMode::Unspecified | v1::AlertMode::Once => Mode::Once,
        v1::AlertMode::Rearm => Mode::Rearm,
        v1::AlertMode::OncePerBar => Mode::OncePerBar,
        v1::AlertMode::OncePerBarClose => Mode::OncePerBarClose,
        v1::AlertMode::OncePerInterval => Mode::OncePerInterval,
    }
}

/// The wire form of a stored channel; the secret only when `reveal` (at creation).
pub fn proto_channel(c: &StoredChannel, reveal: bool) -> v1::Channel {
    v1::Channel {
        id: c.id.clone(),
        kind: c.kind.clone(),
        url: c.url.clone(),
        secret: if reveal {
            c.secret.clone()
        } else {
            String::new()
        },
        secret_hint: crate::notify::hint(&c.secret),
        created_ms: c.created_ms,
    }
}

/// Checks a channel id from a request, like [`check_id`].
fn check_channel_id(field: &str, id: &str) -> Result<(), Status> {
    if id.is_empty()
        || id.len() > crate::notify::MAX_CHANNEL_ID
        || !id
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
    {
        return Err(Status::invalid_argument(format!(
            "{field}: {} is not a channel id (like ch_0123456789abcdef)",
            gostocks_core::symbol::excerpt(id)
        )));
    }
    Ok(())
}

/// The wire form of a stored event.
pub fn proto_event(e: &StoredEvent) -> v1::AlertEvent {
    v1::AlertEvent {
        id: e.id,
        alert_id: e.event.alert_id.to_string(),
        symbol: e.event.symbol.to_string(),
        time_ns: e.event.time_ns as i64,
        seq: e.event.seq,
        price: Some(e.event.price.into()),
        value: e.event.value,
        kind: match e.event.kind {
            EventKind::Fired => "fired",
            EventKind::Paused { .. } => "paused",
        }
        .into(),
        reason: match e.event.kind {
            EventKind::Fired => String::new(),
            EventKind::Paused { reason } => reason.as_str().into(),
        },
    }
}

fn decimal(field: &str, d: Option<&v1::Decimal>) -> Result<Option<Fixed>, Status> {
    d.map(|d| Fixed::try_from(d).map_err(|e| Status::invalid_argument(format!("{field}: {e}"))))
        .transpose()
}

type EventStream = Pin<Box<dyn Stream<Item = Result<v1::AlertEvent, Status>> + Send>>;

#[tonic::async_trait]
impl AlertService for Alerts {
    async fn create_alert(
        &self,
        req: Request<v1::CreateAlertRequest>,
    ) -> Result<Response<v1::Alert>, Status> {
        let owner = self.user(&req).await?;
        let r = req.into_inner();
        // Lengths first: nothing below echoes more than a short excerpt of the input.
        gostocks_core::Symbol::new(&r.symbol)
            .map_err(|e| Status::invalid_argument(format!("symbol: {e}")))?;
        let condition = condition_of(r.condition).ok_or_else(|| {
            Status::invalid_argument(
                "condition: required; one of PRICE_ABOVE, PRICE_BELOW, CROSSES_ABOVE, CROSSES_BELOW, SMA_CROSS_ABOVE, SMA_CROSS_BELOW, VOLATILITY_ABOVE, CHANGE_PCT_ABOVE, CHANGE_PCT_BELOW, VOLUME_ABOVE, VWAP_CROSS_ABOVE, VWAP_CROSS_BELOW, ENTERS_CHANNEL, EXITS_CHANNEL, INSIDE, OUTSIDE, SPREAD_ABOVE",
            )
        })?;
        let threshold = decimal("threshold", r.threshold.as_ref())?
            .ok_or_else(|| Status::invalid_argument("threshold: required, a positive decimal"))?;
        let mode = v1::AlertMode::try_from(r.mode).map(mode_of).map_err(|_| {
            Status::invalid_argument(
                "mode: use ONCE, REARM, ONCE_PER_BAR, ONCE_PER_BAR_CLOSE or ONCE_PER_INTERVAL",
            )
        })?;
        let storm = match (r.storm, r.storm_off) {
            (Some(_), true) => {
                return Err(Status::invalid_argument(
                    "storm: give a guard or storm_off, not both",
                ));
            }
            (None, true) => Some(StormSpec::Off),
            (Some(g), false) => {
                let within = match g.within_ns {
                    Some(ns) if ns <= 0 => {
                        return Err(Status::invalid_argument("storm: within_ns must be above 0"));
                    }
                    ns => ns.map(|ns| format!("{ns}ns")),
                };
                Some(StormSpec::Guard {
                    max_events: g.max_events,
                    within,
                })
            }
            // Left out: the default guard.
            (None, false) => None,
        };
        if r.cooldown_ns < 0 {
            return Err(Status::invalid_argument("cooldown_ns: must be 0 or more"));
        }
        let max = crate::notify::MAX_CHANNELS_PER_ALERT;
        if r.channels.len() > max {
            return Err(Status::invalid_argument(format!(
                "channels: at most {max} per alert"
            )));
        }
        let mut channels = r.channels.clone();
        for c in &channels {
            check_channel_id("channels", c)?;
        }
        channels.sort();
        channels.dedup();
        if !channels.is_empty() {
            let own = self
                .hub
                .store
                .list_channels(owner)
                .await
                .map_err(internal)?;
            if let Some(missing) = channels.iter().find(|c| !own.iter().any(|o| &o.id == *c)) {
                return Err(Status::invalid_argument(format!(
                    "channels: no channel `{missing}`; create one with POST /channels"
                )));
            }
        }
        let mut spec = AlertSpec::new(r.symbol.clone(), condition.as_str(), threshold);
        spec.mode = Some(mode.as_str().into());
        spec.hysteresis = decimal("hysteresis", r.hysteresis.as_ref())?;
        spec.cooldown = (r.cooldown_ns > 0).then(|| format!("{}ns", r.cooldown_ns));
        spec.window = (!r.window.is_empty()).then(|| r.window.clone());
        spec.bar = (!r.bar.is_empty()).then(|| r.bar.clone());
        spec.storm = storm;
        spec.upper = decimal("upper", r.upper.as_ref())?;
        let id = format!("al_{:016x}", rand::rng().random::<u64>());
        // The alert applies from the next tick: after every event time seen so far.
        let created_ns = self.market.counters.latest_ns() + 1;
        let rule = spec
            .to_rule_core(&id, created_ns, &self.hub.windows, &self.hub.bars)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        if rule.condition.on_quotes() && !self.hub.reads_quotes() {
            return Err(Status::invalid_argument(format!(
                "condition: {} is judged on quotes, and this runner reads none; start it with --kafka --quotes-topic TOPIC",
                rule.condition
            )));
        }
        let stored = StoredAlert {
            id: id.clone(),
            owner,
            symbol: rule.symbol.to_string(),
            condition: rule.condition,
            threshold: rule.threshold,
            mode: rule.mode,
            hysteresis: rule.hysteresis,
            cooldown_ns: rule.cooldown_ns,
            window_ns: rule.window.map(|w| self.hub.windows[usize::from(w)].ns()),
            created_ns,
            state: "active".into(),
            channels,
            bar_ns: rule.bar_ns,
            storm: rule.storm,
            paused_reason: None,
            upper: rule.upper,
        };
        let warning = rule.storm_warning();
        self.hub
            .store
            .insert_alert(&stored)
            .await
            .map_err(internal)?;
        self.hub.change(owner, rule, 1);
        tracing::info!(alert = %id, owner, symbol = %stored.symbol, condition = %stored.condition, "alert created");
        Ok(Response::new(v1::Alert {
            warning: warning.unwrap_or_default(),
            ..proto_alert(&stored, &self.hub.windows, &self.hub.bars)
        }))
    }

    async fn get_alerts(
        &self,
        req: Request<v1::GetAlertsRequest>,
    ) -> Result<Response<v1::GetAlertsResponse>, Status> {
        let owner = self.user(&req).await?;
        let r = req.into_inner();
        if !r.page_token.is_empty() {
            check_id("page_token", &r.page_token)?;
        }
        if r.page_size > MAX_PAGE {
            return Err(Status::invalid_argument(format!(
                "page_size: at most {MAX_PAGE}"
            )));
        }
        let size = if r.page_size == 0 {
            DEFAULT_PAGE
        } else {
            r.page_size
        } as usize;
        // One more than asked tells whether another page exists.
        let mut page = self
            .hub
            .store
            .list_alerts(owner, &r.page_token, size + 1)
            .await
            .map_err(internal)?;
        let next = if page.len() > size {
            page.truncate(size);
            page.last().map(|a| a.id.clone()).unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(v1::GetAlertsResponse {
            alerts: page
                .iter()
                .map(|a| proto_alert(a, &self.hub.windows, &self.hub.bars))
                .collect(),
            next_page_token: next,
        }))
    }

    async fn delete_alert(
        &self,
        req: Request<v1::DeleteAlertRequest>,
    ) -> Result<Response<v1::DeleteAlertResponse>, Status> {
        let owner = self.user(&req).await?;
        let id = req.into_inner().id;
        check_id("id", &id)?;
        let deleted = self
            .hub
            .store
            .delete_alert(owner, &id)
            .await
            .map_err(internal)?
            // Another user's alert and no alert look the same: nothing is revealed.
            .ok_or_else(|| Status::not_found(format!("no alert `{id}`")))?;
        if let Some(rule) = self.hub.rule_of(&deleted) {
            self.hub.change(owner, rule, -1);
        }
        tracing::info!(alert = %id, owner, "alert deleted");
        Ok(Response::new(v1::DeleteAlertResponse {}))
    }

    async fn resume_alert(
        &self,
        req: Request<v1::ResumeAlertRequest>,
    ) -> Result<Response<v1::Alert>, Status> {
        let owner = self.user(&req).await?;
        let id = req.into_inner().id;
        check_id("id", &id)?;
        let current = self
            .hub
            .store
            .get_alert(owner, &id)
            .await
            .map_err(internal)?
            .ok_or_else(|| Status::not_found(format!("no alert `{id}`")))?;
        let already = || Status::failed_precondition(format!("alert `{id}` is active already"));
        if current.state == "active" {
            return Err(already());
        }
        // A new creation time, after every event time seen: retracting the rule and inserting
        // the same one at one time would cancel out in the dataflow.
        let created_ns = self.market.counters.latest_ns() + 1;
        let resumed = self
            .hub
            .store
            .resume_alert(owner, &id, created_ns)
            .await
            .map_err(internal)?
            .ok_or_else(already)?;
        // Retracts the rule the dataflow holds (paused or spent there), then inserts the new.
        if let Some(old) = self.hub.rule_of(&current) {
            self.hub.change(owner, old, -1);
        }
        if let Some(rule) = self.hub.rule_of(&resumed) {
            self.hub.change(owner, rule, 1);
        }
        tracing::info!(alert = %id, owner, was = %current.state, "alert resumed");
        Ok(Response::new(proto_alert(
            &resumed,
            &self.hub.windows,
            &self.hub.bars,
        )))
    }

    async fn create_channel(
        &self,
        req: Request<v1::CreateChannelRequest>,
    ) -> Result<Response<v1::Channel>, Status> {
        let owner = self.user(&req).await?;
        let r = req.into_inner();
        let kind = crate::notify::Kind::parse(&r.kind).ok_or_else(|| {
            Status::invalid_argument(format!(
                "kind: {} is not a channel kind; use webhook, slack, discord or teams",
                gostocks_core::symbol::excerpt(&r.kind)
            ))
        })?;
        let secret = match kind {
            crate::notify::Kind::Webhook if r.secret.is_empty() => crate::notify::new_secret(),
            crate::notify::Kind::Webhook => {
                let (min, max) = (crate::notify::MIN_SECRET, crate::notify::MAX_SECRET);
                if r.secret.len() < min
                    || r.secret.len() > max
                    || !r.secret.bytes().all(|b| b.is_ascii_graphic())
                {
                    return Err(Status::invalid_argument(format!(
                        "secret: {min} to {max} visible ASCII characters, or leave it out to get one"
                    )));
                }
                r.secret
            }
            _ if !r.secret.is_empty() => {
                return Err(Status::invalid_argument(
                    "secret: only a webhook channel is signed; leave it out",
                ));
            }
            _ => String::new(),
        };
        crate::notify::check_url(&r.url, self.hub.allow_private)
            .await
            .map_err(|e| Status::invalid_argument(format!("url: {e}")))?;
        let channel = StoredChannel {
            id: format!("ch_{:016x}", rand::rng().random::<u64>()),
            owner,
            kind: kind.as_str().into(),
            url: r.url,
            secret,
            created_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64),
        };
        let max = crate::notify::MAX_CHANNELS_PER_USER;
        if !self
            .hub
            .store
            .insert_channel(&channel, max)
            .await
            .map_err(internal)?
        {
            return Err(Status::resource_exhausted(format!(
                "channels: at most {max} per user; delete one first"
            )));
        }
        // The URL of a chat webhook is a secret too: it is not logged.
        tracing::info!(channel = %channel.id, owner, kind = %channel.kind, "channel created");
        Ok(Response::new(proto_channel(&channel, true)))
    }

    async fn list_channels(
        &self,
        req: Request<v1::ListChannelsRequest>,
    ) -> Result<Response<v1::ListChannelsResponse>, Status> {
        let owner = self.user(&req).await?;
        let channels = self
            .hub
            .store
            .list_channels(owner)
            .await
            .map_err(internal)?;
        Ok(Response::new(v1::ListChannelsResponse {
            channels: channels.iter().map(|c| proto_channel(c, false)).collect(),
        }))
    }

    async fn delete_channel(
        &self,
        req: Request<v1::DeleteChannelRequest>,
    ) -> Result<Response<v1::DeleteChannelResponse>, Status> {
        let owner = self.user(&req).await?;
        let id = req.into_inner().id;
        check_channel_id("id", &id)?;
        if !self
            .hub
            .store
            .delete_channel(owner, &id)
            .await
            .map_err(internal)?
        {
            return Err(Status::not_found(format!("no channel `{id}`")));
        }
        tracing::info!(channel = %id, owner, "channel deleted");
        Ok(Response::new(v1::DeleteChannelResponse {}))
    }

    async fn get_deliveries(
        &self,
        req: Request<v1::GetDeliveriesRequest>,
    ) -> Result<Response<v1::GetDeliveriesResponse>, Status> {
        let owner = self.user(&req).await?;
        let event_id = req.into_inner().event_id;
        if event_id < 1 {
            return Err(Status::invalid_argument("event_id: an event id, 1 or more"));
        }
        let found = self
            .hub
            .store
            .deliveries_of(owner, event_id)
            .await
            .map_err(internal)?
            .ok_or_else(|| Status::not_found(format!("no event {event_id}")))?;
        Ok(Response::new(v1::GetDeliveriesResponse {
            deliveries: found
                .into_iter()
                .map(|d| v1::Delivery {
                    channel_id: d.channel_id,
                    state: d.state,
                    attempts: d.attempts,
                    last_status: d.last_status.unwrap_or(0),
                    last_error: d.last_error.unwrap_or_default(),
                })
                .collect(),
        }))
    }

    type WatchAlertEventsStream = EventStream;

    async fn watch_alert_events(
        &self,
        req: Request<v1::WatchAlertEventsRequest>,
    ) -> Result<Response<EventStream>, Status> {
        let owner = self.user(&req).await?;
        let r = req.into_inner();
        if r.after_event_id < 0 {
            return Err(Status::invalid_argument(
                "after_event_id: an event id, 0 or more",
            ));
        }
        let replay = r.after_event_id > 0 || r.from_start;
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(self.watch(
                owner,
                r.after_event_id,
                replay,
            )),
        )))
    }
}

impl Alerts {
    /// `owner`'s events as they are recorded; with `replay`, first those stored with ids above
    /// `after`, so nothing is missed between the two. The feed ends when its receiver is
    /// dropped or shutdown starts. `WatchAlertEvents` and `GET /alerts/stream` serve it.
    pub fn watch(
        &self,
        owner: i64,
        after: i64,
        replay: bool,
    ) -> tokio::sync::mpsc::Receiver<Result<v1::AlertEvent, Status>> {
        // Subscribe before reading the backlog, so nothing falls between the two.
        let mut live = self.hub.subscribe();
        let hub = Arc::clone(&self.hub);
        let mut last = after;
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            if replay {
                loop {
                    let backlog = match hub.store.events_after(owner, last, 1000).await {
                        Ok(b) => b,
                        Err(e) => {
                            let _ = tx.send(Err(internal(e))).await;
                            return;
                        }
                    };
                    if backlog.is_empty() {
                        break;
                    }
                    for e in &backlog {
                        last = e.id;
                        if tx.send(Ok(proto_event(e))).await.is_err() {
                            return;
                        }
                    }
                }
            } else {
                last = i64::MIN;
            }
            loop {
                // The watch ends when its client goes away, whether or not events come.
                let received = tokio::select! {
                    () = tx.closed() => return,
                    // Shutting down: the stream ends (status OK); the client resumes with
                    // `after_event_id` elsewhere.
                    () = shutdown.wait() => return,
                    received = live.recv() => received,
                };
                match received {
                    Ok(e) if e.owner == owner && e.id > last => {
                        last = e.id;
                        if tx.send(Ok(proto_event(&e))).await.is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        // Fell behind the live feed: catch up from the store.
                        match hub.store.events_after(owner, last.max(0), 10_000).await {
                            Ok(b) => {
                                for e in &b {
                                    last = e.id;
                                    if tx.send(Ok(proto_event(e))).await.is_err() {
                                        return;
                                    }
                                }
                            }
                            Err(e) => {
                                let _ = tx.send(Err(internal(e))).await;
                                return;
                            }
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        rx
    }
}
