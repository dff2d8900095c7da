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

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
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
LABELS = ("queue", "task")


@dataclass(slots=True)
class _Series:
    """The children of one (queue, task): looked up once, then updated without labels()."""

    started: Any
    succeeded: Any
    failed: Any
    retried: Any
    dead: Any
    run: Any
    wait: Any


class JobMetrics:
    """One process's job counters, in a registry of their own (not the global one, so that
    tests and several apps in one process do not collide)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)

        def counter(name: str, documentation: str) -> Counter:
            return Counter(f"taskmill_{name}", documentation, LABELS, registry=self.registry)

        self.enqueued = counter("jobs_enqueued", "Jobs accepted for running.")
        self.started = counter("jobs_started", "Attempts started.")
        self.succeeded = counter("jobs_succeeded", "Jobs that succeeded.")
        self.failed = counter("jobs_failed", "Attempts that failed (then retried, or dead).")
        self.retried = counter("jobs_retried", "Failed attempts that will be retried.")
        self.dead = counter("jobs_dead", "Jobs moved to the dead-letter queue.")
        r = self.registry
        self.run = Histogram(
            "taskmill_job_run_seconds",
            "How long attempts ran.",
            LABELS,
            buckets=RUN_BUCKETS,
            registry=r,
        )
        self.wait = Histogram(
            "taskmill_job_wait_seconds",
            "From when a job was due (its enqueue, unless delayed or retried) to its start.",
            LABELS,
            buckets=WAIT_BUCKETS,
            registry=r,
        )
        self._series: dict[tuple[str, str], _Series] = {}

    def _of(self, job: Job) -> _Series:
        series = self._series.get((job.queue, job.task))
        if series is None:
            labels = (job.queue, job.task)
            series = _Series(
                *(m.labels(*labels) for m in (self.started, self.succeeded, self.failed,
                                              self.retried, self.dead, self.run, self.wait))
            )  # fmt: skip
            self._series[(job.queue, job.task)] = series
        return series

    def job_enqueued(self, jobs: Iterable[Job]) -> None:
        for job in jobs:
            self.enqueued.labels(job.queue, job.task).inc()

    def job_started(self, job: Job) -> None:
        series = self._of(job)
        series.started.inc()
        if job.started_at is not None:
            series.wait.observe(max(job.started_at - job.run_at, 0.0))

    def job_ended(self, job: Job, state: JobState, seconds: float) -> None:
        """An attempt ended: SUCCEEDED, RETRYING, DEAD; others (cancelled, handed back) are
        only timed."""
        series = self._of(job)
        series.run.observe(seconds)
        if state is JobState.SUCCEEDED:
            series.succeeded.inc()
        elif state is JobState.RETRYING:
            series.failed.inc()
            series.retried.inc()
        elif state is JobState.DEAD:
            series.failed.inc()
            series.dead.inc()

    def running_gauge(self, count: Any) -> None:
        """Export this process's running jobs, read from `count()` at each scrape."""
        gauge = Gauge(
            "taskmill_worker_running_jobs", "Jobs this worker runs now.", registry=self.registry
        )
        gauge.set_function(count)


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
