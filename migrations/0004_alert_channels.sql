-- The channel conditions (enters_channel, exits_channel, inside, outside): the channel is
-- [threshold, upper]. NULL for every other condition.
ALTER TABLE alerts ADD COLUMN IF NOT EXISTS upper NUMERIC NULL;
