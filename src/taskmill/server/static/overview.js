// The overview: totals from GET /stats, and two charts over the last hour.
//
// Where the history comes from (the API keeps no time series):
// - throughput: finished jobs are stored with their finish time, so when the page opens it
//   counts the newest stored succeeded and dead jobs per minute (one page of each, so up
//   to BACKFILL of each: it says so when there were more); from then on it adds the rise
//   of /stats' succeeded and dead counts at each poll. This history survives a restart of
//   the server or a reload of the page, since it is read back from the backend.
// - queue depth: no past depth can be read back, so the page samples /stats' pending count
//   while it is open and keeps the samples in sessionStorage (this tab, the last hour).

import { api } from "./api.js";
import { lineChart } from "./charts.js";
import { duration, esc } from "./html.js";

const HOUR = 3600_000;
const MINUTE = 60_000;
const BACKFILL = 1000;
const DEPTH_KEY = "taskmill.depth-samples";
const DEPTH_EVERY = 10_000;

const minuteOf = (ms) => ms - (ms % MINUTE);

// Finished jobs per minute start: { ok, dead }; null until the first backfill.
let buckets = null;
let baseline = null;
let truncated = false;

async function backfill(stats) {
  const [ok, dead] = await Promise.all(
    ["succeeded", "dead"].map((s) => api(`/jobs?status=${s}&limit=${BACKFILL}`)),
  );
  const since = Date.now() - HOUR;
  buckets = new Map();
  for (const [kind, page] of [["ok", ok], ["dead", dead]]) {
    truncated ||= page.next_cursor !== null;
    for (const job of page.jobs) {
      const at = Date.parse(job.finished_at);
      if (!(at >= since)) continue;
      const bucket = buckets.get(minuteOf(at)) ?? { ok: 0, dead: 0 };
      bucket[kind] += 1;
      buckets.set(minuteOf(at), bucket);
    }
  }
  baseline = { ok: stats.counts.succeeded, dead: stats.counts.dead };
}

// What finished since the last poll goes to this minute. Purges, requeues and pruning
// lower the counts; those drops are not throughput, so they count as nothing.
function accumulate(stats) {
  const now = { ok: stats.counts.succeeded, dead: stats.counts.dead };
  const bucket = buckets.get(minuteOf(Date.now())) ?? { ok: 0, dead: 0 };
  bucket.ok += Math.max(0, now.ok - baseline.ok);
  bucket.dead += Math.max(0, now.dead - baseline.dead);
  buckets.set(minuteOf(Date.now()), bucket);
  baseline = now;
}

function depthSamples(pending) {
  const now = Date.now();
  const stored = JSON.parse(sessionStorage.getItem(DEPTH_KEY) ?? "[]").filter(
    ([ms]) => ms > now - HOUR,
  );
  if (!stored.length || now - stored[stored.length - 1][0] >= DEPTH_EVERY) {
    stored.push([now, pending]);
    sessionStorage.setItem(DEPTH_KEY, JSON.stringify(stored));
  }
  return [...stored, [now, pending]];
}

function throughputSeries(now) {
  const ok = [];
  const dead = [];
  for (let m = minuteOf(now - HOUR) + MINUTE; m <= now; m += MINUTE) {
    const bucket = buckets.get(m) ?? { ok: 0, dead: 0 };
    // A minute's point stands at its end, or at now for the minute under way.
    const at = Math.min(m + MINUTE, now);
    ok.push([at, bucket.ok / 60]);
    dead.push([at, bucket.dead / 60]);
  }
  return [
    { name: "succeeded", cls: "ok", points: ok },
    { name: "failed (dead)", cls: "bad", points: dead },
  ];
}

function card(label, value, id, href) {
  const body = `<span class="label">${esc(label)}</span><span class="value" id="${id}">${esc(value)}</span>`;
  return href ? `<a class="card" href="${href}">${body}</a>` : `<div class="card">${body}</div>`;
}

export const overview = {
  title: "Overview",
  async live() {
    const stats = await api("/stats");
    if (buckets === null) await backfill(stats);
    else accumulate(stats);
    const now = Date.now();
    const counts = stats.counts;
    const cards = [
      card("Live workers", stats.workers, "stat-workers", "#/workers"),
      card("Running jobs", counts.running, "stat-running", "#/jobs?status=running"),
      card("Pending jobs", counts.pending, "stat-pending", "#/jobs?status=pending"),
      card("Dead-letter", counts.dead, "stat-dead", "#/dlq"),
      card("Oldest pending", duration(stats.oldest_pending_age), "stat-oldest"),
      card("Finished / min", stats.throughput_per_minute, "stat-throughput"),
    ].join("");
    const throughput = lineChart({
      title: "Throughput, jobs per second (averaged per minute)",
      series: throughputSeries(now),
      from: now - HOUR,
      to: now,
    });
    const depth = lineChart({
      title: "Queue depth (pending jobs)",
      series: [{ name: "pending", cls: "depth", points: depthSamples(counts.pending) }],
      from: now - HOUR,
      to: now,
    });
    const note =
      `Throughput before this page opened is counted from the finished jobs the backend ` +
      `stores${truncated ? ` (the newest ${BACKFILL} of each kind: there were more)` : ""}; ` +
      `queue depth is sampled while this tab is open.`;
    return (
      `<div class="cards">${cards}</div><div class="charts">${throughput}${depth}</div>` +
      `<p class="hint">${esc(note)}</p>`
    );
  },
};
