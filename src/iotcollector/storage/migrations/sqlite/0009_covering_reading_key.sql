-- 0009 (no-op on SQLite): PostgreSQL's reading key now covers the columns of a page of
-- readings (index-only pages, docs/scaling.md). Nothing changes on SQLite; this file keeps
-- both backends' version numbers in step.
SELECT 1;
