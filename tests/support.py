"""Helpers for tests that talk to the dev cluster."""

from __future__ import annotations

import subprocess
import time

# Pending reasons of a GPU job while both GPUs are taken: Resources when it is
# next in line, Priority when other jobs wait ahead of it on a shared cluster.
WAITING_FOR_GPU = ("Resources", "Priority")

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


async def run_code(manager, code: str, timeout: float = 60) -> str:
    """Run ``code`` in the manager's kernel and return what it printed on stdout."""
    client = manager.client()
    client.start_channels()
    try:
        await client.wait_for_ready(timeout=timeout)
        lines: list[str] = []

        def keep_stream(message):
            if message["msg_type"] == "stream" and message["content"]["name"] == "stdout":
                lines.append(message["content"]["text"])

        reply = await client.execute_interactive(code, timeout=timeout, output_hook=keep_stream)
        assert reply["content"]["status"] == "ok", reply["content"]
        return "".join(lines)
    finally:
        client.stop_channels()


def interrupt_busy_cell(gateway, channels, kernel_id: str) -> tuple[str | None, str | None]:
    """Start an endless cell, interrupt it, and return its error name and execute_reply status."""
    # ipykernel 6.29 (the Enterprise Gateway environment's) sends a failed
    # cell's execute_reply before it starts aborting queued requests when
    # stop_on_error is set, so the next cell would sometimes come back "aborted".
    msg_id = channels.send("execute_request", {"code": "while True: pass", "silent": False, "stop_on_error": False})
    started = False
    while not started:
        message = channels.receive(timeout=20)
        started = message["parent_header"].get("msg_id") == msg_id and message["header"]["msg_type"] == "execute_input"
    time.sleep(0.5)
    gateway.interrupt(kernel_id)
    # Read the interrupted cell's messages up to its reply, as a notebook client does.
    error = reply = None
    while reply is None:
        message = channels.receive(timeout=20)
        if message["parent_header"].get("msg_id") != msg_id:
            continue
        if message["header"]["msg_type"] == "error":
            error = message["content"]["ename"]
        elif message["header"]["msg_type"] == "execute_reply":
            reply = message["content"]["status"]
    return error, reply


def queued_for_gpu(status: dict) -> bool:
    """Return whether a ``slurm`` status shows a job waiting for a GPU, with position and estimate.

    The estimate appears once Slurm's backfill pass has seen the job.
    """
    return bool(status.get("reason") in WAITING_FOR_GPU and status.get("queue_position") and status.get("estimated_start"))
