"""taskmill's one exception tree: callers catch `TaskmillError` or one of its children."""

from __future__ import annotations


class TaskmillError(Exception):
    """Base class of every error taskmill raises on purpose."""


class ConfigError(TaskmillError):
    """A setting, URL or option is invalid."""


class BackendError(TaskmillError):
    """The backend could not be reached or refused the operation."""


class BackendUnavailable(BackendError):
    """The backend could not be reached (down, restarting, its connection lost, a lock not
    granted in time): the same call may succeed later, where a plain BackendError is a
    refusal that would be repeated."""


class JobError(TaskmillError):
    """A job could not be enqueued as asked; nothing was stored."""


class UnknownTaskError(JobError):
    """No task of that name is registered."""

    def __init__(self, name: str, known: list[str]) -> None:
        self.name = name
        self.known = sorted(known)
        super().__init__(f"unknown task {name!r}; known tasks: {', '.join(self.known) or '(none)'}")


class PayloadError(JobError):
    """The payload cannot be encoded, decoded, or is larger than the limit."""


class InvalidArgumentsError(JobError):
    """The arguments do not fit the handler's signature."""


class ScheduleError(TaskmillError):
    """A schedule is invalid (cron expression, time zone, options); nothing was stored."""


class ScheduleNotFoundError(TaskmillError):
    """No schedule has that name."""


class JobNotFoundError(TaskmillError):
    """No job has that id (it never existed or was pruned)."""


class JobStateError(TaskmillError):
    """The job is in a state that does not allow what was asked (retry a job that is not
    dead, delete a running one)."""

    def __init__(self, message: str, state: str) -> None:
        self.state = state
        super().__init__(message)


class JobFailedError(TaskmillError):
    """Raised by `result()` when the job ended without a result."""

    def __init__(self, job_id: str, state: str, error: str | None) -> None:
        self.job_id = job_id
        self.state = state
        self.error = error
        super().__init__(f"job {job_id} ended {state}" + (f": {error}" if error else ""))


class JobTimeoutError(TaskmillError):
    """Raised when a handler runs past its timeout, or `result()` waits past its own."""


class PermanentError(TaskmillError):
    """Raise from a handler to fail the job at once, skipping the remaining retries."""


class JobCancelledError(TaskmillError):
    """Raised inside a sync handler by `check_cancelled()` once the job's cancellation was asked."""
