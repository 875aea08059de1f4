-- Notification channels, the channels each alert notifies, and the outbox of deliveries.
CREATE TABLE IF NOT EXISTS channels (
    id         TEXT PRIMARY KEY,
    owner_id   BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    -- webhook, slack, discord or teams.
    kind       TEXT NOT NULL,
    url        TEXT NOT NULL,
    -- The HMAC key of a webhook ('' for the presets); returned once, at creation.
    secret     TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS channels_owner_idx ON channels (owner_id, id);

-- Deleting a channel (or an alert) detaches it.
CREATE TABLE IF NOT EXISTS alert_channels (
    alert_id   TEXT NOT NULL REFERENCES alerts(id) ON DELETE CASCADE,
    channel_id TEXT NOT NULL REFERENCES channels(id) ON DELETE CASCADE,
    PRIMARY KEY (alert_id, channel_id)
);

-- One row per (event, channel), inserted by the same statement as the event.
CREATE TABLE IF NOT EXISTS deliveries (
    id          BIGSERIAL PRIMARY KEY,
    event_id    BIGINT NOT NULL REFERENCES alert_events(id) ON DELETE CASCADE,
    channel_id  TEXT NOT NULL REFERENCES channels(id) ON DELETE CASCADE,
    -- pending, delivered or failed.
    state       TEXT NOT NULL DEFAULT 'pending',
    attempts    INT NOT NULL DEFAULT 0,
    -- When a pending delivery is due; a claimed one is leased until then.
    next_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_status INT,
    last_error  TEXT,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    done_at     TIMESTAMPTZ,
    UNIQUE (event_id, channel_id)
);
-- The worker claims due pending deliveries.
CREATE INDEX IF NOT EXISTS deliveries_due_idx ON deliveries (next_at) WHERE state = 'pending';
