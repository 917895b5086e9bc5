"""A job's states by name, as the job service stores and reports them and its clients read
them: the ``JobState`` values of the wire contract without their ``JOB_STATE_`` prefix."""

from __future__ import annotations

from smpc.v1 import jobs_pb2

STATE_NAMES = {v: k.removeprefix("JOB_STATE_").lower() for k, v in jobs_pb2.JobState.items()}
STATE_BY_NAME = {name: value for value, name in STATE_NAMES.items()}
TERMINAL = (
    jobs_pb2.JOB_STATE_SUCCEEDED, jobs_pb2.JOB_STATE_FAILED, jobs_pb2.JOB_STATE_CANCELLED, jobs_pb2.JOB_STATE_REFUSED,
)
"""The states a job ends in."""
TERMINAL_NAMES = frozenset(STATE_NAMES[s] for s in TERMINAL)
