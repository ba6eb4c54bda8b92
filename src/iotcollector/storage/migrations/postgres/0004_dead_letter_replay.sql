-- 0004 dead letters you can replay, and the Sparkplug B births a host must remember.
-- replayed_at: when `rejected replay` stored the dead letter's readings (NULL: pending).
ALTER TABLE iot_rejected ADD COLUMN replayed_at timestamptz;

-- Replay walks the pending dead letters in id order.
CREATE INDEX iot_rejected_pending_idx ON iot_rejected (id) WHERE replayed_at IS NULL;

-- The last birth certificate of each Sparkplug edge node (device '') and of its devices:
-- metric names and aliases for alias-only data after a restart (and for replays).
CREATE TABLE sparkplug_births (
    node_key    text        NOT NULL,
    device      text        NOT NULL,
    topic       text        NOT NULL,
    payload     bytea       NOT NULL,
    received_at timestamptz NOT NULL,
    PRIMARY KEY (node_key, device)
);
