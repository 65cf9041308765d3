"""How a kernel's job ends: walltime warning, TIMEOUT, and a controller outage that must not kill the kernel."""

from __future__ import annotations

import asyncio
import subprocess
import time

import pytest

from support import run_code, wait_until

pytestmark = pytest.mark.cluster


def stderr_of(messages: list[dict]) -> str:
    return "".join(m["content"]["text"] for m in messages if m["msg_type"] == "stream" and m["content"]["name"] == "stderr")


async def execute_collecting(client, code: str, timeout: float) -> tuple[dict, list[dict]]:
    messages: list[dict] = []
    reply = await client.execute_interactive(code, timeout=timeout, output_hook=messages.append)
    return reply, messages


async def test_warning_reaches_running_and_next_cell(make_manager):
    manager = make_manager()
    await manager.start_kernel()
    job_id = manager.provisioner.job_id
    client = manager.client()
    client.start_channels()
    try:
        await client.wait_for_ready(timeout=30)
        running = asyncio.ensure_future(execute_collecting(client, "import time\nfor _ in range(40): time.sleep(0.1)", 30))
        await asyncio.sleep(1.0)
        subprocess.run(["scancel", "--signal=USR1", "--batch", job_id], check=True)
        _, messages = await running
        assert f"This kernel's Slurm job {job_id} ends at " in stderr_of(messages)
        assert "(time limit 1:00:00). Save your work." in stderr_of(messages)

        subprocess.run(["scancel", "--signal=USR1", "--batch", job_id], check=True)
        await asyncio.sleep(1.0)
        _, messages = await execute_collecting(client, "print('next cell')", 30)
        assert f"Slurm job {job_id} ends at " in stderr_of(messages)
        _, messages = await execute_collecting(client, "print('and the one after')", 30)
        assert stderr_of(messages) == ""
    finally:
        client.stop_channels()


async def test_walltime_timeout_after_warning(make_manager):
    # Slurm sends the signal up to 60 s early and checks time limits about
    # every 30 s, so a 1-minute job ends with TIMEOUT 60 to 100 s after it starts.
    manager = make_manager("slurm-cpu", {"walltime": "1", "signal_lead": 20})
    await manager.start_kernel()
    job_id = manager.provisioner.job_id
    client = manager.client()
    client.start_channels()
    messages: list[dict] = []
    try:
        await client.wait_for_ready(timeout=30)
        client.execute("import time\ntime.sleep(300)")
        deadline = time.monotonic() + 150
        while await manager.is_alive() and time.monotonic() < deadline:
            try:
                messages.append(await client.get_iopub_msg(timeout=1))
            except asyncio.TimeoutError:
                pass
            except Exception:  # noqa: BLE001 - the queue raises queue.Empty on timeout
                pass
    finally:
        client.stop_channels()
    assert not await manager.is_alive()
    assert f"This kernel's Slurm job {job_id} ends at " in stderr_of(messages)
    assert manager.provisioner.end_reason.startswith(f"Slurm job {job_id} ended with state TIMEOUT")


async def test_controller_outage_keeps_kernel(make_manager):
    manager = make_manager()
    await manager.start_kernel()
    poller = manager.provisioner.kernel_job.poller
    failures_before = poller.failure_count
    subprocess.run(["scontrol", "shutdown", "slurmctld"], check=True)
    try:
        assert wait_until(lambda: subprocess.run(["scontrol", "ping"], capture_output=True).returncode != 0, 20)
        poller.refresh()
        assert wait_until(lambda: poller.failure_count > failures_before, 30)
        for _ in range(5):
            assert await manager.is_alive()
            await asyncio.sleep(0.5)
        assert await run_code(manager, "print('works while slurmctld is down')") == "works while slurmctld is down\n"
    finally:
        subprocess.run(["slurmctld"], check=True)
        assert wait_until(lambda: subprocess.run(["scontrol", "ping"], capture_output=True, text=True).stdout.count("UP") > 0, 30)
    poller.refresh()
    assert wait_until(lambda: poller.consecutive_failures == 0, 60)
    assert await manager.is_alive()
    assert await run_code(manager, "print('and after it is back')") == "and after it is back\n"
