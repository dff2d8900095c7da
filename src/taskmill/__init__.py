"""taskmill: a fast, reliable distributed task queue for Python."""

from taskmill.app import App
from taskmill.errors import (
    BackendError,
    ConfigError,
    InvalidArgumentsError,
    JobCancelledError,
    JobError,
    JobFailedError,
    JobNotFoundError,
    JobStateError,
    JobTimeoutError,
    PayloadError,
    PermanentError,
    TaskmillError,
    UnknownTaskError,
)
from taskmill.job import Job, JobState, Priority
from taskmill.retry import RetryPolicy
from taskmill.settings import Settings
from taskmill.task import BoundTask, JobHandle, Task
from taskmill.worker import JobContext, Worker, current_job

__all__ = [
    "App",
    "BackendError",
    "BoundTask",
    "ConfigError",
    "InvalidArgumentsError",
    "Job",
    "JobCancelledError",
    "JobContext",
    "JobError",
    "JobFailedError",
    "JobHandle",
    "JobNotFoundError",
    "JobState",
    "JobStateError",
    "JobTimeoutError",
    "PayloadError",
    "PermanentError",
    "Priority",
    "RetryPolicy",
    "Settings",
    "Task",
    "TaskmillError",
    "UnknownTaskError",
    "Worker",
    "current_job",
]
