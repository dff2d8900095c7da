// Pages are built as HTML strings: every value from the API goes through esc() first.

const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

export function esc(value) {
  return String(value ?? "").replace(/[&<>"']/g, (c) => ESCAPES[c]);
}

// A duration in seconds, shortly: 42s, 3m 5s, 2h 10m, 4d 1h.
export function duration(seconds) {
  if (seconds == null) return "—";
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
}

export function since(iso) {
  return iso ? (Date.now() - Date.parse(iso)) / 1000 : null;
}

// A time as the reader's local time, with the exact UTC value on hover.
export function time(iso) {
  if (!iso) return "—";
  const local = new Date(iso).toLocaleString();
  return `<time datetime="${esc(iso)}" title="${esc(iso)}">${esc(local)}</time>`;
}

// The API gives a schedule's times as UNIX seconds (a job's as ISO strings); time() takes
// the ISO form.
export function unix(seconds) {
  return seconds == null ? null : new Date(seconds * 1000).toISOString();
}

export function json(value) {
  return `<pre class="json">${esc(JSON.stringify(value, null, 2))}</pre>`;
}

export function status(value) {
  return `<span class="status s-${esc(value)}">${esc(value)}</span>`;
}

export function query(params) {
  const kept = Object.entries(params).filter(([, v]) => v != null && v !== "");
  return kept.length ? `?${new URLSearchParams(kept)}` : "";
}
