// @ts-check
/**
 * A small SVG chart of an instance's history (GET …/history: one point per telemetry bucket):
 * traffic P95 (line), probe P95 (dashed line), traffic error rate (bars, right axis 0–100 %).
 * Drawn from the server's buckets, so it shows the same numbers as the table and survives a reload.
 */
import { h, s } from "./dom.js";

const W = 320;
const H = 120;
const PAD = { l: 42, r: 30, t: 8, b: 18 };
const MIN_POINTS = 12;

/** A round upper bound for the axis. @param {number} v */
function niceMax(v) {
  if (!(v > 0)) return 10;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

/** @param {number | null} ms */
export const fmtMs = (ms) => (ms === null ? "–" : ms >= 10_000 ? `${(ms / 1000).toFixed(1)} s` : ms >= 100 ? `${Math.round(ms)} ms` : `${ms.toFixed(1)} ms`);
/** Axis label. @param {number} ms */
const axisMs = (ms) => (ms >= 1000 ? `${+(ms / 1000).toFixed(1)} s` : `${+ms.toFixed(ms < 10 ? 1 : 0)} ms`);
/** @param {number | null} r */
export const fmtRate = (r) => (r === null ? "–" : r === 0 ? "0 %" : r < 0.001 ? "<0.1 %" : `${(r * 100).toFixed(r < 0.1 ? 1 : 0)} %`);

/**
 * @typedef {{ start: string, requests: number, errors: number, error_rate: number | null, p95_ms: number | null, probes: number, probe_failures: number, probe_p95_ms: number | null }} Point
 * @param {{ bucket_ms: number, points: Point[] }} history
 * @param {string} label  what the chart is of (for the accessible name)
 * @returns {HTMLElement}
 */
export function historyChart(history, label) {
  // From the first bucket with data (a new instance has no history to show), at least MIN_POINTS buckets.
  const firstData = history.points.findIndex((p) => p.requests > 0 || p.probes > 0);
  const from = firstData < 0 ? Math.max(0, history.points.length - MIN_POINTS) : Math.min(firstData, Math.max(0, history.points.length - MIN_POINTS));
  const pts = history.points.slice(from);
  const n = pts.length;
  const iw = W - PAD.l - PAD.r;
  const ih = H - PAD.t - PAD.b;
  const x = (/** @type {number} */ i) => PAD.l + (n <= 1 ? iw : (i / (n - 1)) * iw);
  const latMax = niceMax(1.1 * Math.max(0, ...pts.map((p) => Math.max(p.p95_ms ?? 0, p.probe_p95_ms ?? 0))));
  const y = (/** @type {number} */ v) => PAD.t + ih - (Math.min(v, latMax) / latMax) * ih;
  const yr = (/** @type {number} */ r) => PAD.t + ih - Math.min(1, r) * ih;

  /** @param {(p: Point) => number | null} get */
  const path = (get) => {
    let d = "";
    let pen = false;
    pts.forEach((p, i) => {
      const v = get(p);
      if (v === null) {
        pen = false;
        return;
      }
      d += `${pen ? "L" : "M"}${x(i).toFixed(1)},${y(v).toFixed(1)}`;
      pen = true;
    });
    return d;
  };
  const barW = Math.max(1, iw / Math.max(n, 1) - 1);
  const bars = pts.flatMap((p, i) => {
    if (p.error_rate === null || p.error_rate <= 0) return [];
    const x0 = Math.max(PAD.l, x(i) - barW / 2);
    const x1 = Math.min(W - PAD.r, x(i) + barW / 2);
    return [s("rect", { class: "c-err", x: x0.toFixed(1), y: yr(p.error_rate).toFixed(1), width: Math.max(1, x1 - x0).toFixed(1), height: (PAD.t + ih - yr(p.error_rate)).toFixed(1) })];
  });
  const spanS = Math.round((n * history.bucket_ms) / 1000);
  const span = spanS >= 120 ? `${Math.round(spanS / 60)} min` : `${spanS} s`;
  const captionId = `chart-${Math.random().toString(36).slice(2)}`;

  const svg = s(
    "svg",
    { viewBox: `0 0 ${W} ${H}`, class: "chart-svg", role: "img", "aria-labelledby": captionId },
    s("line", { class: "c-axis", x1: PAD.l, x2: W - PAD.r, y1: PAD.t + ih, y2: PAD.t + ih }),
    s("line", { class: "c-grid", x1: PAD.l, x2: W - PAD.r, y1: PAD.t + ih / 2, y2: PAD.t + ih / 2 }),
    s("line", { class: "c-grid", x1: PAD.l, x2: W - PAD.r, y1: PAD.t, y2: PAD.t }),
    s("text", { class: "c-label", x: PAD.l - 4, y: PAD.t + 4, "text-anchor": "end" }, axisMs(latMax)),
    s("text", { class: "c-label", x: PAD.l - 4, y: PAD.t + ih / 2 + 3, "text-anchor": "end" }, axisMs(latMax / 2)),
    s("text", { class: "c-label c-label-err", x: W - PAD.r + 4, y: PAD.t + ih / 2 + 3 }, "50%"),
    s("text", { class: "c-label", x: PAD.l - 4, y: PAD.t + ih + 3, "text-anchor": "end" }, "0"),
    s("text", { class: "c-label c-label-err", x: W - PAD.r + 4, y: PAD.t + 4 }, "100%"),
    s("text", { class: "c-label", x: PAD.l, y: H - 4 }, `−${span}`),
    s("text", { class: "c-label", x: W - PAD.r, y: H - 4, "text-anchor": "end" }, "now"),
    ...bars,
    s("path", { class: "c-probe", d: path((p) => p.probe_p95_ms) }),
    s("path", { class: "c-p95", d: path((p) => p.p95_ms) }),
  );

  const last = (/** @type {(p: Point) => number | null} */ get) => {
    for (let i = n - 1; i >= 0; i--) {
      const v = get(/** @type {Point} */ (pts[i]));
      if (v !== null) return v;
    }
    return null;
  };
  const max = (/** @type {(p: Point) => number | null} */ get) => pts.reduce((m, p) => Math.max(m, get(p) ?? -1), -1);
  const requests = pts.reduce((a, p) => a + p.requests, 0);
  const summary =
    `${label}, last ${span} in ${Math.round(history.bucket_ms / 1000)}-second buckets. ` +
    (requests > 0
      ? `Traffic: ${requests} requests, P95 latest ${fmtMs(last((p) => p.p95_ms))} (max ${fmtMs(max((p) => p.p95_ms))}), error rate latest ${fmtRate(last((p) => p.error_rate))} (max ${fmtRate(Math.max(0, max((p) => p.error_rate)))}). `
      : "No traffic reported by the gateway in this period. ") +
    `Probe P95 latest ${fmtMs(last((p) => p.probe_p95_ms))}.`;

  return h(
    "figure",
    { class: "chart" },
    svg,
    h(
      "figcaption",
      {},
      h("span", { class: "legend" }, h("span", { class: "key key-p95", "aria-hidden": "true" }), "Traffic P95"),
      h("span", { class: "legend" }, h("span", { class: "key key-probe", "aria-hidden": "true" }), "Probe P95"),
      h("span", { class: "legend" }, h("span", { class: "key key-err", "aria-hidden": "true" }), "Error rate"),
      h("span", { class: "visually-hidden", id: captionId }, summary),
    ),
  );
}
