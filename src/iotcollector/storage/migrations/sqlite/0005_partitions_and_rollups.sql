-- 0005 (no-op on SQLite): PostgreSQL partitions iot_data by time and keeps 1-minute and 1-hour
-- rollups (docs/scaling.md). SQLite keeps one table, aggregates raw rows and purges by batched
-- deletes; this file keeps both backends' version numbers in step.
SELECT 1;
