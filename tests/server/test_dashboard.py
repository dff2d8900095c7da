"""The dashboard in a real headless Chromium (Debian's), against a real `taskmill server`
and worker: keys, queues, jobs, the dead-letter queue and schedules, seen and steered from
the page.

Each test saves a screenshot under tests/artifacts/dashboard/ (ignored by git). Every
request the page makes is recorded, and each test checks that all went to the server.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    Locator,
    Page,
    Playwright,
    Request,
    expect,
    sync_playwright,
)

from tests.conftest import missing
from tests.server.conftest import ADMIN, APP, READER, Process
from tests.server.test_http import running_server

CHROMIUM = os.environ.get("TASKMILL_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).parents[1] / "artifacts" / "dashboard"
#: Queues of the worker: each test steers one of its own.
QUEUES = ("default", "pausable", "doomed")
TIMEOUT = 15_000

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One server and one worker (with a scheduler in it, for the schedules made on the
    page) for the module's tests, on SQLite, with two keys."""
    root = tmp_path_factory.mktemp("dashboard")
    env = {
        **os.environ,
        "TASKMILL_URL": f"sqlite:///{root / 'taskmill.db'}",
        "TASKMILL_API_KEYS": f"{ADMIN}:admin,{READER}:read",
    }
    args = [*APP, "worker", "--queues", ",".join(QUEUES), "--scheduler"]
    worker = Process(args, root, env, "worker")
    try:
        with running_server(root, env) as url:
            yield url
    finally:
        assert worker.stop() == 0, worker.log.read_text()


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    if not Path(CHROMIUM).exists():
        missing(f"{CHROMIUM} is not installed (apt-get install chromium)")
    with sync_playwright() as instance:
        yield instance


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    # As root (CI, containers) Chromium only runs without its sandbox.
    instance = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
    yield instance
    instance.close()


class Session:
    """A browser context on the dashboard, recording every request the page makes."""

    def __init__(self, context: BrowserContext, base: str) -> None:
        self.context, self.base = context, base
        self.requests: list[Request] = []
        context.on("request", self.record)
        context.set_default_timeout(TIMEOUT)
        self.page: Page = context.new_page()

    def record(self, request: Request) -> None:
        self.requests.append(request)

    def open(self, route: str = "", key: str | None = ADMIN) -> Page:
        self.page.goto(f"{self.base}/#/{route}")
        if key is not None:
            self.enter_key(key)
        return self.page

    def enter_key(self, key: str, *, accepted: bool = True) -> None:
        dialog = self.page.get_by_role("dialog", name="API key")
        expect(dialog).to_be_visible()
        dialog.get_by_label("Key").fill(key)
        dialog.get_by_role("button", name="Use this key").click()
        if accepted:
            expect(dialog).to_be_hidden()

    def only_the_server(self) -> None:
        server = urlsplit(self.base).netloc
        elsewhere = [r.url for r in self.requests if urlsplit(r.url).netloc != server]
        assert not elsewhere, elsewhere
        assert any("/api/v1/" in r.url for r in self.requests)


@pytest.fixture
def session(browser: Browser, base: str, request: pytest.FixtureRequest) -> Iterator[Session]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    instance = Session(context, base)
    yield instance
    instance.page.screenshot(path=ARTIFACTS / f"{request.node.name}.png", full_page=True)
    context.close()
    instance.only_the_server()


def api(base: str) -> httpx.Client:
    return httpx.Client(base_url=f"{base}/api/v1", headers={"X-API-Key": ADMIN}, timeout=10)


def submit(base: str, jobs: list[dict[str, Any]]) -> list[str]:
    with api(base) as client:
        response = client.post("/jobs/batch", json={"jobs": jobs})
    assert response.status_code == 201, response.text
    return [job["id"] for job in response.json()["jobs"]]


def queue_row(page: Page, name: str) -> Locator:
    return page.locator(f'tr[data-queue="{name}"]')


def section(page: Page, heading: str) -> Locator:
    return page.locator("section").filter(has=page.get_by_role("heading", name=heading))


def test_the_page_asks_for_a_key_and_sends_it_on_every_call(session: Session, base: str) -> None:
    submit(base, [{"type": "echo", "payload": {"message": "hi"}}])
    page = session.open(key=None)
    session.enter_key("not-a-key", accepted=False)
    # Refused: asked again, and told why.
    expect(page.get_by_text("That key was refused")).to_be_visible()
    session.enter_key(READER)
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    expect(page.locator("#stat-workers")).to_have_text("1")
    page.screenshot(path=ARTIFACTS / "overview.png", full_page=True)
    calls = [r for r in session.requests if "/api/v1/" in r.url]
    assert calls and calls[0].headers.get("x-api-key") is None  # the first, before a key
    keyed = [r.headers.get("x-api-key") for r in calls[1:]]
    assert set(keyed) <= {"not-a-key", READER} and keyed[-1] == READER
    # The key stays for this tab: another page asks for none.
    page.get_by_role("link", name="Queues").click()
    expect(page.get_by_role("heading", name="Queues")).to_be_visible()
    # A read-only key changes nothing, and the page says why.
    page.get_by_role("button", name="Pause default").click()
    expect(page.locator("#notice")).to_have_text(
        "This key is read-only: changes need an admin key."
    )
    expect(queue_row(page, "default").locator(".state")).to_have_text("active")


