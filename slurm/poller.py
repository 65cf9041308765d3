"""One shared poller per cluster: a single squeue call refreshes every tracked job.

Kernels never call squeue themselves. They track their job here and read the
cached state, so a gateway with a hundred kernels still queries the controller
once per interval. The poller queries more often while any job is launching or
ending, and backs off while the controller does not respond.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Callable

from .client import SlurmClient, SlurmError
from .jobs import JobInfo

log = logging.getLogger(__name__)

# The state of a job that is in neither squeue nor accounting: it has ended, but how is unknown.
LOST_STATE = "UNKNOWN"


class JobPoller:
    """Refreshes the state of tracked jobs in a background thread.

    ``interval`` (seconds) applies while every tracked job is steady;
    ``fast_interval`` while any job is marked urgent (launching, being
    cancelled). After a failed squeue call the wait doubles, up to
    ``max_backoff``, and the last known states stay in place: an
    unreachable controller never makes a job look ended.

    ``query_count`` counts the squeue calls that refresh tracked jobs,
    ``position_query_count`` the extra calls for queue positions (at most
    one per interval, only while a tracked job pends), and
    ``failure_count`` the failed refreshes, for tests and monitoring.
    """

    _shared: dict[tuple, "JobPoller"] = {}
    _shared_lock = threading.Lock()

    def __init__(
        self,
        client: SlurmClient,
        interval: float = 5.0,
        fast_interval: float = 0.25,
        max_backoff: float = 60.0,
    ):
        self.client = client
        self.interval = interval
        self.fast_interval = fast_interval
        self.max_backoff = max_backoff
        self.query_count = 0
        self.position_query_count = 0
        self.failure_count = 0
        self.consecutive_failures = 0
        self.last_error: str | None = None
        self._jobs: dict[str, JobInfo | None] = {}
        self._positions: dict[str, int] = {}
        self._intervals: dict[str, tuple[float, float]] = {}
        self._urgent: set[str] = set()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def shared(cls, client: SlurmClient, **settings) -> "JobPoller":
        """Return the process-wide poller for the cluster ``client`` reaches.

        ``settings`` apply only when this call creates the poller.
        """
        with cls._shared_lock:
            poller = cls._shared.get(client.key)
            if poller is None:
                poller = cls(client, **settings)
                cls._shared[client.key] = poller
            return poller

    def track(
        self, job_id: str, urgent: bool = True, interval: float | None = None, fast_interval: float | None = None
    ) -> None:
        """Start refreshing ``job_id``; ``urgent`` polls at the fast interval.

        ``interval`` and ``fast_interval`` set this job's own wishes; the
        poller uses the shortest wish among the tracked jobs.
        """
        with self._lock:
            self._jobs.setdefault(job_id, None)
            self._intervals[job_id] = (interval or self.interval, fast_interval or self.fast_interval)
            if urgent:
                self._urgent.add(job_id)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="slurmgate-poller", daemon=True)
                self._thread.start()
        self._wake.set()

    def set_urgent(self, job_id: str, urgent: bool) -> None:
        """Poll at the fast interval while ``urgent`` is true for any job."""
        with self._lock:
            if urgent:
                self._urgent.add(job_id)
            else:
                self._urgent.discard(job_id)
        if urgent:
            self._wake.set()

    def untrack(self, job_id: str) -> None:
        """Stop refreshing ``job_id`` and forget its state."""
        with self._lock:
            self._jobs.pop(job_id, None)
            self._intervals.pop(job_id, None)
            self._urgent.discard(job_id)

    def get(self, job_id: str) -> JobInfo | None:
        """Return the last known state, or ``None`` before the first successful squeue call."""
        with self._lock:
            return self._jobs.get(job_id)

    def tracked(self) -> list[str]:
        """Return the ids of the tracked jobs."""
        with self._lock:
            return list(self._jobs)

    def refresh(self) -> None:
        """Ask for a poll now instead of at the end of the current wait."""
        self._wake.set()

    def poll_once(self) -> None:
        """Refresh every tracked job with one squeue call (and accounting for vanished ones)."""
        with self._lock:
            job_ids = list(self._jobs)
        if not job_ids:
            return
        self.query_count += 1
        try:
            found = self.client.query(job_ids)
        except (SlurmError, OSError) as error:
            self._record_failure(error)
            return
        if self.consecutive_failures:
            log.info("squeue works again after %d failed calls", self.consecutive_failures)
        self.consecutive_failures = 0
        self.last_error = None
        for job_id in job_ids:
            if job_id not in found:
                found[job_id] = self._find_ended(job_id)
        with self._lock:
            for job_id, info in found.items():
                if job_id in self._jobs:
                    previous = self._jobs[job_id]
                    self._jobs[job_id] = info
                    if info is not None and info.has_ended and (previous is None or not previous.has_ended):
                        self._urgent.discard(job_id)
        self._update_positions([info for info in found.values() if info is not None and info.is_pending])

    def _update_positions(self, pending: list[JobInfo]) -> None:
        """Rank each tracked pending job among all pending jobs of its partition.

        Costs one more squeue call per interval, and only while a tracked job pends.
        """
        positions: dict[str, int] = {}
        if pending:
            self.position_query_count += 1
            try:
                queue = self.client.pending_queue(sorted({job.partition for job in pending}))
            except (SlurmError, OSError) as error:
                log.debug("listing pending jobs for queue positions failed: %s", error)
                queue = {}
            for job in pending:
                ranked = queue.get(job.partition, [])
                if job.job_id in ranked:
                    positions[job.job_id] = ranked.index(job.job_id) + 1
        with self._lock:
            self._positions = positions

    def queue_position(self, job_id: str) -> int | None:
        """Return the job's 1-based place among pending jobs in its partition, if it pends."""
        with self._lock:
            return self._positions.get(job_id)

    def _find_ended(self, job_id: str) -> JobInfo:
        previous = self.get(job_id)
        if previous is not None and previous.has_ended:
            return previous
        try:
            record = self.client.accounting(job_id)
        except (SlurmError, OSError) as error:
            log.debug("accounting lookup of job %s failed: %s", job_id, error)
            record = None
        if record is not None:
            return record
        return JobInfo(job_id, LOST_STATE, reason="slurmctld no longer knows the job and accounting has no record of it")

    def _record_failure(self, error: Exception) -> None:
        self.failure_count += 1
        self.consecutive_failures += 1
        self.last_error = str(error)
        if self.consecutive_failures == 1:
            log.warning("squeue failed; keeping the last known job states and retrying with backoff: %s", error)
        elif self.consecutive_failures % 20 == 0:
            log.warning("squeue has failed %d times in a row: %s", self.consecutive_failures, error)

    def _next_wait(self) -> float:
        with self._lock:
            if self._urgent:
                base = min(self._intervals.get(job_id, (self.interval, self.fast_interval))[1] for job_id in self._urgent)
            else:
                base = min((steady for steady, _ in self._intervals.values()), default=self.interval)
        if self.consecutive_failures:
            return min(self.max_backoff, max(base, self.fast_interval) * 2 ** min(self.consecutive_failures, 10))
        return base

    def _loop(self) -> None:
        while True:
            with self._lock:
                if not self._jobs:
                    self._thread = None
                    return
            self._wake.clear()
            try:
                self.poll_once()
            except Exception:  # noqa: BLE001 - the poller thread must outlive any single bad response
                log.exception("job poller failed; retrying")
                self._record_failure(RuntimeError("unexpected poller error"))
            self._wake.wait(self._next_wait())

    def _settled(self, job_id: str, condition: Callable[[JobInfo], bool], deadline: float) -> tuple[bool, JobInfo | None]:
        """Return whether waiting is over (condition met or deadline passed) and the state."""
        info = self.get(job_id)
        return (info is not None and condition(info)) or time.monotonic() >= deadline, info

    def wait_for(self, job_id: str, condition: Callable[[JobInfo], bool], timeout: float) -> JobInfo | None:
        """Block until the job's state meets ``condition`` or ``timeout`` seconds pass; return the state."""
        deadline = time.monotonic() + timeout
        while True:
            done, info = self._settled(job_id, condition, deadline)
            if done:
                return info
            time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))

    async def async_wait_for(self, job_id: str, condition: Callable[[JobInfo], bool], timeout: float) -> JobInfo | None:
        """Wait without blocking the event loop; see :meth:`wait_for`."""
        deadline = time.monotonic() + timeout
        while True:
            done, info = self._settled(job_id, condition, deadline)
            if done:
                return info
            await asyncio.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
