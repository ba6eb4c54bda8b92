-- 0006: nothing to do on SQLite (one unpartitioned table); the version exists so both backends
-- share one numbering. PostgreSQL bounds the partitions one message can create here.
SELECT 1;
