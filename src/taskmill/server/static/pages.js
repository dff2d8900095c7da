// The pages besides the overview. Each has a title, optional controls rendered once per
// visit (forms keep what the user types), and live(): the part fetched again at each poll.
// Buttons carry data-action and the ids they act on; app.js runs them.

import { api } from "./api.js";
import { duration, esc, json, query, since, status, time, unix } from "./html.js";

const STATES = [
  "pending", "scheduled", "running", "retrying", "succeeded", "dead", "cancelled", "expired",
];
const PAGE = 25;

function table(caption, headers, rows, empty) {
  if (!rows.length) return `<p class="empty">${esc(empty)}</p>`;
  const head = headers.map((h) => `<th scope="col">${esc(h)}</th>`).join("");
  return (
    `<div class="scroll"><table><caption>${esc(caption)}</caption>` +
    `<thead><tr>${head}</tr></thead><tbody>${rows.join("")}</tbody></table></div>`
  );
}

function button(label, action, data, extra = "") {
  const attrs = Object.entries(data)
    .map(([k, v]) => ` data-${k}="${esc(v)}"`)
    .join("");
  return `<button type="button" data-action="${action}"${attrs}${extra}>${esc(label)}</button>`;
}

const jobLink = (job) => `<a href="#/jobs/${encodeURIComponent(job.id)}">${esc(job.id)}</a>`;

function lastError(job) {
  const error = job.errors[job.errors.length - 1];
  return error ? esc(error.error) : "—";
}

// Pages of a listing: the cursors of the pages before this one travel in the URL.
function pager(params, nextCursor) {
  const back = (params.back ?? "").split(",").filter(Boolean);
  const links = [];
  if (params.cursor) {
    const previous = { ...params, cursor: back.at(-1) ?? "", back: back.slice(0, -1).join(",") };
    links.push(`<a href="#/${params.path}${query(previous)}">← Newer</a>`);
  }
  if (nextCursor) {
    const next = { ...params, cursor: nextCursor, back: [...back, params.cursor ?? ""].join(",") };
    links.push(`<a href="#/${params.path}${query(next)}" rel="next">Older →</a>`);
  }
  return links.length ? `<nav class="pager" aria-label="Pages">${links.join(" ")}</nav>` : "";
}

const listParams = (params) => ({
  status: params.status,
  queue: params.queue,
  type: params.type,
  cursor: params.cursor,
  limit: PAGE,
});

export const queues = {
  title: "Queues",
  async live() {
    const list = await api("/queues");
    const rows = list.map((q) => {
      const c = q.counts;
      const jobs = `#/jobs${query({ queue: q.name })}`;
      const toggle = q.paused
        ? button("Resume", "resume", { queue: q.name }, ` aria-label="Resume ${esc(q.name)}"`)
        : button("Pause", "pause", { queue: q.name }, ` aria-label="Pause ${esc(q.name)}"`);
      return (
        `<tr data-queue="${esc(q.name)}"><th scope="row"><a href="${jobs}">${esc(q.name)}</a></th>` +
        `<td class="state">${q.paused ? status("paused") : status("active")}</td>` +
        `<td>${esc(q.weight ?? 1)}</td>` +
        ["pending", "scheduled", "running", "retrying", "succeeded", "dead"]
          .map((s) => `<td class="num n-${s}">${c[s]}</td>`)
          .join("") +
        `<td>${duration(q.oldest_pending_age)}</td><td class="actions">${toggle}</td></tr>`
      );
    });
    const headers = ["Queue", "State", "Weight", "Pending", "Scheduled", "Running", "Retrying",
      "Succeeded", "Dead", "Oldest pending", "Actions"];
    return table("Queues, their settings and jobs per state", headers, rows, "No queue yet.");
  },
};

