// The router, the poll that keeps the page live, and the actions behind the buttons.

import { api, ApiError, key } from "./api.js";
import { esc } from "./html.js";
import { overview } from "./overview.js";
import { dlq, job, jobs, queues, schedule, schedules, workers } from "./pages.js";

// Short polling: every page reads a few small documents, and SSE would hold a connection
// (and a backend reader) per open tab.
const POLL = 2000;
const PAGES = { "": overview, queues, jobs, dlq, schedules, workers };

const main = document.getElementById("main");
const notice = document.getElementById("notice");
// Dead jobs ticked on the dead-letter page, kept while the list is redrawn.
const selected = new Set();
let current = null;
let timer = null;
// Each poll() supersedes those before it: only the newest schedules the next one.
let polls = 0;

function route() {
  const [path, search] = location.hash.replace(/^#\/?/, "").split("?");
  const params = Object.fromEntries(new URLSearchParams(search ?? ""));
  const [name, id] = path.split("/").map(decodeURIComponent);
  if (name === "jobs" && id) return { page: job, params: { ...params, id }, nav: "jobs" };
  if (name === "schedules" && id) {
    return { page: schedule, params: { ...params, name: id }, nav: "schedules" };
  }
  return { page: PAGES[name] ?? overview, params, nav: name in PAGES ? name : "" };
}

function say(message, isError = false) {
  notice.textContent = message;
  notice.className = isError ? "error" : "";
  notice.hidden = !message;
}

function failure(error) {
  if (error instanceof ApiError && error.status === 403) {
    return "This key is read-only: changes need an admin key.";
  }
  return error.message;
}

// Redraws the live part only when it changed, and puts the focus back where it was (the
// same control, counted in order), so a keyboard user is not thrown out by a poll.
async function refresh() {
  const view = current;
  const live = document.getElementById("live");
  let html;
  try {
    html = await view.page.live(view.params, selected);
  } catch (error) {
    html = `<p class="error">Could not load: ${esc(failure(error))}</p>`;
  }
  if (view !== current || html === view.html) return;
  view.html = html;
  const controls = () => [...live.querySelectorAll("a, button, input, select, summary")];
  const focused = controls().indexOf(document.activeElement);
  const open = [...live.querySelectorAll("details")].map((d) => d.open);
  live.innerHTML = html;
  live.querySelectorAll("details").forEach((d, i) => (d.open = open[i] ?? false));
  if (focused >= 0) controls()[focused]?.focus();
}

async function poll() {
  clearTimeout(timer);
  const mine = ++polls;
  await refresh();
  if (mine === polls) timer = setTimeout(poll, POLL);
}

function show() {
  const { page, params, nav } = route();
  current = { page, params, html: null };
  document.title = `${page.title} · taskmill`;
  for (const link of document.querySelectorAll("header nav a")) {
    const target = link.getAttribute("href").replace(/^#\/?/, "");
    link.toggleAttribute("aria-current", target === nav);
  }
  const controls = page.controls ? page.controls(params) : "";
  main.innerHTML = `<h1>${esc(page.title)}</h1>${controls}<div id="live"><p>Loading…</p></div>`;
  poll();
}

// After a delete that leaves the page: pushState changes the route without a hashchange,
// whose handler would clear the notice the action is about to give.
function leave(hash) {
  if (location.hash === hash) return;
  history.pushState(null, "", hash);
  show();
}

const ACTIONS = {
  pause: (d) => api(`/queues/${encodeURIComponent(d.queue)}/pause`, { method: "POST" })
    .then(() => `Queue ${d.queue} paused.`),
  resume: (d) => api(`/queues/${encodeURIComponent(d.queue)}/resume`, { method: "POST" })
    .then(() => `Queue ${d.queue} resumed.`),
  cancel: (d) => api(`/jobs/${encodeURIComponent(d.job)}/cancel`, { method: "POST" })
    .then((j) => (j.status === "running" ? `Cancel requested for ${d.job}.` : `Job ${d.job} is ${j.status}.`)),
  retry: (d) => api(`/jobs/${encodeURIComponent(d.job)}/retry`, { method: "POST" })
    .then(() => `Job ${d.job} requeued.`),
  requeue: (d) => api(`/dlq/${encodeURIComponent(d.job)}/requeue`, { method: "POST" })
    .then(() => {
      selected.delete(d.job);
      return `Job ${d.job} requeued.`;
    }),
  delete: async (d) => {
    if (!confirm(`Delete job ${d.job} for good?`)) return null;
    await api(`/jobs/${encodeURIComponent(d.job)}`, { method: "DELETE" });
    leave("#/jobs");
    return `Job ${d.job} deleted.`;
  },
  "requeue-selected": async () => {
    if (!selected.size) return "Select dead jobs first.";
    const { count } = await api("/dlq/requeue", { method: "POST", body: { ids: [...selected] } });
    selected.clear();
    return `${count} job(s) requeued.`;
  },
  "requeue-all": async () => {
    const { count } = await api("/dlq/requeue", { method: "POST", body: { all: true } });
    selected.clear();
    return `${count} job(s) requeued.`;
  },
  "pause-schedule": (d) =>
    api(`/schedules/${encodeURIComponent(d.schedule)}/pause`, { method: "POST" })
      .then(() => `Schedule ${d.schedule} paused.`),
  "resume-schedule": (d) =>
    api(`/schedules/${encodeURIComponent(d.schedule)}/resume`, { method: "POST" })
      .then(() => `Schedule ${d.schedule} resumed.`),
  "delete-schedule": async (d) => {
    if (!confirm(`Delete schedule ${d.schedule}? The jobs it made are kept.`)) return null;
    await api(`/schedules/${encodeURIComponent(d.schedule)}`, { method: "DELETE" });
    leave("#/schedules");
    return `Schedule ${d.schedule} deleted.`;
  },
  purge: async () => {
    if (!confirm("Delete every dead job for good?")) return null;
    const { count } = await api("/dlq/purge", { method: "POST", body: {} });
    selected.clear();
    return `${count} dead job(s) purged.`;
  },
};

main.addEventListener("click", async (event) => {
  const target = event.target.closest("button[data-action]");
  if (!target) return;
  target.disabled = true;
  try {
    const message = await ACTIONS[target.dataset.action](target.dataset);
    if (message) say(message);
  } catch (error) {
    say(failure(error), true);
  } finally {
    target.disabled = false;
  }
  poll();
});

main.addEventListener("change", (event) => {
  const id = event.target.dataset?.pick;
  if (id === undefined) return;
  if (event.target.checked) selected.add(id);
  else selected.delete(id);
});

// The API's message names what it refused (a bad cron, an unknown zone or task...); it
// stays by the form, in its alert, until the next try.
async function createSchedule(form, data) {
  const alert = document.getElementById("schedule-error");
  const submit = form.querySelector('button[type="submit"]');
  const refuse = (why) => {
    alert.textContent = `Not created: ${why}`;
    alert.hidden = false;
  };
  let payload;
  try {
    payload = JSON.parse(data.payload.trim() || "{}");
  } catch (error) {
    refuse(`the payload is not JSON (${error.message}).`);
    return;
  }
  const body = {
    name: data.name.trim(), cron: data.cron.trim(), type: data.type.trim(), payload,
    tz: data.tz.trim() || "UTC",
  };
  if (data.queue.trim()) body.options = { queue: data.queue.trim() };
  submit.disabled = true;
  try {
    await api("/schedules", { method: "POST", body });
  } catch (error) {
    refuse(failure(error));
    return;
  } finally {
    submit.disabled = false;
  }
  alert.hidden = true;
  form.reset();
  say(`Schedule ${body.name} created.`);
  poll();
}

main.addEventListener("submit", (event) => {
  event.preventDefault();
  const data = Object.fromEntries(new FormData(event.target));
  if (event.target.id === "schedule-form") {
    createSchedule(event.target, data);
  } else if (event.target.id === "job-search") {
    location.hash = `#/jobs/${encodeURIComponent(data.id.trim())}`;
  } else {
    const kept = Object.entries(data).filter(([, v]) => v.trim());
    location.hash = `#/jobs${kept.length ? `?${new URLSearchParams(kept)}` : ""}`;
  }
});

// The hash is the route, so the skip link moves the focus itself instead of following #main.
document.querySelector(".skip").addEventListener("click", (event) => {
  event.preventDefault();
  main.focus();
});
document.getElementById("forget-key").addEventListener("click", (event) => {
  key.forget();
  event.target.hidden = true;
  show();
});
document.getElementById("forget-key").hidden = !key.get();

addEventListener("hashchange", () => {
  say("");
  show();
});
show();
