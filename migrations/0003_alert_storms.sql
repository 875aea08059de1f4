-- Issue 27: bar modes and the storm guard. An alert the guard pauses is in state 'paused'
-- with a reason until its owner resumes it; its pause is an event of kind 'paused'.
ALTER TABLE alerts ADD COLUMN IF NOT EXISTS bar_ns BIGINT NULL;
-- Both NULL: the guard is off.
ALTER TABLE alerts ADD COLUMN IF NOT EXISTS storm_max_events INT NULL;
ALTER TABLE alerts ADD COLUMN IF NOT EXISTS storm_within_ns BIGINT NULL;
ALTER TABLE alerts ADD COLUMN IF NOT EXISTS paused_reason TEXT NULL;
-- 'fired' or 'paused' (with a reason, e.g. 'storm').
ALTER TABLE alert_events ADD COLUMN IF NOT EXISTS kind TEXT NOT NULL DEFAULT 'fired';
ALTER TABLE alert_events ADD COLUMN IF NOT EXISTS reason TEXT NULL;
