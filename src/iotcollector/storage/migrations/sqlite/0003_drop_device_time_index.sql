-- 0003: nothing to do on SQLite; the version exists so both backends share one numbering.
-- PostgreSQL drops 0002's device/time index here (its ingest cost: see that backend's 0003).
-- SQLite keeps its own: its one-device listing uses it (docs/api.md), and SQLite's write path
-- has room to spare (71k readings/s in bench/README.md against issue 4's 20k).
SELECT 1;
