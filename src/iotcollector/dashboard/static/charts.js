// One chart per device and sensor type: the average per time bucket between its minimum
// and maximum, from /api/data/aggregate, drawn by uPlot.

import uPlot from "./vendor/uplot/uPlot.esm.js";
import { formatSpan, formatValue } from "./format.js";

const HEIGHT = 170;
const NICE_BUCKETS = [5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600];

/** A bucket width (s) giving at most about 100 points over the range. */
export function bucketFor(rangeSeconds) {
  const wanted = rangeSeconds / 100;
  return NICE_BUCKETS.find((b) => b >= wanted) || NICE_BUCKETS[NICE_BUCKETS.length - 1];
}

/**
 * The aggregate answer laid on a regular grid of buckets over [to - range, to] (seconds),
 * with nulls where a bucket has no reading, so gaps show as gaps.
 */
export function toSeries(body, rangeSeconds, bucket) {
  const to = Date.parse(body.to) / 1000;
  const from = to - rangeSeconds;
  const first = Math.floor(from / bucket) * bucket;
  const size = Math.floor((to - first) / bucket) + 1;
  const xs = Array.from({ length: size }, (_, i) => first + i * bucket);
  const avg = new Array(size).fill(null);
  const min = new Array(size).fill(null);
  const max = new Array(size).fill(null);
  let readings = 0;
  let points = 0;
  let latest = null;
  let low = Infinity;
  let high = -Infinity;
  for (const b of body.data) {
    const i = Math.round((Date.parse(b.bucket_start) / 1000 - first) / bucket);
    if (i < 0 || i >= size) {
      continue;
    }
    avg[i] = b.avg;
    min[i] = b.min;
    max[i] = b.max;
    readings += b.count;
    points += 1;
    latest = b.avg;
    low = Math.min(low, b.min);
    high = Math.max(high, b.max);
  }
  return {
    from,
    to,
    data: [xs, min, max, avg],
    points,
    readings,
    latest,
    low: points ? low : null,
    high: points ? high : null,
  };
}

/**
 * The y axis as wide as its longest label (a fixed width clipped "1,012.5" to ".,012.5").
 * uPlot calls this while laying out, with the formatted tick labels.
 */
function yAxisSize(plot, values, axisIndex, cycle) {
  const axis = plot.axes[axisIndex];
  if (cycle > 1) {
    return axis._size; // settled: keep the width of the previous layout pass
  }
  let size = axis.ticks.size + axis.gap;
  const longest = (values || []).reduce((a, b) => (String(b).length > a.length ? String(b) : a), "");
  if (longest) {
    plot.ctx.font = axis.font[0];
    size += plot.ctx.measureText(longest).width / window.devicePixelRatio;
  }
  return Math.ceil(size) + 2;
}

function colors() {
  const style = getComputedStyle(document.documentElement);
  const get = (name) => style.getPropertyValue(name).trim();
  return {
    line: get("--chart-line"),
    edge: get("--chart-edge"),
    band: get("--chart-band"),
    axis: get("--chart-axis"),
    grid: get("--chart-grid"),
  };
}

export class ChartCard {
  constructor(deviceId, sensorType) {
    this.deviceId = deviceId;
    this.sensorType = sensorType;
    this.plot = null;
    this.series = null;
    this.visible = false;
    this.loadedAt = 0;
    this.loading = null;

    this.element = document.createElement("figure");
    this.element.className = "chart";
    this.element.dataset.device = deviceId;
    this.element.dataset.sensor = sensorType;
    this.element.dataset.state = "loading";
    this.element.dataset.points = "0";
    this.element.dataset.readings = "0";

    const caption = document.createElement("figcaption");
    const title = document.createElement("span");
    title.className = "chart-title";
    const device = document.createElement("strong");
    device.textContent = deviceId;
    title.append(device, ` · ${sensorType}`);
    this.summary = document.createElement("span");
    this.summary.className = "chart-summary";
    this.summary.textContent = "Loading…";
    caption.append(title, this.summary);

    this.plotElement = document.createElement("div");
    this.plotElement.className = "plot";
    this.plotElement.setAttribute("role", "img");
    this.plotElement.setAttribute("aria-label", `${sensorType} of ${deviceId}: loading`);
    this.element.append(caption, this.plotElement);

    this.resizeObserver = new ResizeObserver(() => {
      window.requestAnimationFrame(() => this.fit());
    });
    this.resizeObserver.observe(this.plotElement);
  }