def test_pause_and_resume_a_queue(session: Session, base: str) -> None:
    with api(base) as client:
        assert client.put("/queues/pausable", json={"weight": 2}).status_code == 200
    page = session.open("queues")
    # The skip link takes the keyboard to the content and leaves the route as it was.
    page.get_by_role("link", name="Skip to content").focus()
    page.keyboard.press("Enter")
    expect(page.locator("#main")).to_be_focused()
    assert page.url.endswith("#/queues")
    row = queue_row(page, "pausable")
    row.get_by_role("button", name="Pause pausable").click()
    expect(row.locator(".state")).to_have_text("paused")
    expect(page.locator("#notice")).to_have_text("Queue pausable paused.")
    submit(base, [{"type": "echo", "payload": {"message": str(i)}, "queue": "pausable"}
                  for i in range(3)])  # fmt: skip
    # The worker takes nothing from a paused queue: the three wait, and the page shows it.
    expect(row.locator(".n-pending")).to_have_text("3")
    expect(row.locator(".n-succeeded")).to_have_text("0")
    page.screenshot(path=ARTIFACTS / "queues-paused.png")
    # Buttons are real buttons: the keyboard works them.
    row.get_by_role("button", name="Resume pausable").press("Enter")
    expect(row.locator(".state")).to_have_text("active")
    expect(row.locator(".n-succeeded")).to_have_text("3")
    expect(row.locator(".n-pending")).to_have_text("0")
    # Drill into the queue's jobs.
    row.get_by_role("link", name="pausable").click()
    expect(page.locator("tbody tr")).to_have_count(3)
    expect(page.get_by_label("Queue")).to_have_value("pausable")


def test_cancel_a_running_job(session: Session, base: str) -> None:
    (job_id,) = submit(base, [{"type": "sleep", "payload": {"seconds": 60}}])
    page = session.open(f"jobs/{job_id}")
    status = page.locator("#job-status")
    expect(status).to_contain_text("running")
    # The handler reports progress as it sleeps; the bar follows it.
    expect(page.locator("#job-progress")).not_to_have_attribute("value", "0")
    page.get_by_role("button", name="Cancel").click()
    expect(status).to_contain_text("cancelled")
    expect(page.get_by_role("button", name="Cancel")).to_be_disabled()
    # On a phone the page fits the screen's width (wide tables scroll inside their box).
    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.screenshot(path=ARTIFACTS / "job-phone.png", full_page=True)
    page.set_viewport_size({"width": 1280, "height": 860})
    # The jobs list, filtered by status, finds it there.
    page.get_by_role("link", name="Jobs", exact=True).click()
    page.get_by_label("Status").select_option("cancelled")
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_role("link", name=job_id)).to_be_visible()


def test_requeue_from_the_dead_letter_queue(session: Session, base: str) -> None:
    doomed = {"type": "math", "payload": {"operation": "nope", "a": 1, "b": 2}, "queue": "doomed"}
    ids = submit(base, [doomed] * 4)
    page = session.open("dlq")
    rows = page.locator("tbody tr")
    expect(rows).to_have_count(4)
    expect(rows.first.locator("td.error")).to_contain_text("unknown operation")
    # Requeued jobs wait in a paused queue instead of dying again at once.
    with api(base) as client:
        assert client.post("/queues/doomed/pause").status_code == 200
    page.get_by_role("button", name=f"Requeue {ids[0]}").click()
    expect(rows).to_have_count(3)
    page.get_by_label(f"Select {ids[1]}").check()
    page.get_by_label(f"Select {ids[2]}").check()
    page.get_by_role("button", name="Requeue selected").click()
    expect(page.locator("#notice")).to_have_text("2 job(s) requeued.")
    expect(rows).to_have_count(1)
    page.get_by_role("link", name="Overview", exact=True).click()
    expect(page.locator("#stat-dead")).to_have_text("1")
    expect(page.locator("#stat-pending")).to_have_text("3")
    page.screenshot(path=ARTIFACTS / "overview-with-jobs.png", full_page=True)
    page.get_by_role("link", name="Dead-letter", exact=True).click()
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Purge all").click()
    expect(page.locator("#notice")).to_have_text("1 dead job(s) purged.")
    expect(page.get_by_text("The dead-letter queue is empty.")).to_be_visible()
    # The job page of a job that died: its attempt, error and traceback.
    with api(base) as client:
        assert client.post("/queues/doomed/resume").status_code == 200
    page.goto(f"{base}/#/jobs/{ids[0]}")
    expect(page.locator("#job-status")).to_contain_text("dead")
    # It died twice, before and after its requeue: both attempts are there.
    attempts = page.locator("section", has_text="Attempts").locator("tbody tr")
    expect(attempts).to_have_count(2)
    attempts.last.get_by_text("Traceback", exact=True).click()
    expect(attempts.last.locator("details pre")).to_contain_text("PermanentError")
    page.screenshot(path=ARTIFACTS / "dead-job.png", full_page=True)


