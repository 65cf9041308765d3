"""Kernel Gateway 3 started as a real process, used through its REST and WebSocket API."""

import subprocess
import time

import pytest

from gateway_client import GatewayError
from gateways import start_kernel_gateway
from support import WAITING_FOR_GPU, queued_for_gpu, interrupt_busy_cell, squeue_ids, wait_until

pytestmark = [pytest.mark.cluster, pytest.mark.gateway]


@pytest.fixture(scope="module")
def kernel_gateway(slurm_cluster, kernelspec_prefix, tmp_path_factory):
    process = start_kernel_gateway(kernelspec_prefix, tmp_path_factory.mktemp("kg") / "gateway.log")
    yield process
    process.stop()


def test_lists_slurm_kernelspecs(kernel_gateway):
    specs = kernel_gateway.gateway.kernelspecs()
    assert {"slurm-cpu", "slurm-gpu"} <= set(specs)
    provisioner = specs["slurm-gpu"]["spec"]["metadata"]["kernel_provisioner"]
    assert provisioner["provisioner_name"] == "slurm-provisioner"


def test_kernel_lifecycle_through_gateway(kernel_gateway):
    gateway = kernel_gateway.gateway
    kernel_id = gateway.start_kernel("slurm-gpu", timeout=120)["id"]
    gateway.wait_until_started(kernel_id, timeout=120)
    channels = gateway.connect(kernel_id)
    try:
        result = channels.execute("import os; print(os.environ['SLURM_JOB_ID'], os.environ['SLURM_JOB_PARTITION'])")
        job_id, partition = result.stdout.split()
        assert partition == "gpu"
        assert squeue_ids(f"--jobs={job_id}", f"--name=jupyter-kernel-{kernel_id}") == [job_id]

        error, reply = interrupt_busy_cell(gateway, channels, kernel_id)
        assert error == "KeyboardInterrupt"
        assert reply == "error"
        assert channels.execute("print('after interrupt')").stdout == "after interrupt\n"
    finally:
        channels.close()
        gateway.shutdown(kernel_id)
    assert wait_until(lambda: not squeue_ids(f"--jobs={job_id}"), 2)


def test_pending_status_readable_while_queued(kernel_gateway, block_gpus):
    blockers = block_gpus()
    gateway = kernel_gateway.gateway
    kernel_id = gateway.start_kernel("slurm-gpu", timeout=30)["id"]
    try:
        def pending_with_reason():
            status = gateway.kernel(kernel_id).get("slurm", {})
            return status if queued_for_gpu(status) else None

        status = wait_until(pending_with_reason, 20, interval=0.3)
        assert status, gateway.kernel(kernel_id)
        assert status["state"] == "PENDING"
        assert status["partition"] == "gpu"
        assert status["queue_position"] >= 1
        assert status["estimated_start"] is not None
        assert status["kernel_connected"] is False
        listed = {model["id"]: model for model in gateway.request("GET", "/api/kernels")}
        assert listed[kernel_id]["slurm"]["state"] == "PENDING"

        subprocess.run(["scancel", blockers[0]], check=True)
        model = gateway.wait_until_started(kernel_id, timeout=60)
        assert model["slurm"]["state"] == "RUNNING"
        assert model["slurm"]["time_limit"] == "2:00:00"
        channels = gateway.connect(kernel_id)
        try:
            assert channels.execute("print('after the queue')").stdout == "after the queue\n"
        finally:
            channels.close()
    finally:
        gateway.shutdown(kernel_id)


def test_launch_timeout_error_reaches_client(kernel_gateway, block_gpus):
    block_gpus()
    gateway = kernel_gateway.gateway
    before = set(squeue_ids("--partition=gpu"))
    kernel_id = gateway.start_kernel("slurm-gpu", env={"KERNEL_LAUNCH_TIMEOUT": "3"}, timeout=60)["id"]
    try:
        with pytest.raises(GatewayError) as caught:
            gateway.wait_until_started(kernel_id, timeout=60)
        assert "was still queued in partition gpu" in caught.value.message
        assert any(f"pending reason: {reason}" in caught.value.message for reason in WAITING_FOR_GPU), caught.value.message
        assert "The job was cancelled" in caught.value.message
        assert wait_until(lambda: set(squeue_ids("--partition=gpu")) == before, 5)
    finally:
        gateway.shutdown(kernel_id)


def test_bad_request_answers_400(kernel_gateway):
    with pytest.raises(GatewayError) as caught:
        kernel_gateway.gateway.start_kernel("slurm-gpu", env={"KERNEL_GPUS": "two"})
    assert caught.value.status == 400
    assert "invalid gpus 'two'" in caught.value.message


def test_scancel_ends_kernel_without_resubmitting(kernel_gateway):
    gateway = kernel_gateway.gateway
    kernel_id = gateway.start_kernel("slurm-cpu", timeout=60)["id"]
    model = gateway.wait_until_started(kernel_id, timeout=60)
    job_id = model["slurm"]["job_id"]
    subprocess.run(["scancel", job_id], check=True)

    def removed():
        try:
            gateway.kernel(kernel_id)
        except GatewayError as error:
            return error.status == 404
        return False

    # The server removes a kernel whose restarter reports it dead.
    assert wait_until(removed, 30, interval=0.5)
    assert squeue_ids(f"--name=jupyter-kernel-{kernel_id}") == []


def test_shutdown_of_queued_kernel_is_prompt(kernel_gateway, block_gpus):
    block_gpus()
    gateway = kernel_gateway.gateway
    kernel_id = gateway.start_kernel("slurm-gpu", env={"KERNEL_LAUNCH_TIMEOUT": "120"}, timeout=30)["id"]
    assert wait_until(lambda: gateway.kernel(kernel_id)["slurm"].get("state") == "PENDING", 20, interval=0.3)
    started = time.monotonic()
    gateway.shutdown(kernel_id)
    assert time.monotonic() - started < 30
    assert wait_until(lambda: squeue_ids(f"--name=jupyter-kernel-{kernel_id}") == [], 5)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"KERNEL_GPUS": [1]}, "must be text; got list"),
        ({"KERNEL_PARTITION": "gpu\u0000x"}, "without NUL characters"),
        ({"KERNEL_BIG": "x" * 20000}, "at most 16384 bytes"),
        ({f"KERNEL_V{number}": "1" for number in range(201)}, "at most 200 are accepted"),
    ],
    ids=["list", "nul", "big", "many"],
)
def test_malformed_env_answers_400(kernel_gateway, env, message):
    with pytest.raises(GatewayError) as caught:
        kernel_gateway.gateway.start_kernel("slurm-cpu", env=env)
    assert caught.value.status == 400
    assert message in caught.value.message


def test_json_number_accepted_as_text(kernel_gateway):
    gateway = kernel_gateway.gateway
    kernel_id = gateway.start_kernel("slurm-cpu", env={"KERNEL_CPUS": 2, "KERNEL_PARTITION": None}, timeout=60)["id"]
    try:
        model = gateway.wait_until_started(kernel_id, timeout=60)
        cpus = subprocess.run(["squeue", "--noheader", f"--jobs={model['slurm']['job_id']}", "--format=%C"],
                              capture_output=True, text=True).stdout.strip()
        assert cpus == "2"
    finally:
        gateway.shutdown(kernel_id)
