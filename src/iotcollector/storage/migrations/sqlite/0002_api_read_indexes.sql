-- 0002 read paths of the HTTP API (docs/api.md explains each plan).
-- GET /api/data?device_id=… without sensor_type, newest first: every SQLite index ends with
-- the rowid (= id), so (device_id, timestamp) is already ordered by (timestamp, id).
CREATE INDEX IF NOT EXISTS iot_data_device_time_idx ON iot_data (device_id, timestamp);
