"""Fixtures shared by the offline tests and the tests against the dev cluster and gateways."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))
sys.path.insert(0, str(ROOT / "tests"))

from support import TEST_JOB_PREFIX, squeue_ids, wait_until  # noqa: E402


@pytest.fixture(scope="session")
def slurm_cluster():
    """Fail unless the dev cluster (or another Slurm cluster) responds."""
    if shutil.which("scontrol") is None:
        pytest.fail("Slurm is not installed; run 'make cluster' (or 'slurmgate devcluster up' as root)")
    ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True)
    if ping.returncode != 0 or "UP" not in ping.stdout:
        pytest.fail(f"slurmctld does not answer: {ping.stdout.strip()} {ping.stderr.strip()}; run 'slurmgate devcluster up' as root")
    yield
    leftovers = squeue_ids("--name=" + ",".join(f"{TEST_JOB_PREFIX}{n}" for n in ("blocker", "job", "sleeper")))
    if leftovers:
        subprocess.run(["scancel", *leftovers], check=False)


@pytest.fixture
def submit_job(slurm_cluster):
    """Submit a plain batch job (``sbatch --wrap``) that the test's teardown cancels."""
    submitted: list[str] = []

    def submit(command: str = "sleep 300", name: str = "job", *options: str) -> str:
        result = subprocess.run(
            ["sbatch", "--parsable", f"--job-name={TEST_JOB_PREFIX}{name}", "--output=/dev/null", *options, f"--wrap={command}"],
            capture_output=True, text=True, check=True,
        )
        submitted.append(result.stdout.strip())
        return submitted[-1]

    yield submit
    if submitted:
        subprocess.run(["scancel", *submitted], check=False)
        wait_until(lambda: not squeue_ids(f"--jobs={','.join(submitted)}"), 15)


@pytest.fixture
def block_gpus(submit_job):
    """Occupy both fake GPUs with sleeping jobs; return their ids once running."""

    def block(count: int = 2) -> list[str]:
        ids = [submit_job("sleep 600", "blocker", "--partition=gpu", "--gres=gpu:1") for _ in range(count)]
        running = wait_until(lambda: len(squeue_ids("--states=RUNNING", f"--jobs={','.join(ids)}")) == count, 30)
        assert running, f"GPU blocker jobs {ids} did not start"
        return ids

    return block


@pytest.fixture(scope="session")
def kernelspec_prefix(tmp_path_factory) -> Path:
    """A Jupyter data directory with the slurm-cpu and slurm-gpu kernelspecs."""
    prefix = tmp_path_factory.mktemp("prefix")
    logs = tmp_path_factory.mktemp("job-output")
    from slurmgate.provisioners.kernelspec import main

    common = ["--prefix", str(prefix), "--job-output", f"{logs}/kernel-%j.log"]
    assert main(["install", "--name", "slurm-cpu", "--partition", "cpu", *common]) == 0
    assert main(["install", "--name", "slurm-gpu", "--partition", "gpu", "--gpus", "1", *common]) == 0
    return prefix / "share" / "jupyter"


@pytest.fixture
async def make_manager(slurm_cluster, kernelspec_prefix, tmp_path):
    """Create kernel managers for installed or ad hoc kernelspecs; shut them all down afterwards."""
    managers: list[AsyncKernelManager] = []

    def make(name: str = "slurm-cpu", config: dict | None = None) -> AsyncKernelManager:
        kernel_dirs = [str(kernelspec_prefix / "kernels")]
        if config is not None:
            base = json.loads((kernelspec_prefix / "kernels" / name / "kernel.json").read_text())
            base["metadata"]["kernel_provisioner"]["config"].update(config)
            directory = tmp_path / "kernels" / f"{name}-custom"
            directory.mkdir(parents=True)
            (directory / "kernel.json").write_text(json.dumps(base))
            kernel_dirs.insert(0, str(tmp_path / "kernels"))
            name = f"{name}-custom"
        manager = AsyncKernelManager(kernel_name=name, kernel_spec_manager=KernelSpecManager(kernel_dirs=kernel_dirs))
        managers.append(manager)
        return manager

    yield make
    for manager in managers:
        if manager.has_kernel and await manager.is_alive():
            await manager.shutdown_kernel(now=True)


@pytest.fixture(scope="module")
def eg3_python() -> str:
    """The Python of the Enterprise Gateway 3.3 environment, checked to import the process proxy."""
    python = os.environ.get("SLURMGATE_EG3_PYTHON")
    if not python:
        pytest.fail(
            "SLURMGATE_EG3_PYTHON is not set: it names the Python of the Enterprise Gateway 3.3"
            " environment, which 'make test' creates in .venv-eg3 and passes to pytest"
        )
    check = subprocess.run(
        [python, "-c", "import enterprise_gateway, slurmgate.provisioners.eg3; print(enterprise_gateway.__version__)"],
        capture_output=True, text=True,
    )
    if check.returncode != 0:
        pytest.fail(f"{python} cannot import Enterprise Gateway and slurmgate's process proxy: {check.stderr.strip()}")
    assert check.stdout.startswith("3."), f"Enterprise Gateway 3 expected, found {check.stdout.strip()}"
    return python


@pytest.fixture(scope="module")
def eg3_kernelspec_prefix(eg3_python, tmp_path_factory) -> Path:
    """A Jupyter data directory with Enterprise Gateway kernelspecs slurm-cpu and slurm-gpu."""
    prefix = tmp_path_factory.mktemp("eg3-prefix")
    logs = tmp_path_factory.mktemp("eg3-job-output")
    from slurmgate.provisioners.kernelspec import main

    common = ["--gateway", "eg3", "--python", eg3_python, "--prefix", str(prefix), "--job-output", f"{logs}/kernel-%j.log"]
    assert main(["install", "--name", "slurm-cpu", "--partition", "cpu", *common]) == 0
    assert main(["install", "--name", "slurm-gpu", "--partition", "gpu", "--gpus", "1", *common]) == 0
    return prefix / "share" / "jupyter"


@pytest.fixture(scope="module", params=["kernelgateway", "eg3"])
def any_gateway(request, slurm_cluster, tmp_path_factory):
    """Kernel Gateway 3, then Enterprise Gateway 3.3, each with slurm-cpu and slurm-gpu kernelspecs."""
    from gateways import start_enterprise_gateway, start_kernel_gateway

    log = tmp_path_factory.mktemp(request.param) / "gateway.log"
    if request.param == "kernelgateway":
        process = start_kernel_gateway(request.getfixturevalue("kernelspec_prefix"), log)
    else:
        python = request.getfixturevalue("eg3_python")
        # The tests run as root, which Enterprise Gateway rejects by default. A
        # production gateway runs as a service user; clients such as VS Code
        # send no KERNEL_USERNAME, so the gateway's own user is checked.
        rejected = ["--EnterpriseGatewayApp.unauthorized_users=nobody-at-all"]
        process = start_enterprise_gateway(python, request.getfixturevalue("eg3_kernelspec_prefix"), log, extra_args=rejected)
    process.kind = request.param
    yield process
    process.stop()
