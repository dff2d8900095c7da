"""/metrics with many queues: a bounded label set, no series of queues that are gone, and a
scrape that leaves the server free to answer meanwhile."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from taskmill import App
from taskmill.job import Job
from taskmill.metrics import MAX_QUEUES, OTHER, JobMetrics
from tests.server.conftest import created

QUEUES = 3000


#: The label cap and the scrape's thread are the server's, the same over every backend.
ON_MEMORY = pytest.mark.parametrize("url", ["memory"], indirect=True)


def queue_labels(text: str) -> dict[str, set[str]]:
    """Each family's values of the queue label."""
    return {
        family.name: {s.labels["queue"] for s in family.samples if "queue" in s.labels}
        for family in text_string_to_metric_families(text)
    }


def value(text: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    raise AssertionError(f"no {name} {labels}")


@ON_MEMORY
async def test_a_scrape_of_many_queues_leaves_health_answering(
    taskapp: App, client: httpx.AsyncClient
) -> None:
    backend = await taskapp.backend()
    for i in range(QUEUES):
        await backend.configure_queue(f"q{i:04}", {})
    scrape = asyncio.create_task(client.get("/metrics"))
    answered = 0
    while True:
        await asyncio.sleep(0)  # the scrape's turn, if it has anything to wait for
        if scrape.done():
            break
        assert (await client.get("/health")).json() == {"status": "ok"}
        answered += 1
    assert answered > 0, "/health never answered while /metrics was scraped"
    text = (await scrape).text
    for name, queues in queue_labels(text).items():
        assert len(queues) <= MAX_QUEUES + 1, name
    labelled = queue_labels(text)["taskmill_queue_jobs"]
    assert OTHER in labelled and "q0000" in labelled and "q2999" not in labelled
    assert value(text, "taskmill_queues_folded") == QUEUES - MAX_QUEUES


@ON_MEMORY
async def test_series_of_a_queue_gone_are_dropped(taskapp: App, client: httpx.AsyncClient) -> None:
    job = created(
        await client.post("/api/v1/jobs", json={"type": "add", "args": [1, 2], "queue": "gone"})
    )
    text = (await client.get("/metrics")).text
    assert value(text, "taskmill_jobs_enqueued_total", queue="gone", task="add") == 1
    assert (await client.delete(f"/api/v1/jobs/{job['id']}")).status_code == 204
    text = (await client.get("/metrics")).text
    assert all("gone" not in queues for queues in queue_labels(text).values())


def test_counters_past_the_cap_are_summed_under_other() -> None:
    metrics = JobMetrics(max_queues=2)
    metrics.job_enqueued([Job(task="t", queue=f"q{i}") for i in range(5)])
    counted = {
        s.labels["queue"]: s.value
        for family in metrics.collect()
        for s in family.samples
        if s.name == "taskmill_jobs_enqueued_total"
    }
    assert counted == {"q0": 1, "q1": 1, OTHER: 3}
