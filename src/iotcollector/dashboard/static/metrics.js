// Reads the ingest counters from /metrics (Prometheus text format) and turns two
// scrapes into rates; nothing is added on the server for the dashboard.

const PREFIX = "iotcollector_";
const LABEL = /([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

function unescape(value) {
  return value.replace(/\\(["\\n])/g, (_, c) => (c === "n" ? "\n" : c));
}

/** Samples as [{name, labels, value}], comments and blank lines skipped. */
export function parsePrometheus(text) {
  const samples = [];
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (!line || line.startsWith("#")) {
      continue;
    }
    const brace = line.indexOf("{");
    const space = line.search(/\s/);
    let name;
    let rest;
    const labels = {};
    if (brace !== -1 && (space === -1 || brace < space)) {
      name = line.slice(0, brace);
      const close = line.lastIndexOf("}");
      for (const match of line.slice(brace + 1, close).matchAll(LABEL)) {
        labels[match[1]] = unescape(match[2]);
      }
      rest = line.slice(close + 1);
    } else {
      name = line.slice(0, space);
      rest = line.slice(space);
    }
    const value = Number.parseFloat(rest.trim().split(/\s+/)[0]);
    if (name && !Number.isNaN(value)) {
      samples.push({ name, labels, value });
    }
  }
  return samples;
}

function total(samples, name) {
  return samples
    .filter((s) => s.name === PREFIX + name)
    .reduce((sum, s) => sum + s.value, 0);
}

/** The counters the dashboard shows, at time `at` (ms). */
export function ingestSnapshot(text, at) {
  const samples = parsePrometheus(text);
  const rejectedByReason = {};
  for (const s of samples) {
    if (s.name === `${PREFIX}readings_rejected_total`) {
      const reason = s.labels.reason || "unknown";
      rejectedByReason[reason] = (rejectedByReason[reason] || 0) + s.value;
    }
  }
  return {
    at,
    received: total(samples, "mqtt_messages_received_total"),
    stored: total(samples, "readings_stored_total"),
    duplicates: total(samples, "readings_duplicate_total"),
    rejected: total(samples, "readings_rejected_total"),
    rejectedByReason,
  };
}

/** Per-second rates between two snapshots; null when they cannot be computed. */
export function ingestRates(previous, current) {
  if (!previous || current.at <= previous.at) {
    return null;
  }
  const seconds = (current.at - previous.at) / 1000;
  const rate = (key) => {
    const delta = current[key] - previous[key];
    // A counter that went down means the collector restarted: no rate this time.
    return delta < 0 ? null : delta / seconds;
  };
  return { messages: rate("received"), stored: rate("stored"), rejected: rate("rejected") };
}
