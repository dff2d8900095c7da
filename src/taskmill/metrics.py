"""Prometheus metrics, every name prefixed `taskmill_`.

Two sources. A process's own counters and histograms (`JobMetrics`): a worker counts the
attempts it runs, a server the jobs it accepts; each process serves its own (a worker with
`--metrics-port`, the server at /metrics), and Prometheus sums them across processes. And
the state of the backend (`backend_families`), read when scraped: queue depth, oldest due
job, running jobs, live workers; the same for every reader, so only the server serves it.

Several worker processes on one host each serve their own port rather than share
prometheus_client's multiprocess files: an update stays an in-memory add (the worker's hot
path runs ~10k jobs a second), no files of dead processes need sweeping, and a process's
numbers stay its own, distinguished by the `instance` label Prometheus adds.
"""

from __future__ import annotations

import bisect
import itertools
import time
from collections.abc import Callable, Iterable
from typing import Any

import prometheus_client
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.metrics_core import Metric

from taskmill.backends import Backend
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
    """What is counted of one (queue, task)."""

    __slots__ = ("counts", "run", "wait")

    def __init__(self) -> None:
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

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)
        self._series: dict[tuple[str, str], _Series] = {}
        self._running: Callable[[], int] | None = None

    def _of(self, job: Job) -> _Series:
        series = self._series.get((job.queue, job.task))
        if series is None:
            series = self._series[(job.queue, job.task)] = _Series()
        return series

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


async def backend_families(backend: Backend) -> list[Metric]:
    """The backend's state as metric families, read now."""
    infos = await backend.list_queues()
    workers = await backend.list_workers()
    now = time.time()
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
        "taskmill_queue_paused", "1 if the queue is paused.", labels=["queue"]
    )
    for info in infos:
        for priority, count in sorted(info.ready_by_priority.items()):
            depth.add_metric([info.name, str(priority)], count)
        age = 0.0 if info.oldest_pending is None else max(now - info.oldest_pending, 0.0)
        oldest.add_metric([info.name], age)
        for state, count in info.counts.items():
            jobs.add_metric([info.name, state], count)
        running.add_metric([info.name], info.counts[JobState.RUNNING.value])
        paused.add_metric([info.name], float(info.paused))
    live = GaugeMetricFamily("taskmill_workers_live", "Workers seen within the last minute.")
    live.add_metric([], len(workers))
    return [depth, oldest, jobs, running, paused, live]


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