def test_create_pause_resume_and_delete_a_schedule(session: Session, base: str) -> None:
    page = session.open("schedules")
    form = page.locator("#schedule-form")
    form.get_by_label("Name").fill("every-second")
    form.get_by_label("Cron").fill("61 * * * *")
    form.get_by_label("Task").fill("echo")
    form.get_by_label("Payload (JSON)").fill('{"message": "tick"}')
    form.get_by_label("Queue").fill("default")
    # The API refuses a bad cron expression, and the form says why in the API's words.
    form.get_by_role("button", name="Create schedule").click()
    expect(form.get_by_role("alert")).to_contain_text("Not created: minute 61")
    page.screenshot(path=ARTIFACTS / "schedules-refused.png")
    expect(page.get_by_text("No schedule yet.")).to_be_visible()
    # A payload that is not JSON is caught before any request is sent.
    form.get_by_label("Payload (JSON)").fill("{message: tick}")
    form.get_by_role("button", name="Create schedule").click()
    expect(form.get_by_role("alert")).to_contain_text("Not created: the payload is not JSON")
    creates = [r for r in session.requests if r.method == "POST" and "/schedules" in r.url]
    assert len(creates) == 1
    form.get_by_label("Payload (JSON)").fill('{"message": "tick"}')
    # Six fields: every second. The keyboard submits the form.
    form.get_by_label("Cron").fill("* * * * * *")
    form.get_by_label("Cron").press("Enter")
    expect(page.locator("#notice")).to_have_text("Schedule every-second created.")
    expect(form.get_by_role("alert")).to_be_hidden()
    expect(form.get_by_label("Name")).to_have_value("")
    row = page.locator('tr[data-schedule="every-second"]')
    expect(row.locator(".state")).to_have_text("active")
    expect(row.locator(".next time")).to_have_attribute("datetime", re.compile(r"^\d{4}-"))
    # The worker's scheduler fires it: the last fire shows up.
    expect(row.locator(".last time")).to_be_visible()
    row.get_by_role("button", name="Pause every-second").click()
    expect(row.locator(".state")).to_have_text("paused")
    expect(row.locator(".next")).to_have_text("—")
    expect(page.locator("#notice")).to_have_text("Schedule every-second paused.")
    row.get_by_role("button", name="Resume every-second").press("Enter")
    expect(row.locator(".state")).to_have_text("active")
    expect(row.locator(".next time")).to_be_visible()
    page.screenshot(path=ARTIFACTS / "schedules.png", full_page=True)
    # On a phone the page, form included, fits the screen's width.
    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.screenshot(path=ARTIFACTS / "schedules-phone.png", full_page=True)
    page.set_viewport_size({"width": 1280, "height": 860})
    # Its page: the jobs it produced, each a link to the job's page.
    row.get_by_role("link", name="every-second").click()
    expect(page.get_by_role("heading", name="every-second")).to_be_visible()
    expect(page.locator("#schedule-state")).to_have_text("active")
    produced = section(page, "Jobs").locator("tbody tr")
    expect(produced.first).to_contain_text("succeeded")
    page.screenshot(path=ARTIFACTS / "schedule.png", full_page=True)
    page.emulate_media(color_scheme="dark")
    page.screenshot(path=ARTIFACTS / "schedule-dark.png", full_page=True)
    page.emulate_media(color_scheme="light")
    link = produced.first.get_by_role("link")
    job_id = link.inner_text()
    assert job_id.startswith("schedule:every-second:")
    link.click()
    expect(page.locator("#job-status")).to_contain_text("succeeded")
    expect(section(page, "Result")).to_contain_text('"tick"')
    # Deleted from its own page: back to the list, which says so.
    page.go_back()
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete every-second").click()
    expect(page.locator("#notice")).to_have_text("Schedule every-second deleted.")
    expect(page.get_by_text("No schedule yet.")).to_be_visible()
    assert page.url.endswith("#/schedules")
    with api(base) as client:
        assert client.get("/schedules/every-second").status_code == 404
        # The jobs it made stay.
        assert client.get(f"/jobs/{job_id}").status_code == 200


def test_served_files_need_no_key_and_allow_no_other_host(base: str) -> None:
    page = httpx.get(f"{base}/")
    assert page.status_code == 200 and "taskmill" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert httpx.get(f"{base}/dashboard/app.js").status_code == 200
    assert httpx.get(f"{base}/api/v1/stats").status_code == 401
    assert httpx.get(f"{base}/dashboard/nothing.js").status_code == 404
    assert httpx.post(f"{base}/dashboard/app.js").status_code == 401
