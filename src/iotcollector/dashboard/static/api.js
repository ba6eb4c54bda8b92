// The collector's HTTP API as seen from the page: bearer key, JSON errors, server clock.

const KEY_STORAGE = "iotcollector.apiKey";

/** A 401 from the API: no key, or a key it does not accept. */
export class AuthError extends Error {
  constructor(message, hadKey) {
    super(message);
    this.name = "AuthError";
    this.hadKey = hadKey;
  }
}

/** Any other failed request (network error or a non-2xx answer). */
export class HttpError extends Error {
  constructor(message, status) {
    super(message);
    this.name = "HttpError";
    this.status = status;
  }
}

// Local storage may be unavailable (privacy modes, disabled storage): then the key lives
// only as long as the page.
export const keyStore = {
  memory: null,
  load() {
    try {
      return window.localStorage.getItem(KEY_STORAGE) || this.memory;
    } catch {
      return this.memory;
    }
  },
  save(key) {
    this.memory = key;
    try {
      window.localStorage.setItem(KEY_STORAGE, key);
    } catch {
      /* kept in memory only */
    }
  },
  clear() {
    this.memory = null;
    try {
      window.localStorage.removeItem(KEY_STORAGE);
    } catch {
      /* nothing stored */
    }
  },
};

async function errorMessage(response) {
  try {
    const body = await response.json();
    if (body && body.error && body.error.message) {
      return body.error.message;
    }
  } catch {
    /* not JSON */
  }
  return `${response.status} ${response.statusText}`.trim();
}

export class Api {
  constructor(base = document.baseURI) {
    this.base = base;
    this.key = keyStore.load();
    // Server time minus browser time, from the Date header: "last seen 3 s ago" and the
    // chart ranges stay right even when this computer's clock is off.
    this.clockOffsetMs = 0;
  }

  now() {
    return Date.now() + this.clockOffsetMs;
  }

  url(path, params) {
    const url = new URL(path, this.base);
    for (const [name, value] of Object.entries(params || {})) {
      if (value !== undefined && value !== null && value !== "") {
        url.searchParams.set(name, String(value));
      }
    }
    return url;
  }

  async request(path, { params, key = this.key, accept = "application/json", signal } = {}) {
    const headers = { Accept: accept };
    if (key) {
      headers.Authorization = `Bearer ${key}`;
    }
    let response;
    try {
      response = await fetch(this.url(path, params), {
        headers,
        signal,
        cache: "no-store",
        credentials: "omit",
      });
    } catch (error) {
      if (error.name === "AbortError") {
        throw error;
      }
      throw new HttpError("cannot reach the collector", 0);
    }
    this.noteClock(response);
    if (response.status === 401) {
      throw new AuthError(await errorMessage(response), Boolean(key));
    }
    if (!response.ok) {
      throw new HttpError(await errorMessage(response), response.status);
    }
    return response;
  }

  noteClock(response) {
    const date = Date.parse(response.headers.get("Date") || "");
    if (Number.isFinite(date)) {
      const offset = date - Date.now();
      // The header has whole seconds: correct only a clearly wrong clock.
      this.clockOffsetMs = Math.abs(offset) > 2000 ? offset : 0;
    }
  }

  async json(path, options) {
    const response = await this.request(path, options);
    return response.json();
  }

  /** Every device, following the pages (at most `maxPages` of 1000). */
  async devices(maxPages = 5) {
    const devices = [];
    let cursor = null;
    for (let page = 0; page < maxPages; page += 1) {
      const body = await this.json("api/devices", { params: { limit: 1000, cursor } });
      devices.push(...body.data);
      cursor = body.next_cursor;
      if (!cursor) {
        return { devices, complete: true };
      }
    }
    return { devices, complete: false };
  }

  /** The latest dead letters (newest first). */
  /** Where devices publish: { version, mqtt: { broker, topics } }. */
  info() {
    return this.json("api/info");
  }

  rejected(limit = 20) {
    return this.json("api/rejected", { params: { limit } });
  }

  aggregate({ deviceId, sensorType, from, bucket, signal }) {
    return this.json("api/data/aggregate", {
      params: { device_id: deviceId, sensor_type: sensorType, from, bucket },
      signal,
    });
  }

  /** Checks a key before keeping it: resolves if the API accepts it. */
  async check(key) {
    await this.request("api/devices", { params: { limit: 1 }, key });
  }

  async metricsText() {
    const response = await this.request("metrics", { key: null, accept: "text/plain" });
    return response.text();
  }

  useKey(key) {
    this.key = key;
    keyStore.save(key);
  }

  forgetKey() {
    this.key = null;
    keyStore.clear();
  }
}
