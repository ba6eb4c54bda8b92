-- 0001 initial schema (SQLite): the same tables as PostgreSQL.
-- Times (timestamp, received_at, first_seen, last_seen) are INTEGER microseconds since the
-- Unix epoch, UTC: exact, compact, fast range scans and integer bucket arithmetic.
-- SQLite does not enforce declared lengths: CHECK constraints give the same limits as the
-- PostgreSQL varchar columns, so both backends refuse the same rows.

CREATE TABLE iot_data (
    id          INTEGER PRIMARY KEY,
    device_id   TEXT    NOT NULL CHECK (length(device_id) BETWEEN 1 AND 50),
    sensor_type TEXT    NOT NULL CHECK (length(sensor_type) BETWEEN 1 AND 20),
    value       REAL    NOT NULL,
    unit        TEXT    NOT NULL DEFAULT '' CHECK (length(unit) <= 10),
    timestamp   INTEGER NOT NULL,
    received_at INTEGER NOT NULL
        DEFAULT (CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER)),
    CONSTRAINT iot_data_reading_key UNIQUE (device_id, sensor_type, timestamp)
);

CREATE INDEX iot_data_timestamp_idx ON iot_data (timestamp);

CREATE TABLE iot_rejected (
    id          INTEGER PRIMARY KEY,
    received_at INTEGER NOT NULL
        DEFAULT (CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER)),
    topic       TEXT    NOT NULL DEFAULT '',
    payload     BLOB    NOT NULL,
    reason      TEXT    NOT NULL
);

CREATE INDEX iot_rejected_received_at_idx ON iot_rejected (received_at);

CREATE TABLE devices (
    device_id  TEXT    PRIMARY KEY CHECK (length(device_id) BETWEEN 1 AND 50),
    first_seen INTEGER NOT NULL,
    last_seen  INTEGER NOT NULL,
    status     TEXT    NOT NULL DEFAULT 'online'
        CONSTRAINT devices_status_check CHECK (status IN ('online', 'offline'))
);
