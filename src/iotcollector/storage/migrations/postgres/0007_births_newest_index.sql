-- 0007 the kept Sparkplug births, newest first: start-up and replays read them in pages up to
-- the host's memory bound, and batches with births delete all but the newest (query.BirthTrim).
CREATE INDEX sparkplug_births_newest_idx ON sparkplug_births (received_at, node_key, device);
