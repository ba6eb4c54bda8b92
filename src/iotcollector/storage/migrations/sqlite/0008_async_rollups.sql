-- 0008 (no-op on SQLite): PostgreSQL's rollups are refreshed in the background from a log of
-- the minutes that received readings (docs/scaling.md). SQLite has no rollups; this file keeps
-- both backends' version numbers in step.
SELECT 1;