function filters(params) {
  const options = ["", ...STATES]
    .map((s) => `<option value="${s}"${s === (params.status ?? "") ? " selected" : ""}>${s || "any"}</option>`)
    .join("");
  return (
    `<form class="filters" id="job-filters" role="search">` +
    `<label>Status <select name="status">${options}</select></label>` +
    `<label>Queue <input name="queue" value="${esc(params.queue)}" autocomplete="off"></label>` +
    `<label>Task <input name="type" value="${esc(params.type)}" autocomplete="off"></label>` +
    `<button type="submit">Filter</button></form>` +
    `<form class="filters" id="job-search" role="search">` +
    `<label>Job id <input name="id" required autocomplete="off"></label>` +
    `<button type="submit">Open</button></form>`
  );
}

export const jobs = {
  title: "Jobs",
  controls: filters,
  async live(params) {
    const page = await api(`/jobs${query(listParams(params))}`);
    const rows = page.jobs.map(
      (job) =>
        `<tr><td>${jobLink(job)}</td><td>${status(job.status)}</td><td>${esc(job.type)}</td>` +
        `<td>${esc(job.queue)}</td><td>${time(job.created_at)}</td><td>${job.attempts}</td></tr>`,
    );
    const headers = ["Id", "Status", "Task", "Queue", "Created", "Attempts"];
    return (
      table("Jobs, newest first", headers, rows, "No job matches.") +
      pager({ ...params, path: "jobs" }, page.next_cursor)
    );
  },
};

// Every failed (or cancelled) attempt is in job.errors, in order, also those of runs
// before a requeue, which starts the count again. The latest attempt gets a row of its own
// when it has no error of its own: no error since it started.
function attempts(job) {
  const rows = job.errors.map(
    (e) =>
      `<tr><th scope="row">${e.attempt}</th><td>${time(e.at)}</td><td>${esc(e.worker ?? "—")}</td>` +
      `<td><p class="error">${esc(e.error)}</p>` +
      (e.traceback
        ? `<details><summary>Traceback</summary><pre>${esc(e.traceback)}</pre></details>`
        : "") +
      `</td></tr>`,
  );
  const latest = job.errors.at(-1);
  const endedInError = latest && Date.parse(latest.at) >= Date.parse(job.started_at);
  if (job.attempts > 0 && !endedInError) {
    rows.push(
      `<tr><th scope="row">${job.attempts}</th><td>${time(job.finished_at)}</td>` +
        `<td>${esc(job.worker ?? "—")}</td><td>${status(job.status)}</td></tr>`,
    );
  }
  return table("Every attempt", ["Attempt", "Ended", "Worker", "Outcome"], rows,
    "Not attempted yet.");
}

export const job = {
  title: "Job",
  async live(params) {
    const j = await api(`/jobs/${encodeURIComponent(params.id)}`);
    const percent = Math.round((j.progress ?? 0) * 100);
    const actions = [
      button("Cancel", "cancel", { job: j.id }, j.status.match(/succeeded|dead|cancelled|expired/) ? " disabled" : ""),
      button("Retry", "retry", { job: j.id }, j.status === "dead" ? "" : " disabled"),
      button("Delete", "delete", { job: j.id }, j.status === "running" ? " disabled" : ""),
    ].join(" ");
    const options = {
      queue: j.queue, priority: j.priority, max_retries: j.max_retries, retry: j.retry,
      timeout: j.timeout, result_ttl: j.result_ttl, expires_at: j.expires_at, metadata: j.metadata,
    };
    const times = [
      ["Created", j.created_at], ["Scheduled", j.scheduled_at], ["Started", j.started_at],
      ["Finished", j.finished_at],
    ].map(([k, v]) => `<dt>${k}</dt><dd>${time(v)}</dd>`).join("");
    return (
      `<h2 class="job-id">${esc(j.id)}</h2>` +
      `<dl class="facts"><dt>Status</dt><dd id="job-status">${status(j.status)}` +
      `${j.cancel_requested && j.status === "running" ? " (cancel requested)" : ""}</dd>` +
      `<dt>Task</dt><dd>${esc(j.type)}</dd><dt>Worker</dt><dd>${esc(j.worker ?? "—")}</dd>${times}</dl>` +
      `<label for="job-progress">Progress ${percent}%</label>` +
      `<progress id="job-progress" max="100" value="${percent}">${percent}%</progress>` +
      `<div class="actions">${actions}</div>` +
      `<section><h3>Payload</h3>${json({ args: j.args, kwargs: j.payload })}</section>` +
      `<section><h3>Options</h3>${json(options)}</section>` +
      `<section><h3>Result</h3>${json(j.result)}</section>` +
      `<section><h3>Attempts</h3>${attempts(j)}</section>`
    );
  },
};

