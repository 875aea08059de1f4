-- Users, their alert rules and the events those rules fired.
CREATE TABLE IF NOT EXISTS users (
    id           BIGSERIAL PRIMARY KEY,
    name         TEXT NOT NULL UNIQUE,
    -- "salt$sha256(salt || key)" in hex; the key itself is never stored.
    api_key_hash TEXT NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS alerts (
    id          TEXT PRIMARY KEY,
    owner_id    BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    symbol      TEXT NOT NULL,
    condition   TEXT NOT NULL,
    threshold   NUMERIC NOT NULL,
    mode        TEXT NOT NULL DEFAULT 'once',
    hysteresis  NUMERIC NOT NULL DEFAULT 0,
    cooldown_ns BIGINT NOT NULL DEFAULT 0,
    window_ns   BIGINT,
    created_ns  BIGINT NOT NULL,
    state       TEXT NOT NULL DEFAULT 'active'
);
-- GetAlerts pages through one owner's alerts; start-up loads the active ones.
CREATE INDEX IF NOT EXISTS alerts_owner_idx ON alerts (owner_id, id);
CREATE INDEX IF NOT EXISTS alerts_active_idx ON alerts (state) WHERE state = 'active';

CREATE TABLE IF NOT EXISTS alert_events (
    id           BIGSERIAL PRIMARY KEY,
    alert_id     TEXT NOT NULL REFERENCES alerts(id) ON DELETE CASCADE,
    owner_id     BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    symbol       TEXT NOT NULL,
    tick_time_ns BIGINT NOT NULL,
    tick_seq     BIGINT NOT NULL,
    price        NUMERIC NOT NULL,
    value        DOUBLE PRECISION NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Replaying the same ticks never records an event twice.
    UNIQUE (alert_id, tick_time_ns, tick_seq)
);
-- WatchAlertEvents resumes one owner's stream after an event id.
CREATE INDEX IF NOT EXISTS alert_events_owner_idx ON alert_events (owner_id, id);
