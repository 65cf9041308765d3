"""Jupyter Server 2 itself hosting Slurm kernels, with the kernel manager that adds the slurm field."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys

import pytest

from gateways import free_port, spawn_server
from support import queued_for_gpu, squeue_ids, wait_until

pytestmark = [pytest.mark.cluster, pytest.mark.gateway]


@pytest.fixture(scope="module")
def jupyter_server(slurm_cluster, kernelspec_prefix, tmp_path_factory):
    directory = tmp_path_factory.mktemp("jupyter-server")
    port = free_port()
    token = secrets.token_hex(16)
    argv = [
        sys.executable, "-m", "jupyter_server", "--no-browser", "--allow-root",
        "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", f"--ServerApp.root_dir={directory}",
        f"--IdentityProvider.token={token}",
        "--ServerApp.kernel_manager_class=slurmgate.provisioners.kernelmanagers.SlurmMappingKernelManager",
        "--SlurmMappingKernelManager.use_pending_kernels=True",
    ]
    server = spawn_server(argv, dict(os.environ, JUPYTER_PATH=str(kernelspec_prefix)), port, token, directory / "server.log")
    yield server
    server.stop()


def test_slurm_field_while_queued_and_running(jupyter_server, block_gpus):
    blockers = block_gpus()
    server = jupyter_server.gateway
    kernel_id = server.start_kernel("slurm-gpu", timeout=30)["id"]
    try:
        def pending_with_estimate():
            status = server.kernel(kernel_id).get("slurm", {})
            return status if queued_for_gpu(status) else None

        status = wait_until(pending_with_estimate, 30, interval=0.3)
        assert status, server.kernel(kernel_id)
        assert status["state"] == "PENDING"
        assert status["queue_position"] >= 1
        subprocess.run(["scancel", blockers[0]], check=True)
        model = server.wait_until_started(kernel_id, timeout=60)
        assert model["slurm"]["state"] == "RUNNING"
        assert model["slurm"]["end_time"] is not None
        channels = server.connect(kernel_id)
        try:
            assert channels.execute("print('on Jupyter Server')").stdout == "on Jupyter Server\n"
        finally:
            channels.close()
    finally:
        server.shutdown(kernel_id)
    assert wait_until(lambda: squeue_ids(f"--name=jupyter-kernel-{kernel_id}") == [], 5)
