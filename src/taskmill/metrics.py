"""Prometheus metrics, every name prefixed `taskmill_`.

Two sources. A process's own counters and histograms (`JobMetrics`): a worker counts the
attempts it runs, a server the jobs it accepts; each process serves its own (a worker with
`--metrics-port`, the server at /metrics), and Prometheus sums them across processes. And
the state of the backend (`server_families`), read when scraped: queue depth, oldest due
job, running jobs, live workers; the same for every reader, so only the server serves it.

Several worker processes on one host each serve their own port rather than share
prometheus_client's multiprocess files: an update stays an in-memory add (the worker's hot
path runs ~10k jobs a second), no files of dead processes need sweeping, and a process's
numbers stay its own, distinguished by the `instance` label Prometheus adds.

Queue names come from clients, so the label sets are bounded: at most `max_queues` queues
(MAX_QUEUES by default) have series of their own, the others are summed under the queue
label OTHER; the server drops the series of queues the backend no longer holds. A scrape
reads the backend on the event loop's terms (it awaits) and builds and renders the
families in a thread (`server_families`, then `exposition` there), so that a large one
never holds up the server's other requests.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import time
from collections.abc import Callable, Iterable
from typing import Any

import prometheus_client
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.metrics_core import Metric

from taskmill.backends import Backend, QueueInfo, WorkerInfo
from taskmill.job import Job, JobState

# `_created` series double what is exposed and are rarely used; this is process-wide.
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]

CONTENT_TYPE = prometheus_client.CONTENT_TYPE_LATEST
#: Seconds; from sub-millisecond handlers to hour-long ones.
RUN_BUCKETS = (
    0.001,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
    300,
    1800,
    3600,
)
WAIT_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800)
LABELS = ["queue", "task"]
#: Queues with series of their own; past them, queues are summed under OTHER.
MAX_QUEUES = 1000
#: The queue label of the queues past the cap, summed: outside the alphabet of queue
#: names (job.QUEUE_PATTERN), so no queue's own label.
OTHER = "(other)"


#: The counters of a (queue, task), in the order of _Series.counts.
COUNTERS = (
    ("jobs_enqueued", "Jobs accepted for running."),
    ("jobs_started", "Attempts started."),
    ("jobs_succeeded", "Jobs that succeeded."),
    ("jobs_failed", "Attempts that failed (then retried, or dead)."),
    ("jobs_retried", "Failed attempts that will be retried."),
    ("jobs_dead", "Jobs moved to the dead-letter queue."),
)
ENQUEUED, STARTED, SUCCEEDED, FAILED, RETRIED, DEAD = range(len(COUNTERS))


class _Histogram:
    """Bucket counts (not cumulative; the last is +Inf) and their sum."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value

    def buckets(self) -> list[tuple[str, float]]:
        cumulative = list(itertools.accumulate(self.counts))
        labels = [str(float(bound)) for bound in self.bounds] + ["+Inf"]
        return list(zip(labels, cumulative, strict=True))


class _Series:
    """What is counted of one (queue, task), since scrape `born`."""

    __slots__ = ("born", "counts", "run", "wait")

    def __init__(self, born: int) -> None:
        self.born = born
        self.counts = [0] * len(COUNTERS)
        self.run = _Histogram(RUN_BUCKETS)
        self.wait = _Histogram(WAIT_BUCKETS)