export const dlq = {
  title: "Dead-letter queue",
  controls: () =>
    `<div class="actions toolbar">` +
    button("Requeue selected", "requeue-selected", {}) +
    button("Requeue all", "requeue-all", {}) +
    button("Purge all", "purge", {}, ' class="danger"') +
    `</div>`,
  async live(params, selected) {
    const page = await api(`/dlq${query({ cursor: params.cursor, limit: PAGE })}`);
    const rows = page.jobs.map((j) => {
      const id = `pick-${esc(j.id)}`;
      const picked = selected.has(j.id) ? " checked" : "";
      return (
        `<tr><td><input type="checkbox" id="${id}" data-pick="${esc(j.id)}"${picked}>` +
        `<label class="visually-hidden" for="${id}">Select ${esc(j.id)}</label></td>` +
        `<td>${jobLink(j)}</td><td>${esc(j.type)}</td><td>${esc(j.queue)}</td>` +
        `<td>${time(j.finished_at)}</td><td class="error">${lastError(j)}</td>` +
        `<td>${button("Requeue", "requeue", { job: j.id }, ` aria-label="Requeue ${esc(j.id)}"`)}</td></tr>`
      );
    });
    const headers = ["Pick", "Id", "Task", "Queue", "Died", "Last error", "Actions"];
    return (
      table("Dead jobs, newest first", headers, rows, "The dead-letter queue is empty.") +
      pager({ ...params, path: "dlq" }, page.next_cursor)
    );
  },
};

export const workers = {
  title: "Workers",
  async live() {
    const list = await api("/workers");
    const rows = list.map(
      (w) =>
        `<tr><th scope="row">${esc(w.id)}</th><td>${esc(w.host)}</td><td>${w.pid}</td>` +
        `<td>${esc(w.queues.join(", "))}</td><td>${w.concurrency}</td><td>${w.running}</td>` +
        `<td>${duration(since(w.last_heartbeat))} ago</td><td>${duration(since(w.started_at))}</td></tr>`,
    );
    const headers = ["Worker", "Host", "PID", "Queues", "Concurrency", "Running", "Last heartbeat",
      "Uptime"];
    return table("Workers seen within the last minute", headers, rows, "No live worker.");
  },
};

// The create form is rendered once per visit (controls), so a poll never wipes what the
// user typed; app.js sends it and shows the API's refusal in its alert.
function scheduleForm() {
  return (
    `<section aria-labelledby="new-schedule"><h2 id="new-schedule">New schedule</h2>` +
    `<form class="fields" id="schedule-form">` +
    `<label>Name <input name="name" required autocomplete="off"></label>` +
    `<label>Cron <input name="cron" required autocomplete="off" placeholder="*/15 * * * *" ` +
    `aria-describedby="cron-hint"></label>` +
    `<label>Task <input name="type" required autocomplete="off"></label>` +
    `<label class="wide">Payload (JSON) <textarea name="payload" rows="2" spellcheck="false">{}` +
    `</textarea></label>` +
    `<label>Queue <input name="queue" autocomplete="off" placeholder="the task's"></label>` +
    `<label>Time zone <input name="tz" value="UTC" autocomplete="off"></label>` +
    `<button type="submit">Create schedule</button>` +
    `<p class="error wide" id="schedule-error" role="alert" hidden></p></form>` +
    `<p class="hint" id="cron-hint">Cron: five fields (minute hour day month weekday), six ` +
    `with seconds first, or @hourly, @daily, @weekly, @monthly, @yearly.</p></section>`
  );
}

