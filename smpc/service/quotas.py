"""Per-identity quotas of a party's job service (``[limits]``): how many jobs one identity may
submit per minute, how many refusals it may collect per hour before its submissions wait, and
how many ``Watch`` streams it may hold open (and all identities together: at most three
quarters of ``limits.job_service_calls``, so that streams never take every job-service
thread and a requester can still submit, fetch or cancel while others watch).

Every decision here reads only the identity's own history at this party -- when it submitted,
which of its submissions were refused (answers it has received already), which streams it
holds -- and never any bank's data, so a quota refusal tells the requester nothing it did not
know. A refusal is ``QuotaExceeded`` naming the ``limits.*`` key; the service answers it with
RESOURCE_EXHAUSTED. Windows slide: a submission is refused while the identity has
``limit`` events within the last window, and admitted again once the oldest leaves it.

Capacity shared by everyone (``max_concurrent_jobs``, ``job_service_calls``) and the
requester's concurrent jobs are counted where those things live: the job manager and the
server's thread pools.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from smpc.errors import SmpcError
from smpc.service.config import Limits

MINUTE = 60.0
HOUR = 3600.0
WATCH_SHARE = 0.75  # of limits.job_service_calls, for Watch streams of all identities together


class QuotaExceeded(SmpcError):
    """A call went over one of the party's ``[limits]``; ``key`` names it. ``first`` is false
    for a repeat of the same identity's refusal under the same key before it was admitted
    again, so a flood of refused calls is audited once, not once per call."""

    def __init__(self, message: str, key: str, first: bool = True):
        super().__init__(message)
        self.key = key
        self.first = first


class _Window:
    """The times of one identity's events within the last ``span`` seconds (at most ``limit``:
    older ones can never decide a refusal again)."""

    def __init__(self, span: float, limit: int):
        self.span = span
        self.times: deque[float] = deque(maxlen=limit)

    def count(self, now: float) -> int:
        while self.times and self.times[0] <= now - self.span:
            self.times.popleft()
        return len(self.times)

    def wait(self, now: float) -> float:
        """Seconds until the oldest event leaves the window."""
        return max(0.0, self.times[0] + self.span - now) if self.times else 0.0


class Quotas:
    """The quotas of every identity calling this party; thread-safe."""

    def __init__(self, party: str, limits: Limits, clock: Callable[[], float] = time.monotonic):
        self.party = party
        self.limits = limits
        self.clock = clock
        self._lock = threading.Lock()
        self._submits: dict[str, _Window] = {}
        self._refusals: dict[str, _Window] = {}
        self._watches: dict[str, int] = {}
        self._watch_total = max(1, int(limits.job_service_calls * WATCH_SHARE))
        self._refusing: set[tuple[str, str]] = set()

    def _refuse(self, identity: str, key: str, message: str) -> QuotaExceeded:
        first = (identity, key) not in self._refusing
        self._refusing.add((identity, key))
        return QuotaExceeded(f"{self.party}: {message}", key, first)

    def _admitted(self, identity: str, *keys: str) -> None:
        for key in keys:
            self._refusing.discard((identity, key))

    @staticmethod
    def _window(table: dict[str, _Window], identity: str, span: float, limit: int) -> _Window:
        window = table.get(identity)
        if window is None:
            window = table[identity] = _Window(span, limit)
        return window

    def admit_submit(self, identity: str) -> None:
        """Count a submission of ``identity``, or raise ``QuotaExceeded`` (nothing counted):
        first ``limits.refusals_per_hour``, then ``limits.submits_per_minute``."""
        lim = self.limits
        with self._lock:
            now = self.clock()
            refusals = self._refusals.get(identity)
            if refusals is not None and refusals.count(now) >= lim.refusals_per_hour:
                minutes = math.ceil(refusals.wait(now) / 60)
                raise self._refuse(
                    identity, "limits.refusals_per_hour",
                    f"rate limit: {lim.refusals_per_hour} refusals within the last hour for {identity} "
                    f"(limits.refusals_per_hour = {lim.refusals_per_hour}); new jobs are refused for another "
                    f"{minutes} min",
                )
            submits = self._window(self._submits, identity, MINUTE, lim.submits_per_minute)
            if submits.count(now) >= lim.submits_per_minute:
                seconds = math.ceil(submits.wait(now))
                raise self._refuse(
                    identity, "limits.submits_per_minute",
                    f"rate limit: {identity} submitted {lim.submits_per_minute} jobs within the last minute "
                    f"(limits.submits_per_minute = {lim.submits_per_minute}); try again in {seconds} s",
                )
            submits.times.append(now)
            self._admitted(identity, "limits.refusals_per_hour", "limits.submits_per_minute")
            self._prune_locked(now)

    def record_refusal(self, identity: str) -> None:
        """``identity`` was answered with a refusal of its job (a policy or input refusal by
        any party; never a quota's own refusal, or the window would never pass)."""
        with self._lock:
            now = self.clock()
            window = self._window(self._refusals, identity, HOUR, self.limits.refusals_per_hour)
            window.count(now)
            window.times.append(now)

    def refusals(self, identity: str) -> int:
        """How many refusals of ``identity`` are within the last hour."""
        with self._lock:
            window = self._refusals.get(identity)
            return window.count(self.clock()) if window is not None else 0

    @contextmanager
    def watch_stream(self, identity: str) -> Iterator[None]:
        """Hold one of ``identity``'s ``limits.watch_streams_per_identity`` stream slots, or
        raise ``QuotaExceeded``."""
        limit = self.limits.watch_streams_per_identity
        with self._lock:
            held = self._watches.get(identity, 0)
            if held >= limit:
                raise self._refuse(
                    identity, "limits.watch_streams_per_identity",
                    f"{identity} has {held} Watch streams open here, the most allowed "
                    f"(limits.watch_streams_per_identity = {limit}); close one first",
                )
            total = sum(self._watches.values())
            if total >= self._watch_total:
                raise self._refuse(
                    identity, "limits.job_service_calls",
                    f"{total} Watch streams are open here, the most that leaves room for other calls within "
                    f"limits.job_service_calls = {self.limits.job_service_calls}; try again later",
                )
            self._watches[identity] = held + 1
            self._admitted(identity, "limits.watch_streams_per_identity", "limits.job_service_calls")
        try:
            yield
        finally:
            with self._lock:
                left = self._watches[identity] - 1
                if left:
                    self._watches[identity] = left
                else:
                    del self._watches[identity]

    def watch_streams(self, identity: str | None = None) -> int:
        """Open streams of ``identity``, or of everyone."""
        with self._lock:
            return sum(self._watches.values()) if identity is None else self._watches.get(identity, 0)

    def _prune_locked(self, now: float) -> None:
        """Forget identities with nothing left in their windows (their certificates are the
        consortium's, so this is tidiness, not a memory bound)."""
        for table in (self._submits, self._refusals):
            for identity in [i for i, w in table.items() if not w.count(now)]:
                del table[identity]
