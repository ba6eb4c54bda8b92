// The live dashboard: devices, ingest counters and one chart per device and sensor type,
// refreshed every few seconds while the tab is visible. Reads only the public API.

import { Api, AuthError } from "./api.js";
import { ChartCard } from "./charts.js";
import { formatAgo, formatClock, formatDateTime, formatInteger, formatRate } from "./format.js";
import { ingestRates, ingestSnapshot } from "./metrics.js";

const REFRESH_MS = 5000;
const MAX_CHARTS = 60;
const MAX_TABLE_ROWS = 500;
const CONCURRENT_CHART_LOADS = 4;

const $ = (id) => document.getElementById(id);

const api = new Api();
const state = {
  timer: null,
  inFlight: null,
  needKey: false,
  previous: null,
  devices: [],
  info: null,
  cards: new Map(),
  deviceOptions: "",
};

const visibility = new IntersectionObserver(
  (entries) => {
    for (const entry of entries) {
      const card = state.cards.get(entry.target.dataset.key);
      if (!card) {
        continue;
      }
      card.visible = entry.isIntersecting;
      if (card.visible && Date.now() - card.loadedAt > REFRESH_MS && !state.needKey) {
        card.refresh(api, rangeSeconds()).catch(onError);
      }
    }
  },
  { rootMargin: "200px 0px" },
);

function rangeSeconds() {
  return Number($("range").value);
}

/** The status line is a live region: change its text only when the news changes. */
function setConnection(kind, text) {
  const element = $("connection");
  element.dataset.state = kind;
  if (element.textContent !== text) {
    element.textContent = text;
  }
}

function setText(id, text) {
  const element = $(id);
  if (element.textContent !== text) {
    element.textContent = text;
  }
}

// --- devices ---------------------------------------------------------------------------

function statusBadge(status) {
  const badge = document.createElement("span");
  badge.className = "badge";
  badge.dataset.status = status;
  const dot = document.createElement("span");
  dot.className = "dot";
  dot.setAttribute("aria-hidden", "true");
  badge.append(dot, status);
  return badge;
}

function renderDevices(devices, complete) {
  const now = api.now();
  const rows = devices.slice(0, MAX_TABLE_ROWS).map((device) => {
    const row = document.createElement("tr");
    row.dataset.device = device.device_id;
    row.dataset.status = device.status;
    const name = document.createElement("th");
    name.scope = "row";
    name.textContent = device.device_id;
    const status = document.createElement("td");
    status.append(statusBadge(device.status));
    const seen = document.createElement("td");
    const time = document.createElement("time");
    const lastSeen = Date.parse(device.last_seen);
    time.dateTime = device.last_seen;
    time.title = formatDateTime(lastSeen);
    time.textContent = formatAgo(lastSeen, now);
    seen.append(time);
    const sensors = document.createElement("td");
    sensors.className = "sensors";
    sensors.append(
      ...device.sensor_types.map((sensor, i, all) => {
        const item = document.createElement("span");
        item.textContent = i < all.length - 1 ? `${sensor},` : sensor;
        return item;
      }),
    );
    row.append(name, status, seen, sensors);
    return row;
  });
  document.querySelector("#devices tbody").replaceChildren(...rows);
  $("devices-empty").hidden = devices.length > 0;
  document.querySelector(".table-wrap").hidden = devices.length === 0;
  const more = $("devices-more");
  const hiddenRows = devices.length - rows.length;
  more.hidden = complete && hiddenRows === 0;
  more.textContent = complete
    ? `Showing the first ${rows.length} of ${devices.length} devices.`
    : `Showing the first ${rows.length} devices; there are more than ${devices.length}.`;
}

function renderDeviceFilter(devices) {
  const ids = devices.map((d) => d.device_id);
  const signature = ids.join("\n");
  if (signature === state.deviceOptions) {
    return;
  }
  state.deviceOptions = signature;
  const select = $("device-filter");
  const selected = select.value;
  const options = [new Option("All devices", "")];
  for (const id of ids) {
    options.push(new Option(id, id));
  }
  select.replaceChildren(...options);
  select.value = ids.includes(selected) ? selected : "";
}

// --- dead letters ------------------------------------------------------------------------