const scheduleLink = (s) =>
  `<a href="#/schedules/${encodeURIComponent(s.name)}">${esc(s.name)}</a>`;

// Without a queue of its own a schedule's jobs go to their task's default queue, which the
// API does not tell.
const scheduleQueue = (s) => esc(s.options.queue ?? "the task's");

function scheduleActions(s) {
  const label = (verb) => ` aria-label="${verb} ${esc(s.name)}"`;
  const toggle = s.paused
    ? button("Resume", "resume-schedule", { schedule: s.name }, label("Resume"))
    : button("Pause", "pause-schedule", { schedule: s.name }, label("Pause"));
  const remove = button("Delete", "delete-schedule", { schedule: s.name },
    `${label("Delete")} class="danger"`);
  return `${toggle} ${remove}`;
}

const pausedOrActive = (s) => status(s.paused ? "paused" : "active");

export const schedules = {
  title: "Schedules",
  controls: scheduleForm,
  async live() {
    const list = await api("/schedules");
    const rows = list.map(
      (s) =>
        `<tr data-schedule="${esc(s.name)}"><th scope="row">${scheduleLink(s)}</th>` +
        `<td><code>${esc(s.cron)}</code></td><td>${esc(s.tz)}</td><td>${esc(s.type)}</td>` +
        `<td>${scheduleQueue(s)}</td><td class="state">${pausedOrActive(s)}</td>` +
        `<td class="last">${time(unix(s.last_tick))}</td>` +
        `<td class="next">${time(unix(s.next_tick))}</td>` +
        `<td class="actions">${scheduleActions(s)}</td></tr>`,
    );
    const headers = ["Schedule", "Cron", "Time zone", "Task", "Queue", "State", "Last fire",
      "Next fire", "Actions"];
    return (
      table("Schedules, with their last and next fire", headers, rows, "No schedule yet.") +
      `<p class="hint">Schedules fire only while a scheduler runs: ` +
      `<code>taskmill scheduler</code>, or a worker started with <code>--scheduler</code>.</p>`
    );
  },
};

export const schedule = {
  title: "Schedule",
  async live(params) {
    const path = `/schedules/${encodeURIComponent(params.name)}`;
    const [s, produced] = await Promise.all([api(path), api(`${path}/jobs`)]);
    const facts = [
      ["Task", esc(s.type)], ["Cron", `<code>${esc(s.cron)}</code>`], ["Time zone", esc(s.tz)],
      ["Queue", scheduleQueue(s)], ["Source", s.source === "code" ? "code (app.periodic)" : "API"],
      ["Created", time(unix(s.created_at))], ["Last fire", time(unix(s.last_tick))],
      ["Next fire", time(unix(s.next_tick))],
      ["Catch-up", s.catch_up ? `missed ticks up to ${duration(s.catch_up)} old fire late`
        : "none: missed ticks are skipped"],
      ["Jitter", duration(s.jitter)],
    ].map(([k, v]) => `<dt>${k}</dt><dd>${v}</dd>`).join("");
    const rows = produced.jobs.map(
      (j) =>
        `<tr><td>${jobLink(j)}</td><td>${status(j.status)}</td><td>${time(j.created_at)}</td>` +
        `<td>${time(j.finished_at)}</td><td>${j.attempts}</td></tr>`,
    );
    return (
      `<h2 class="job-id">${esc(s.name)}</h2>` +
      `<dl class="facts"><dt>State</dt><dd id="schedule-state">${pausedOrActive(s)}</dd>` +
      `${facts}</dl>` +
      `<div class="actions">${scheduleActions(s)}</div>` +
      `<section><h3>Payload</h3>${json({ args: s.args, kwargs: s.payload })}</section>` +
      `<section><h3>Options</h3>${json(s.options)}</section>` +
      `<section><h3>Jobs</h3>` +
      table("The jobs of its latest ticks that are still stored, newest first",
        ["Id", "Status", "Created", "Finished", "Attempts"], rows,
        "No job yet: it has not fired, or its jobs were pruned.") +
      `</section>`
    );
  },
};
