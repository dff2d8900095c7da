// Line charts drawn as SVG strings: a time axis over [from, to], one polyline per series.

import { esc } from "./html.js";

const W = 600;
const H = 180;
const PAD = { left: 44, right: 8, top: 10, bottom: 22 };

function niceMax(value) {
  if (value <= 0) return 1;
  const step = 10 ** Math.floor(Math.log10(value));
  for (const m of [1, 2, 5, 10]) if (m * step >= value) return m * step;
  return 10 * step;
}

function label(value) {
  return value >= 100 || Number.isInteger(value) ? String(Math.round(value)) : value.toFixed(2);
}

function clock(ms) {
  return new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

// series: [{ name, cls, points: [[ms, value], ...] }]; title names the chart for readers.
export function lineChart({ title, series, from, to }) {
  const top = niceMax(Math.max(0, ...series.flatMap((s) => s.points.map((p) => p[1]))));
  const x = (ms) => PAD.left + ((ms - from) / (to - from)) * (W - PAD.left - PAD.right);
  const y = (v) => H - PAD.bottom - (v / top) * (H - PAD.top - PAD.bottom);
  const grid = [0, 0.5, 1]
    .map((f) => {
      const v = top * f;
      return (
        `<line class="grid" x1="${PAD.left}" x2="${W - PAD.right}" y1="${y(v)}" y2="${y(v)}"/>` +
        `<text class="tick" x="${PAD.left - 4}" y="${y(v) + 4}" text-anchor="end">${label(v)}</text>`
      );
    })
    .join("");
  const times = [0, 0.5, 1]
    .map((f) => {
      const ms = from + (to - from) * f;
      const anchor = f === 0 ? "start" : f === 1 ? "end" : "middle";
      return `<text class="tick" x="${x(ms)}" y="${H - 6}" text-anchor="${anchor}">${clock(ms)}</text>`;
    })
    .join("");
  const lines = series
    .map((s) => {
      const points = s.points
        .filter(([ms]) => ms >= from)
        .map(([ms, v]) => `${x(ms).toFixed(1)},${y(v).toFixed(1)}`);
      return points.length
        ? `<polyline class="line ${s.cls}" points="${points.join(" ")}"><title>${esc(s.name)}</title></polyline>`
        : "";
    })
    .join("");
  const legend = series
    .map((s) => `<span class="key ${s.cls}">${esc(s.name)}</span>`)
    .join(" ");
  return (
    `<figure class="chart"><figcaption>${esc(title)} ${legend}</figcaption>` +
    `<svg viewBox="0 0 ${W} ${H}" role="img" aria-label="${esc(title)}">${grid}${times}${lines}</svg></figure>`
  );
}
