"""SlurmProvisioner driven by jupyter_client's AsyncKernelManager against the dev cluster."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import time

import pytest
from tornado.web import HTTPError

from slurmgate.provisioners.lifecycle import LaunchError, LaunchTimeout
from slurmgate.provisioners.protocol import new_reply_key, seal_reply
from support import WAITING_FOR_GPU, run_code, squeue_ids, wait_until

pytestmark = pytest.mark.cluster


def squeue_job(job_id: str) -> list[str]:
    """Return state, partition, gres and name of a pending or running job."""
    out = subprocess.run(["squeue", "--noheader", f"--jobs={job_id}", "--format=%T|%P|%b|%j"],
                         capture_output=True, text=True).stdout.strip()
    return out.split("|") if out else []


async def test_gpu_kernel_runs_as_tagged_job(make_manager):
    manager = make_manager("slurm-gpu")
    await manager.start_kernel()
    job_id = manager.provisioner.kernel_job.job_id
    state, partition, gres, name = squeue_job(job_id)
    assert state == "RUNNING"
    assert partition == "gpu"
    assert gres == "gres:gpu:1"
    assert name == f"jupyter-kernel-{manager.kernel_id}"
    output = await run_code(manager, "import os; print(os.environ['SLURM_JOB_ID'], os.environ.get('CUDA_VISIBLE_DEVICES'))")
    seen_job, seen_gpu = output.split()
    assert seen_job == job_id
    assert seen_gpu in ("0", "1")
    secrets_visible = await run_code(manager, "import os; print([n for n in os.environ if n.endswith(('REPLY_KEY', 'CONNECTION_KEY'))])")
    assert secrets_visible == "[]\n"


async def test_interrupt_keeps_kernel(make_manager):
    manager = make_manager()
    await manager.start_kernel()
    client = manager.client()
    client.start_channels()
    try:
        await client.wait_for_ready(timeout=60)
        msg_id = client.execute("while True: pass")
        await asyncio.sleep(1.0)
        await manager.interrupt_kernel()
        reply = await client._async_get_shell_msg(timeout=20)
        while reply["parent_header"].get("msg_id") != msg_id:
            reply = await client._async_get_shell_msg(timeout=20)
        assert reply["content"]["status"] == "error"
        assert reply["content"]["ename"] == "KeyboardInterrupt"
    finally:
        client.stop_channels()
    assert await manager.is_alive()
    assert await run_code(manager, "print(6 * 7)") == "42\n"


async def test_shutdown_leaves_no_job(make_manager):
    manager = make_manager()
    await manager.start_kernel()
    job_id = manager.provisioner.kernel_job.job_id
    assert squeue_job(job_id)
    await manager.shutdown_kernel()
    assert wait_until(lambda: not squeue_ids(f"--jobs={job_id}"), 2)
    assert not manager.has_kernel
    assert not await manager.is_alive()


async def test_kill_cancels_job(make_manager):
    manager = make_manager()
    await manager.start_kernel()
    job_id = manager.provisioner.kernel_job.job_id
    await manager.shutdown_kernel(now=True)
    assert wait_until(lambda: not squeue_ids(f"--jobs={job_id}"), 2)


async def test_external_scancel_is_dead_kernel(make_manager):
    manager = make_manager()
    await manager.start_kernel()
    job_id = manager.provisioner.kernel_job.job_id
    # The dev cluster's node is this host, so the kernel's connection file is visible here.
    connection_file = (await run_code(manager, "from ipykernel.kernelapp import IPKernelApp\n"
                                               "print(IPKernelApp.instance().abs_connection_file)")).strip()
    assert os.path.exists(connection_file)
    subprocess.run(["scancel", job_id], check=True)
    deadline = time.monotonic() + 15
    while await manager.is_alive() and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    assert not await manager.is_alive()
    assert manager.provisioner.end_reason == f"Slurm job {job_id} ended with state CANCELLED"
    # The file contains the kernel's HMAC key, so SIGTERM from scancel must not leave it behind.
    assert not os.path.exists(os.path.dirname(connection_file))
    await manager.shutdown_kernel()
    assert not manager.has_kernel


async def test_pending_gpu_kernel_starts_when_gpu_frees(make_manager, block_gpus, caplog):
    caplog.set_level(logging.INFO)
    blockers = block_gpus()
    manager = make_manager("slurm-gpu")
    start = asyncio.ensure_future(manager.start_kernel())
    while manager.provisioner is None or manager.provisioner.kernel_job is None or manager.provisioner.kernel_job.job_id is None:
        await asyncio.sleep(0.1)
    job_id = manager.provisioner.kernel_job.job_id
    for _ in range(100):
        info = manager.provisioner.kernel_job.current()
        if info is not None and info.reason in WAITING_FOR_GPU:
            break
        await asyncio.sleep(0.1)
    assert info.is_pending
    assert info.reason in WAITING_FOR_GPU
    assert not start.done()
    subprocess.run(["scancel", blockers[0]], check=True)
    await asyncio.wait_for(start, 60)
    assert squeue_job(job_id)[0] == "RUNNING"
    assert f"Slurm job {job_id} is pending (reason {info.reason})" in caplog.text
    assert await run_code(manager, "print('ran after waiting')") == "ran after waiting\n"


async def test_launch_timeout_cancels_pending_job(make_manager, block_gpus):
    block_gpus()
    manager = make_manager("slurm-gpu", {"launch_timeout": 4})
    with pytest.raises(HTTPError) as caught:
        await manager.start_kernel()
    assert caught.value.status_code == 503
    assert isinstance(caught.value.__cause__, LaunchTimeout)
    message = caught.value.log_message
    job_id = manager.provisioner.job_id
    assert "did not start within the launch timeout of 4 s" in message
    assert f"Slurm job {job_id} was still queued in partition gpu" in message
    assert any(f"pending reason: {reason}" in message for reason in WAITING_FOR_GPU), message
    assert wait_until(lambda: not squeue_ids(f"--jobs={job_id}"), 2)


async def test_launch_timeout_from_request_env(make_manager, block_gpus):
    block_gpus()
    manager = make_manager("slurm-gpu")
    with pytest.raises(HTTPError, match="launch timeout of 2 s"):
        await manager.start_kernel(env={"KERNEL_LAUNCH_TIMEOUT": "2", "PATH": "/usr/bin:/bin"})
    job_id = manager.provisioner.job_id
    assert wait_until(lambda: not squeue_ids(f"--jobs={job_id}"), 2)


async def test_start_cancelled_during_submit_leaves_no_job(make_manager):
    manager = make_manager()
    start = asyncio.ensure_future(manager.start_kernel())
    while manager.provisioner is None or manager.provisioner.kernel_job is None:
        await asyncio.sleep(0.005)
    start.cancel()
    with pytest.raises(asyncio.CancelledError):
        await start
    # sbatch may still be running in its thread: give the job time to appear.
    await asyncio.sleep(3)
    assert squeue_ids(f"--name=jupyter-kernel-{manager.kernel_id}") == []
    assert manager.provisioner.job_id is not None


async def test_bad_kernelspec_value_submits_nothing(make_manager):
    before = set(squeue_ids("--states=all"))
    manager = make_manager("slurm-cpu", {"walltime": "90 minutes"})
    with pytest.raises(HTTPError, match="invalid time '90 minutes'") as caught:
        await manager.start_kernel()
    assert caught.value.status_code == 400
    assert set(squeue_ids("--states=all")) == before


async def test_unknown_kernelspec_setting_rejected(make_manager):
    manager = make_manager("slurm-cpu", {"gpu_count": 1})
    with pytest.raises(HTTPError, match="unknown setting.*gpu_count") as caught:
        await manager.start_kernel()
    assert caught.value.status_code == 400


async def test_job_failing_before_reply_reports_end(make_manager):
    manager = make_manager("slurm-cpu", {"script_prologue": ["exit 7"]})
    with pytest.raises(HTTPError, match=r"ended with state FAILED \(exit code 7\) before the kernel reported its ports") as caught:
        await manager.start_kernel()
    assert isinstance(caught.value.__cause__, LaunchError)


async def test_forged_and_replayed_replies_ignored(make_manager, caplog):
    caplog.set_level(logging.WARNING)
    manager = make_manager()
    await manager.start_kernel()
    job = manager.provisioner.kernel_job
    accepted = dict(job.connection_info)
    # A reply sealed with a key the job never had, for the right kernel and job.
    forged = seal_reply(new_reply_key(), manager.kernel_id, job.job_id, dict(accepted, ip="127.0.0.2"))
    # A reply sealed with this launch's key, but for another job of the same kernel.
    replayed = seal_reply(job.reply_key, manager.kernel_id, str(int(job.job_id) + 1000), accepted)
    for reply in (forged, replayed):
        subprocess.run(["scontrol", "update", f"JobId={job.job_id}", f"Comment={reply}"], check=True)
        job.poller.refresh()
        assert wait_until(lambda: job.current().comment == reply, 10)
        assert await manager.is_alive()
    assert job.connection_info == accepted
    assert caplog.text.count("ignored a second connection reply") == 2
    assert await run_code(manager, "print('still mine')") == "still mine\n"


def test_first_reply_rejects_forgery(slurm_cluster, caplog):
    """Before any valid reply, a forged comment is rejected and a valid one still accepted."""
    from slurmgate.provisioners.lifecycle import KernelJob
    from slurmgate.slurm.client import SlurmClient
    from slurmgate.slurm.poller import JobPoller
    from slurmgate.slurm.request import JobRequest

    caplog.set_level(logging.WARNING)
    client = SlurmClient()
    poller = JobPoller(client, fast_interval=0.2)
    job = KernelJob("kernel-forgery-test", JobRequest("slurmgate-test-job"), ["sleep", "60"], client, poller, connection_key="k")
    job.submit()
    try:
        info = {"ip": "127.0.0.1", "shell_port": 1, "iopub_port": 2, "stdin_port": 3, "control_port": 4, "hb_port": 5}
        forged = seal_reply(new_reply_key(), job.kernel_id, job.job_id, info)
        subprocess.run(["scontrol", "update", f"JobId={job.job_id}", f"Comment={forged}"], check=True)
        assert wait_until(lambda: job.current() is not None and job.current().comment == forged, 10)
        with pytest.raises(LaunchTimeout):
            job.wait_for_connection_blocking(timeout=1)
        assert job.connection_info is None
        assert "rejected a connection reply" in caplog.text
        assert "failed authentication" in caplog.text
    finally:
        job.cancel()
        job.release()
