-- 0002 read paths of the HTTP API (docs/api.md explains each plan).
-- GET /api/data?device_id=… without sensor_type, newest first, keyset on (timestamp, id):
-- a backward scan of this index returns rows already in (timestamp DESC, id DESC) order.
-- (With sensor_type the unique index (device_id, sensor_type, timestamp) INCLUDE (value)
-- of 0001 serves both the listing and the aggregates, index-only.)
-- IF NOT EXISTS: on a large live table an operator may build it beforehand, without blocking
-- writes, with CREATE INDEX CONCURRENTLY under the same name.
CREATE INDEX IF NOT EXISTS iot_data_device_time_idx ON iot_data (device_id, "timestamp", id);