function renderRejected(letters) {
  const now = api.now();
  const rows = letters.map((letter) => {
    const row = document.createElement("tr");
    row.dataset.id = String(letter.id);
    const received = document.createElement("td");
    const time = document.createElement("time");
    const at = Date.parse(letter.received_at);
    time.dateTime = letter.received_at;
    time.title = formatDateTime(at);
    time.textContent = formatAgo(at, now);
    received.append(time);
    const topic = document.createElement("td");
    topic.textContent = letter.topic;
    const reason = document.createElement("td");
    reason.className = "reason";
    reason.textContent = letter.reason;
    const replayed = document.createElement("td");
    replayed.append(statusBadge(letter.replayed_at ? "replayed" : "pending"));
    row.append(received, topic, reason, replayed);
    return row;
  });
  document.querySelector("#rejected tbody").replaceChildren(...rows);
  $("rejected-empty").hidden = letters.length > 0;
  $("rejected-wrap").hidden = letters.length === 0;
}

// --- ingest counters ---------------------------------------------------------------------

function renderIngest(text, devices) {
  const online = devices.filter((d) => d.status === "online").length;
  setText("m-online", `${formatInteger(online)} of ${formatInteger(devices.length)}`);
  if (text === null) {
    return;
  }
  const current = ingestSnapshot(text, performance.now());
  const rates = ingestRates(state.previous, current);
  state.previous = current;
  setText("m-received", formatInteger(current.received));
  setText("m-rejected", formatInteger(current.rejected));
  setText("m-duplicates", formatInteger(current.duplicates));
  if (rates) {
    setText("m-message-rate", formatRate(rates.messages));
    setText("m-stored-rate", formatRate(rates.stored));
  }
  const reasons = Object.entries(current.rejectedByReason)
    .filter(([, n]) => n > 0)
    .sort((a, b) => b[1] - a[1])
    .map(([reason, n]) => `${reason} ${formatInteger(n)}`);
  const line = $("rejected-reasons");
  line.hidden = reasons.length === 0;
  setText("rejected-reasons", `Rejected by reason: ${reasons.join(", ")}`);
}

// --- charts ------------------------------------------------------------------------------

function wantedCharts(devices) {
  const only = $("device-filter").value;
  const pairs = [];
  for (const device of devices) {
    if (only && device.device_id !== only) {
      continue;
    }
    for (const sensor of device.sensor_types) {
      pairs.push([device.device_id, sensor]);
    }
  }
  return pairs;
}

function syncCharts() {
  const pairs = wantedCharts(state.devices);
  const shown = pairs.slice(0, MAX_CHARTS);
  const note = $("charts-note");
  note.hidden = shown.length === pairs.length;
  note.textContent = `Showing ${shown.length} of ${pairs.length} charts: choose a device to see its own.`;
  const keep = new Map();
  for (const [deviceId, sensor] of shown) {
    const key = `${deviceId}\u0000${sensor}`;
    let card = state.cards.get(key);
    if (!card) {
      card = new ChartCard(deviceId, sensor);
      card.element.dataset.key = key;
    }
    keep.set(key, card);
  }
  for (const [key, card] of state.cards) {
    if (!keep.has(key)) {
      visibility.unobserve(card.element);
      card.destroy();
    }
  }
  const container = $("charts");
  const ordered = [...keep.values()].map((card) => card.element);
  const current = [...container.children];
  if (ordered.length !== current.length || ordered.some((el, i) => el !== current[i])) {
    container.replaceChildren(...ordered);
  }
  for (const [key, card] of keep) {
    if (!state.cards.has(key)) {
      visibility.observe(card.element);
    }
  }
  state.cards = keep;
}

/** Reloads the visible charts, a few at a time. */
async function refreshCharts() {
  const queue = [...state.cards.values()].filter((card) => card.visible);
  const range = rangeSeconds();
  const worker = async () => {
    while (queue.length) {
      await queue.shift().refresh(api, range);
    }
  };
  await Promise.all(Array.from({ length: CONCURRENT_CHART_LOADS }, worker));
}

// --- the refresh loop --------------------------------------------------------------------

