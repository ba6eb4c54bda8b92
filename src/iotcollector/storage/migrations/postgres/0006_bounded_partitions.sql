-- 0006 a bounded number of partitions (docs/scaling.md): iot_create_partitions made one
-- partition per interval for any accepted timestamp, so one message of 10,000 readings dated on
-- different days back to 2000 made ~9,800 partitions in each of the three tables. Now only the
-- recent window (the 7 intervals before the current one, and any later) gets one partition
-- per interval; an older moment gets a coarse partition filling the gaps of the intervals that
-- start in its UTC calendar year (ending at the recent window at the latest), named …_coarse. Back to 2000 that is at most ~27 coarse partitions per table, plus one per gap the
-- finer ones leave. Same signature: CREATE OR REPLACE keeps every caller as it is.

-- The name of a partition of `parent` starting at `lo`: NULL (iot_create_partition's default,
-- parent_pYYYYMMDD[_HHMI]) for an interval's, parent_pYYYYMMDD_HHMI_coarse for a coarse one.
CREATE FUNCTION iot_partition_name(parent text, lo timestamptz, coarse boolean)
RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN coarse
        THEN parent || '_p' || to_char(lo AT TIME ZONE 'UTC', 'YYYYMMDD"_"HH24MI') || '_coarse'
    END
$$;

CREATE OR REPLACE FUNCTION iot_create_partitions(times timestamptz[], width interval)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    epoch CONSTANT timestamptz := TIMESTAMPTZ '1970-01-01 00:00:00+00';
    parents CONSTANT text[] := ARRAY['iot_data', 'iot_rollup_1m', 'iot_rollup_1h'];
    recent CONSTANT integer := 7;  -- intervals before the current one with their own partition
    recent_start timestamptz;
    buckets timestamptz[];
    b timestamptz;
    lo timestamptz;
    hi timestamptz;
    year_start timestamptz;
    coarse boolean;
    tbl text;
    cursor_at timestamptz;
    p record;
    made integer := 0;
BEGIN
    IF width <= interval '0' OR extract(epoch FROM width)::numeric % 3600 <> 0
       OR extract(month FROM width) <> 0 OR extract(year FROM width) <> 0 THEN
        RAISE EXCEPTION 'partition interval must be a whole number of hours, not %', width;
    END IF;
    recent_start := date_bin(width, now(), epoch) - recent * width;
    SELECT array_agg(DISTINCT date_bin(width, t, epoch)) INTO buckets
    FROM unnest(times) AS t
    WHERE (
        SELECT count(DISTINCT q.parent) FROM iot_partitions AS q
        WHERE q.lower <= t AND t < q.upper
    ) < cardinality(parents);
    IF buckets IS NULL THEN
        RETURN 0;
    END IF;
    PERFORM pg_advisory_xact_lock(29677418446942836);  -- "iotpart"
    FOREACH b IN ARRAY buckets LOOP
        coarse := b < recent_start;
        IF coarse THEN
            -- The intervals starting in b's UTC year: from its first interval bound to the
            -- next year's (the spans of successive years tile time), cut at the recent window.
            year_start := date_trunc('year', b AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
            lo := date_bin(width, year_start + width - interval '1 microsecond', epoch);
            hi := least(
                date_bin(
                    width, year_start + interval '1 year' + width - interval '1 microsecond', epoch
                ),
                recent_start
            );
        ELSE
            lo := b;
            hi := b + width;
        END IF;
        FOREACH tbl IN ARRAY parents LOOP
            cursor_at := lo;
            FOR p IN
                SELECT q.lower, q.upper FROM iot_partitions AS q
                WHERE q.parent = tbl AND q.lower < hi AND q.upper > lo
                ORDER BY q.lower
            LOOP
                IF p.lower > cursor_at THEN
                    PERFORM iot_create_partition(
                        tbl, cursor_at, p.lower, iot_partition_name(tbl, cursor_at, coarse)
                    );
                    made := made + 1;
                END IF;
                cursor_at := greatest(cursor_at, p.upper);
            END LOOP;
            IF cursor_at < hi THEN
                PERFORM iot_create_partition(
                    tbl, cursor_at, hi, iot_partition_name(tbl, cursor_at, coarse)
                );
                made := made + 1;
            END IF;
        END LOOP;
    END LOOP;
    RETURN made;
END
$$;
