"""How a worker records the outcomes of its attempts: in batches, and one by one when the
backend refuses a batch, so that an outcome it cannot store never holds back the others.

A backend that is away (down, its connection lost, a lock not granted) is told from one
that answers and refuses (PostgreSQL refuses text holding a NUL character, say) by the
error the backend raises (BackendUnavailable, see away()). While it is away, every outcome
waits for the next try, with backoff. An outcome it refuses on its own is replaced by a
DEAD attempt whose error says that the outcome could not be stored, and why, in text that
can be: the handler ran, so retrying would run its side effects again, most likely to the
same unstorable end; from the dead-letter queue a person can look and requeue. A job for
which the backend refuses even that stand-in (its record may be unusable) is left to its
lease: the worker stops renewing it, and the backend's upkeep rescues it once it expires.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from taskmill.backends import Backend, Outcome
from taskmill.errors import BackendUnavailable
from taskmill.job import AttemptError, JobState

log = logging.getLogger("taskmill.worker")

#: The pause before a batch is tried again, while the backend takes no writes.
RETRY_DELAY = 0.5


class Recorder:
    """The outcomes a worker has yet to record, and the loop (run()) that records them.

    held: the worker's map of job id -> token, from which a job leaves once its outcome is
    recorded (the heartbeat renews the lease of every job in it until then)."""

    def __init__(self, worker_id: str, clock: Callable[[], float], held: dict[str, str]) -> None:
        self.worker_id = worker_id
        self.clock = clock
        self.held = held
        self.outcomes: list[Outcome] = []
        self._attempts: dict[str, int] = {}  # job id -> attempt, for a stand-in's error
        self._wake = asyncio.Event()
        self._closing = False

    def add(self, outcome: Outcome, attempt: int) -> None:
        self.outcomes.append(outcome)
        self._attempts[outcome.job_id] = attempt
        self._wake.set()

    def close(self) -> None:
        """run() returns once every outcome is recorded."""
        self._closing = True
        self._wake.set()

    async def run(self, backend: Backend) -> None:
        """Record outcomes in batches: those that finish during one write go in the next."""
        while not (self._closing and not self.outcomes):
            await self._wake.wait()
            self._wake.clear()
            try:
                await self.flush(backend)
            except Exception:
                log.exception("recording outcomes failed; will retry")
                await asyncio.sleep(RETRY_DELAY)
                self._wake.set()

    async def flush(self, backend: Backend) -> None:
        batch, self.outcomes = self.outcomes, []
        if not batch:
            return
        try:
            applied = await backend.finish(batch)
        except Exception as exc:
            if away(exc):
                self.outcomes[:0] = batch  # keep them for the next try
                raise
            # _one_by_one keeps those it does not record, whatever stops it.
            self._recorded(batch, await self._one_by_one(backend, batch, exc))
        except BaseException:
            self.outcomes[:0] = batch
            raise
        else:
            self._recorded(batch, applied)

    async def _one_by_one(
        self, backend: Backend, batch: list[Outcome], refusal: Exception
    ) -> list[bool | None]:
        applied: list[bool | None] = []
        try:
            for outcome in batch:
                applied.append(await self._alone(backend, outcome, refusal, len(batch) == 1))
        except BaseException:
            done = len(applied)
            self._recorded(batch[:done], applied)
            self.outcomes[:0] = batch[done:]
            raise
        return applied

    async def _alone(
        self, backend: Backend, outcome: Outcome, refusal: Exception, tried: bool
    ) -> bool | None:
        """Record one outcome (`tried`: the batch was that one, and `refusal` its error),
        else its stand-in; raise while the backend is away. None: the job is given up to
        its lease, the backend refusing even the stand-in."""
        if not tried:
            try:
                (applied,) = await backend.finish([outcome])
                return applied
            except Exception as exc:
                if away(exc):
                    raise
                refusal = exc
        try:
            (applied,) = await backend.finish([self.stand_in(outcome, refusal)])
        except Exception as exc:
            if away(exc):
                raise
            # No retry would do better. Its lease, no longer renewed, expires, and the
            # backend's upkeep rescues it as any job of a lost worker.
            log.exception(
                "job %s: neither its %s outcome nor a dead attempt in its place could be "
                "stored; it is left to its lease",
                outcome.job_id, outcome.state.value,
            )  # fmt: skip
            return None
        log.error(
            "job %s: its %s outcome could not be stored (%s); recorded as a dead attempt",
            outcome.job_id, outcome.state.value, storable(describe(refusal)),
        )  # fmt: skip
        return applied

    def stand_in(self, outcome: Outcome, refusal: Exception) -> Outcome:
        """The dead attempt recorded in place of an outcome the backend refused."""
        message = f"the {outcome.state.value} outcome could not be stored: {describe(refusal)}"
        original = outcome.error
        if original is not None:
            message += f"; the attempt's own error: {original.error}"
        attempt = self._attempts.get(outcome.job_id, original.attempt if original else 0)
        traceback = None if original is None else original.traceback
        error = AttemptError(
            attempt,
            storable(message),
            None if traceback is None else storable(traceback),
            self.worker_id,
            self.clock(),
        )
        return Outcome(outcome.job_id, outcome.token, JobState.DEAD, error=error)

    def _recorded(self, batch: Sequence[Outcome], applied: Sequence[bool | None]) -> None:
        """Forget the outcomes recorded (or given up: None); warn of those not applied."""
        for outcome, ok in zip(batch, applied, strict=True):
            self.held.pop(outcome.job_id, None)
            self._attempts.pop(outcome.job_id, None)
            if ok is False:
                log.warning("job %s: outcome not recorded, the lease was lost", outcome.job_id)


def away(exc: BaseException) -> bool:
    """Whether the error says the backend is away (BackendUnavailable: each backend tells
    its driver's errors apart), rather than that it refused."""
    return isinstance(exc, BackendUnavailable)


def storable(text: str) -> str:
    """`text` as any backend stores it: NUL characters and lone surrogates written as
    escapes (PostgreSQL refuses the one, UTF-8 has no form for the others)."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")


def describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