/** The empty state names the broker and topic devices publish to (asked once). */
function renderWhereToPublish(info) {
  const topic = (info.mqtt.topics[0] || "iot/data").replace("+", "<device_id>");
  setText("empty-topic", topic.endsWith("#") ? `${topic.slice(0, -1)}data` : topic);
  if (info.mqtt.broker) {
    setText("empty-broker", info.mqtt.broker);
    $("empty-broker-text").hidden = false;
  }
}

async function tick() {
  const [{ devices, complete }, metrics, rejected, info] = await Promise.all([
    api.devices(),
    api.metricsText().catch(() => null),
    api.rejected().catch(() => null),
    state.info ? state.info : api.info().catch(() => null),
  ]);
  if (info && !state.info) {
    state.info = info;
    renderWhereToPublish(info);
  }
  state.devices = devices;
  showContent();
  renderDevices(devices, complete);
  renderDeviceFilter(devices);
  renderIngest(metrics, devices);
  if (rejected !== null) {
    renderRejected(rejected.data);
  }
  syncCharts();
  await refreshCharts();
  const online = devices.filter((d) => d.status === "online").length;
  setConnection(
    "live",
    `Live: ${online} of ${devices.length} ${devices.length === 1 ? "device" : "devices"} online`,
  );
  setText("updated", formatClock(Date.now()));
}

function onError(error) {
  if (error instanceof AuthError) {
    askForKey(error);
    return;
  }
  setConnection("error", `Cannot load the data (${error.message}); retrying every 5 s.`);
}

function schedule() {
  window.clearTimeout(state.timer);
  if (!document.hidden && !state.needKey) {
    state.timer = window.setTimeout(refreshNow, REFRESH_MS);
  }
}

function refreshNow() {
  if (!state.inFlight) {
    state.inFlight = tick()
      .catch(onError)
      .finally(() => {
        state.inFlight = null;
        schedule();
      });
  }
  return state.inFlight;
}

function showContent() {
  $("content").hidden = false;
  $("key-section").hidden = true;
  $("forget-key").hidden = !api.key;
}

// --- the API key -------------------------------------------------------------------------

function showKeyError(message) {
  const input = $("key-input");
  $("key-error").textContent = message;
  input.setAttribute("aria-invalid", message ? "true" : "false");
  if (message) {
    input.focus();
    input.select();
  }
}

function askForKey(error) {
  state.needKey = true;
  window.clearTimeout(state.timer);
  if (error.hadKey) {
    api.forgetKey();
    showKeyError(`The saved key was not accepted (${error.message}). Enter a valid key.`);
  }
  $("content").hidden = true;
  $("forget-key").hidden = true;
  $("key-section").hidden = false;
  setConnection("auth", "An API key is required");
  $("key-input").focus();
}

async function submitKey(event) {
  event.preventDefault();
  const input = $("key-input");
  const key = input.value.trim();
  if (!key) {
    showKeyError("Enter an API key.");
    return;
  }
  const button = $("key-submit");
  button.disabled = true;
  setText("key-error", "");
  try {
    await api.check(key);
  } catch (error) {
    showKeyError(
      error instanceof AuthError
        ? `This key was rejected by the collector (${error.message}). Check it and try again.`
        : `The key could not be checked (${error.message}). Try again.`,
    );
    return;
  } finally {
    button.disabled = false;
  }
  api.useKey(key);
  input.value = "";
  showKeyError("");
  state.needKey = false;
  state.previous = null;
  setConnection("loading", "Connecting…");
  showContent();
  $("main").focus();
  refreshNow();
}

function forgetKey() {
  api.forgetKey();
  state.previous = null;
  $("forget-key").hidden = true;
  refreshNow();
}

// --- start -------------------------------------------------------------------------------

$("key-form").addEventListener("submit", submitKey);
$("forget-key").addEventListener("click", forgetKey);
$("device-filter").addEventListener("change", () => {
  syncCharts();
  refreshCharts().catch(onError);
});
$("range").addEventListener("change", () => {
  for (const card of state.cards.values()) {
    card.loadedAt = 0;
  }
  refreshCharts().catch(onError);
});
document.addEventListener("visibilitychange", () => {
  if (document.hidden) {
    window.clearTimeout(state.timer);
  } else if (!state.needKey) {
    refreshNow();
  }
});
window.matchMedia("(prefers-color-scheme: dark)").addEventListener("change", () => {
  for (const card of state.cards.values()) {
    card.restyle();
  }
});
refreshNow();
