-- 0003 ingest cost: drop 0002's (device_id, "timestamp", id) index.
-- Every ingested reading paid for it: PostgreSQL CPU per stored row 5.6-8.0 µs with it,
-- 3.8-5.2 µs without (python -m bench.pg_row_cost: batches of 5000, 1000 devices). The listing it
-- served (one device, all sensors, newest first) now merges a backward scan of the unique
-- index per sensor type (docs/api.md: 0.2 -> 0.45 ms per page of 100).
-- CONCURRENTLY is not possible inside the migration's transaction; on a large live table an
-- operator may run DROP INDEX CONCURRENTLY beforehand.
DROP INDEX IF EXISTS iot_data_device_time_idx;
