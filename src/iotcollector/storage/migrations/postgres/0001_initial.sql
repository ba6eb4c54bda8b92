-- 0001 initial schema (PostgreSQL): readings, dead letters, devices registry.
-- Design section 3: value is double precision (NUMERIC(10,2) would round small readings to 0),
-- timestamp is timestamptz.
-- TimescaleDB is deliberately not used here. When pg_available_extensions lists it, a
-- separate, later and optional migration may turn iot_data into a hypertable; it must never
-- be required.

CREATE TABLE iot_data (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device_id   varchar(50)      NOT NULL,
    sensor_type varchar(20)      NOT NULL,
    value       double precision NOT NULL,
    unit        varchar(10)      NOT NULL DEFAULT '',
    "timestamp" timestamptz      NOT NULL,
    received_at timestamptz      NOT NULL DEFAULT now(),
    -- A redelivered reading is stored once (ON CONFLICT DO NOTHING).
    -- Column order serves "newest first for a device/sensor in a time range" (backward scan);
    -- INCLUDE (value) makes per-bucket aggregates index-only (design section 9: 40 ms -> 4 ms).
    CONSTRAINT iot_data_reading_key UNIQUE (device_id, sensor_type, "timestamp") INCLUDE (value)
);

-- Time-range scans without a device (and retention purges).
CREATE INDEX iot_data_timestamp_idx ON iot_data ("timestamp");

CREATE TABLE iot_rejected (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    received_at timestamptz NOT NULL DEFAULT now(),
    topic       text        NOT NULL DEFAULT '',
    payload     bytea       NOT NULL,
    reason      text        NOT NULL
);

CREATE INDEX iot_rejected_received_at_idx ON iot_rejected (received_at);

-- first_seen / last_seen: when the collector stored the device's readings (transaction time),
-- not the devices' own clocks.
CREATE TABLE devices (
    device_id  varchar(50) PRIMARY KEY,
    first_seen timestamptz NOT NULL,
    last_seen  timestamptz NOT NULL,
    status     text        NOT NULL DEFAULT 'online'
        CONSTRAINT devices_status_check CHECK (status IN ('online', 'offline'))
);