  get key() {
    return `${this.deviceId}\u0000${this.sensorType}`;
  }

  /** Loads the aggregate for the range; one load at a time per chart. */
  refresh(api, rangeSeconds) {
    if (!this.loading) {
      this.loading = this.load(api, rangeSeconds).finally(() => {
        this.loading = null;
      });
    }
    return this.loading;
  }

  async load(api, rangeSeconds) {
    const bucket = bucketFor(rangeSeconds);
    const from = new Date(api.now() - rangeSeconds * 1000).toISOString();
    try {
      const body = await api.aggregate({
        deviceId: this.deviceId,
        sensorType: this.sensorType,
        from,
        bucket: `${bucket}s`,
      });
      this.series = toSeries(body, rangeSeconds, bucket);
      this.loadedAt = Date.now();
      this.render(rangeSeconds);
    } catch (error) {
      if (error.name === "AuthError") {
        throw error;
      }
      this.element.dataset.state = "error";
      this.summary.textContent = `Could not load: ${error.message}`;
    }
  }

  render(rangeSeconds) {
    const s = this.series;
    const span = formatSpan(rangeSeconds);
    this.element.dataset.state = s.points ? "ok" : "empty";
    this.element.dataset.points = String(s.points);
    this.element.dataset.readings = String(s.readings);
    if (s.points) {
      this.summary.textContent =
        `latest ${formatValue(s.latest)} · ` +
        `min ${formatValue(s.low)} · max ${formatValue(s.high)}`;
      this.plotElement.setAttribute(
        "aria-label",
        `${this.sensorType} of ${this.deviceId} over the last ${span}: ` +
          `${s.readings} readings in ${s.points} time buckets, latest average ` +
          `${formatValue(s.latest)}, lowest ${formatValue(s.low)}, ` +
          `highest ${formatValue(s.high)}.`,
      );
    } else {
      this.summary.textContent = `no readings in the last ${span}`;
      this.plotElement.setAttribute(
        "aria-label",
        `${this.sensorType} of ${this.deviceId}: no readings in the last ${span}.`,
      );
    }
    if (this.plot) {
      this.plot.setData(s.data);
    } else {
      this.create();
    }
  }

  create() {
    const c = colors();
    const axis = {
      stroke: c.axis,
      grid: { stroke: c.grid, width: 1 },
      ticks: { stroke: c.grid, width: 1 },
    };
    const options = {
      width: Math.max(200, this.plotElement.clientWidth),
      height: HEIGHT,
      scales: {
        x: { time: true, range: () => [this.series.from, this.series.to] },
      },
      series: [
        {},
        { label: "min", stroke: c.edge, width: 1, points: { show: false } },
        { label: "max", stroke: c.edge, width: 1, points: { show: false } },
        {
          label: "avg",
          stroke: c.line,
          width: 2,
          points: { show: true, size: 5, fill: c.line, stroke: c.line },
        },
      ],
      bands: [{ series: [2, 1], fill: c.band }],
      axes: [axis, { ...axis, size: yAxisSize }],
      cursor: { drag: { x: false, y: false, setScale: false } },
      legend: { show: true, live: true },
    };
    this.plot = new uPlot(options, this.series.data, this.plotElement);
  }

  /** Follows the width of the grid cell. */
  fit() {
    if (!this.plot) {
      return;
    }
    const width = Math.max(200, this.plotElement.clientWidth);
    if (width !== this.plot.width) {
      this.plot.setSize({ width, height: HEIGHT });
    }
  }

  /** Redraws with the current colours (the colour scheme changed). */
  restyle() {
    if (this.plot) {
      this.plot.destroy();
      this.plot = null;
      this.create();
    }
  }

  destroy() {
    this.resizeObserver.disconnect();
    if (this.plot) {
      this.plot.destroy();
      this.plot = null;
    }
    this.element.remove();
  }
}