class JobMetrics:
    """One process's job counters, served through `registry` (a registry of its own, not
    the global one, so that tests and several apps in one process do not collide).

    Updates are plain additions to lists: prometheus_client's own metrics take a lock and
    walk their buckets per update, a cost a worker would pay for every job (see
    docs/performance.md). They become metric families only when scraped; reading the
    numbers from the scraping thread needs no lock, since each is one int or float.
    """

    def __init__(self, max_queues: int = MAX_QUEUES) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)
        self.max_queues = max_queues
        self._series: dict[tuple[str, str], _Series] = {}
        #: Queues with series of their own, and how many each has.
        self._queues: dict[str, int] = {}
        self._running: Callable[[], int] | None = None
        self._scrapes = 0

    def _of(self, job: Job) -> _Series:
        series = self._series.get((job.queue, job.task))
        if series is None:
            series = self._new(job.queue, job.task)
        return series

    def _new(self, queue: str, task: str) -> _Series:
        if queue not in self._queues and len(self._queues) >= self.max_queues:
            queue = OTHER
            series = self._series.get((queue, task))
            if series is not None:
                return series
        self._queues[queue] = self._queues.get(queue, 0) + 1
        series = self._series[(queue, task)] = _Series(self._scrapes)
        return series

    def mark(self) -> int:
        """Starts a read of the backend's queues: see forget_queues."""
        self._scrapes += 1
        return self._scrapes

    def forget_queues(self, held: set[str], mark: int) -> None:
        """Drop the series of queues not in `held` (the backend's queues, read after
        `mark`), except those begun since: their queue may be newer than the read."""
        for key, series in list(self._series.items()):
            queue = key[0]
            if queue not in held and queue != OTHER and series.born < mark:
                del self._series[key]
                self._queues[queue] -= 1
                if not self._queues[queue]:
                    del self._queues[queue]

    def job_enqueued(self, jobs: Iterable[Job]) -> None:
        for job in jobs:
            self._of(job).counts[ENQUEUED] += 1

    def job_started(self, job: Job) -> None:
        series = self._of(job)
        series.counts[STARTED] += 1
        if job.started_at is not None:
            series.wait.observe(max(job.started_at - job.run_at, 0.0))

    def job_ended(self, job: Job, state: JobState, seconds: float) -> None:
        """An attempt ended: SUCCEEDED, RETRYING, DEAD; others (cancelled, handed back) are
        only timed."""
        series = self._of(job)
        series.run.observe(seconds)
        counts = series.counts
        if state is JobState.SUCCEEDED:
            counts[SUCCEEDED] += 1
        elif state is JobState.RETRYING:
            counts[FAILED] += 1
            counts[RETRIED] += 1
        elif state is JobState.DEAD:
            counts[FAILED] += 1
            counts[DEAD] += 1

    def running_gauge(self, count: Callable[[], int]) -> None:
        """Export this process's running jobs, read from `count()` at each scrape."""
        self._running = count

    def collect(self) -> list[Metric]:
        series = list(self._series.items())
        families: list[Metric] = []
        for i, (name, documentation) in enumerate(COUNTERS):
            family = CounterMetricFamily(f"taskmill_{name}", documentation, labels=LABELS)
            for labels, one in series:
                family.add_metric(labels, one.counts[i])
            families.append(family)
        for name, documentation, attribute in (
            ("job_run_seconds", "How long attempts ran.", "run"),
            ("job_wait_seconds", "From when a job was due (its enqueue, unless delayed or "
             "retried) to its start.", "wait"),
        ):  # fmt: skip
            histogram = HistogramMetricFamily(f"taskmill_{name}", documentation, labels=LABELS)
            for labels, one in series:
                observed: _Histogram = getattr(one, attribute)
                histogram.add_metric(labels, observed.buckets(), observed.total)
            families.append(histogram)
        if self._running is not None:
            gauge = GaugeMetricFamily("taskmill_worker_running_jobs", "Jobs this worker runs now.")
            gauge.add_metric([], self._running())
            families.append(gauge)
        return families


async def server_families(
    backend: Backend, metrics: JobMetrics, max_queues: int = MAX_QUEUES
) -> list[Metric]:
    """What the server's /metrics shows: the backend's state, read now, and the server's
    own counters, without the series of queues the backend no longer holds. Built in a
    thread: for many queues it is long work."""
    mark = metrics.mark()
    infos, workers = await backend.list_queues(), await backend.list_workers()
    metrics.forget_queues({info.name for info in infos}, mark)
    now = time.time()

    def build() -> list[Metric]:
        return [*_backend_families(infos, workers, now, max_queues), *metrics.collect()]

    return await asyncio.to_thread(build)


