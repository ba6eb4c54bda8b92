-- 0007 the kept Sparkplug births, newest first: start-up and replays read them in pages up to
-- the host's memory bound, and each batch with births deletes all but the newest KEPT_BIRTHS.
CREATE INDEX sparkplug_births_newest_idx ON sparkplug_births (received_at, node_key, device);
