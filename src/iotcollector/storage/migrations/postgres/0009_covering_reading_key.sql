-- 0009 the reading key covers what a page of readings returns: GET /api/data of one series
-- becomes an index-only scan instead of one heap page read per row (a series' rows are spread
-- over the heap, each written with every other series'). On 100.8 M readings a 1-hour page
-- (100 rows) took 1.2 ms p50 / 21-30 ms p99 from the heap and 0.5-0.7 / 2.4-2.7 ms from the
-- covering index, which is 17 bytes a reading larger (docs/scaling.md).
--
-- Every partition's index is built anew (the old one is dropped after): the migration holds
-- iot_data for that long, as 0005 did (about 7 s per 3.4 M readings on 2 vCPUs); readers and
-- writers wait, nothing is lost.
ALTER TABLE iot_data
    ADD CONSTRAINT iot_data_reading_key_covering
    UNIQUE (device_id, sensor_type, "timestamp") INCLUDE (value, unit, id);
ALTER TABLE iot_data DROP CONSTRAINT iot_data_reading_key;
ALTER TABLE iot_data RENAME CONSTRAINT iot_data_reading_key_covering TO iot_data_reading_key;