def _backend_families(
    infos: list[QueueInfo], workers: list[WorkerInfo], now: float, max_queues: int
) -> list[Metric]:
    rows, folded = _fold(infos, max_queues)
    depth = GaugeMetricFamily(
        "taskmill_queue_depth", "Jobs due now, waiting for a worker.", labels=["queue", "priority"]
    )
    oldest = GaugeMetricFamily(
        "taskmill_queue_oldest_pending_seconds", "Age of the oldest job due now.", labels=["queue"]
    )
    jobs = GaugeMetricFamily(
        "taskmill_queue_jobs", "Jobs stored, per state.", labels=["queue", "state"]
    )
    running = GaugeMetricFamily("taskmill_jobs_running", "Jobs running now.", labels=["queue"])
    paused = GaugeMetricFamily(
        "taskmill_queue_paused",
        f"1 if the queue is paused ({OTHER}: how many are).",
        labels=["queue"],
    )
    for info, paused_count in rows:
        for priority, count in sorted(info.ready_by_priority.items()):
            depth.add_metric([info.name, str(priority)], count)
        age = 0.0 if info.oldest_pending is None else max(now - info.oldest_pending, 0.0)
        oldest.add_metric([info.name], age)
        for state, count in info.counts.items():
            jobs.add_metric([info.name, state], count)
        running.add_metric([info.name], info.counts[JobState.RUNNING.value])
        paused.add_metric([info.name], paused_count)
    live = GaugeMetricFamily("taskmill_workers_live", "Workers seen within the last minute.")
    live.add_metric([], len(workers))
    past = GaugeMetricFamily(
        "taskmill_queues_folded", f"Queues past the cap, summed under queue={OTHER!r}."
    )
    past.add_metric([], folded)
    return [depth, oldest, jobs, running, paused, live, past]


def _fold(infos: list[QueueInfo], max_queues: int) -> tuple[list[tuple[QueueInfo, float]], int]:
    """Each queue with how many of it are paused (0 or 1): the `max_queues` holding the
    most jobs, then the others summed as one named OTHER; and how many were summed. The
    rank by jobs keeps the busy queues labelled; a tie goes by name, so that the labelled
    set does not change from one scrape to the next while nothing does."""
    if len(infos) <= max_queues:
        return [(info, float(info.paused)) for info in infos], 0
    ranked = sorted(infos, key=lambda info: (-sum(info.counts.values()), info.name))
    kept, rest = ranked[:max_queues], ranked[max_queues:]
    other = QueueInfo(OTHER)
    pending = [info.oldest_pending for info in rest if info.oldest_pending is not None]
    other.oldest_pending = min(pending, default=None)
    for info in rest:
        for state, count in info.counts.items():
            other.counts[state] = other.counts.get(state, 0) + count
        for priority, count in info.ready_by_priority.items():
            other.ready_by_priority[priority] = other.ready_by_priority.get(priority, 0) + count
    rows = [(info, float(info.paused)) for info in sorted(kept, key=lambda info: info.name)]
    return [*rows, (other, float(sum(info.paused for info in rest)))], len(rest)


class _Families:
    """What generate_latest() reads: anything with collect()."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families


def exposition(families: list[Metric]) -> bytes:
    """The Prometheus text format of these families."""
    return generate_latest(_Families(families))


def as_json(families: list[Metric]) -> list[dict[str, Any]]:
    return [
        {
            "name": family.name,
            "type": family.type,
            "help": family.documentation,
            "samples": [
                {"name": s.name, "labels": s.labels, "value": s.value} for s in family.samples
            ],
        }
        for family in families
    ]
