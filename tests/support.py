"""Helpers for tests that talk to the dev cluster."""

from __future__ import annotations

import subprocess
import time

# Every job a test submits directly carries this name prefix, so teardown can find leftovers.
TEST_JOB_PREFIX = "slurmgate-test-"


def squeue_ids(*args: str) -> list[str]:
    """Return the ids of jobs that squeue lists with these arguments."""
    result = subprocess.run(["squeue", "--noheader", "--format=%i", *args], capture_output=True, text=True, check=True)
    return result.stdout.split()


def wait_until(condition, timeout: float, interval: float = 0.1):
    """Return the first true value of ``condition()``, or the last one after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)
