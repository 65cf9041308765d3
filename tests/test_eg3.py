"""Enterprise Gateway 3.3 started as a real process from its own environment, used through its REST and WebSocket API.

Enterprise Gateway 3 pins jupyter_client below 7, so it runs from a second
Python environment named by SLURMGATE_EG3_PYTHON, while these tests run in
the main one. Start requests name KERNEL_USERNAME, because the gateway keeps
its default of rejecting kernels for root, the user the tests run as.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest

from gateway_client import Gateway, GatewayError
from gateways import start_enterprise_gateway
from sshd import start_sshd
from support import WAITING_FOR_GPU, queued_for_gpu, interrupt_busy_cell, squeue_ids, wait_until

pytestmark = [pytest.mark.cluster, pytest.mark.gateway]

PROCESS_PROXY_CLASS = "slurmgate.provisioners.eg3.SlurmProcessProxy"
USER_ENV = {"KERNEL_USERNAME": "slurmgate-test"}


def _edit_kernelspec(kernels: Path, source: str, name: str, change) -> None:
    spec = json.loads((kernels / source / "kernel.json").read_text())
    change(spec)
    (kernels / name).mkdir()
    (kernels / name / "kernel.json").write_text(json.dumps(spec))


@pytest.fixture(scope="module")
def ssh_server(tmp_path_factory):
    server = start_sshd(tmp_path_factory.mktemp("sshd"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def eg3_kernelspecs(eg3_python, ssh_server, tmp_path_factory) -> Path:
    """A Jupyter data directory with Enterprise Gateway kernelspecs: good ones, one with an SSH tunnel, and broken variants."""
    prefix = tmp_path_factory.mktemp("eg3-prefix")
    logs = tmp_path_factory.mktemp("eg3-job-output")
    from slurmgate.provisioners.kernelspec import main

    common = ["--gateway", "eg3", "--python", eg3_python, "--prefix", str(prefix), "--job-output", f"{logs}/kernel-%j.log"]
    assert main(["install", "--name", "slurm-cpu", "--partition", "cpu", *common]) == 0
    assert main(["install", "--name", "slurm-gpu", "--partition", "gpu", "--gpus", "1", *common]) == 0
    kernels = prefix / "share" / "jupyter" / "kernels"

    def signal_mode(spec):
        spec["interrupt_mode"] = "signal"

    def bad_memory(spec):
        spec["metadata"]["process_proxy"]["config"]["memory"] = "16 GB"

    def misspelled(spec):
        spec["metadata"]["process_proxy"]["config"]["partitoin"] = "cpu"

    def tunnelled(spec):
        # The dev cluster's node is this host; the test sshd's key is known as 127.0.0.1.
        spec["metadata"]["process_proxy"]["config"].update(
            ssh_tunnel=True, ssh_node_host="127.0.0.1", ssh_port=ssh_server.port,
            ssh_key_file=str(ssh_server.client_key), ssh_known_hosts=str(ssh_server.known_hosts),
        )

    _edit_kernelspec(kernels, "slurm-cpu", "slurm-cpu-signal", signal_mode)
    _edit_kernelspec(kernels, "slurm-cpu", "slurm-bad-memory", bad_memory)
    _edit_kernelspec(kernels, "slurm-cpu", "slurm-misspelled", misspelled)
    _edit_kernelspec(kernels, "slurm-cpu", "slurm-cpu-tunnel", tunnelled)
    return prefix / "share" / "jupyter"


@pytest.fixture(scope="module")
def enterprise_gateway(slurm_cluster, eg3_python, eg3_kernelspecs, tmp_path_factory):
    directory = tmp_path_factory.mktemp("eg3")
    process = start_enterprise_gateway(
        eg3_python, eg3_kernelspecs, directory / "gateway.log", env={"JUPYTER_RUNTIME_DIR": str(directory / "runtime")}
    )
    yield process
    process.stop()


def job_fields(kernel_id: str) -> list[str]:
    """Return 'job id|partition|job name' for each job squeue lists under the kernel's job name."""
    result = subprocess.run(
        ["squeue", "--noheader", "--format=%i|%P|%j", f"--name=jupyter-kernel-{kernel_id}"],
        capture_output=True, text=True, check=True,
    )
    return result.stdout.split()


def test_lists_process_proxy_kernelspecs(enterprise_gateway):
    specs = enterprise_gateway.gateway.kernelspecs()
    assert {"slurm-cpu", "slurm-gpu"} <= set(specs)
    proxy = specs["slurm-gpu"]["spec"]["metadata"]["process_proxy"]
    assert proxy["class_name"] == PROCESS_PROXY_CLASS
    assert proxy["config"]["partition"] == "gpu"


def test_process_proxy_doctests_in_eg3_env(eg3_python):
    code = (
        "import doctest, slurmgate.provisioners.eg3 as module;"
        "result = doctest.testmod(module);"
        "print(result.attempted, result.failed)"
    )
    result = subprocess.run([eg3_python, "-c", code], capture_output=True, text=True, check=True)
    attempted, failed = result.stdout.split()
    assert int(attempted) > 0
    assert failed == "0"


def test_main_package_never_imports_eg3():
    code = (
        "import sys, slurmgate.provisioners, slurmgate.provisioners.provisioner, slurmgate.provisioners.kernelspec;"
        "print('slurmgate.provisioners.eg3' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_kernel_lifecycle_through_eg3(enterprise_gateway):
    gateway = enterprise_gateway.gateway
    kernel_id = gateway.start_kernel("slurm-gpu", env={**USER_ENV, "KERNEL_WALLTIME": "30"}, timeout=120)["id"]
    channels = gateway.connect(kernel_id)
    try:
        [job] = job_fields(kernel_id)
        job_id, partition, name = job.split("|")
        assert partition == "gpu"
        assert name == f"jupyter-kernel-{kernel_id}"
        status = gateway.kernel(kernel_id)["slurm"]
        assert status["job_id"] == job_id
        assert status["state"] == "RUNNING"
        assert status["partition"] == "gpu"
        assert status["time_limit"] == "0:30:00"
        assert status["kernel_connected"] is True
        listed = {model["id"]: model for model in gateway.request("GET", "/api/kernels")}
        assert listed[kernel_id]["slurm"]["job_id"] == job_id

        result = channels.execute(
            "import os\n"
            "print(os.environ['SLURM_JOB_ID'], os.environ['SLURM_JOB_PARTITION'], os.environ['KERNEL_USERNAME'])\n"
            "key = get_ipython().kernel.session.key\n"
            "print(len(key), 'SLURMGATE_CONNECTION_KEY' in os.environ)"
        )
        assert result.stdout.splitlines() == [f"{job_id} gpu slurmgate-test", "64 False"]

        error, reply = interrupt_busy_cell(gateway, channels, kernel_id)
        assert error == "KeyboardInterrupt"
        assert reply == "error"
        assert channels.execute("print('after interrupt')").stdout == "after interrupt\n"
    finally:
        channels.close()
        gateway.shutdown(kernel_id)
    assert wait_until(lambda: not squeue_ids(f"--jobs={job_id}"), 2)


def test_signal_mode_interrupt_uses_scancel(enterprise_gateway):
    gateway = enterprise_gateway.gateway
    kernel_id = gateway.start_kernel("slurm-cpu-signal", env=USER_ENV, timeout=120)["id"]
    channels = gateway.connect(kernel_id)
    try:
        error, reply = interrupt_busy_cell(gateway, channels, kernel_id)
        assert error == "KeyboardInterrupt"
        assert reply == "error"
        assert channels.execute("print('alive')").stdout == "alive\n"
    finally:
        channels.close()
        gateway.shutdown(kernel_id)
    assert wait_until(lambda: not job_fields(kernel_id), 2)


def test_kernel_ignoring_shutdown_is_cancelled(enterprise_gateway):
    gateway = enterprise_gateway.gateway
    kernel_id = gateway.start_kernel("slurm-cpu", env=USER_ENV, timeout=120)["id"]
    channels = gateway.connect(kernel_id)
    try:
        # Drop shutdown requests, so the gateway falls back to terminate(), which cancels the job.
        ignore = (
            "kernel = get_ipython().kernel\n"
            "async def ignore(*args): pass\n"
            "kernel.control_handlers['shutdown_request'] = ignore\n"
            "kernel.shell_handlers['shutdown_request'] = ignore"
        )
        assert channels.execute(ignore).status == "ok"
    finally:
        channels.close()
        gateway.shutdown(kernel_id)
    assert wait_until(lambda: not job_fields(kernel_id), 2)
    assert f"kernel {kernel_id}: cancelling Slurm job" in enterprise_gateway.log()


def test_job_cancelled_outside_ends_kernel(enterprise_gateway):
    gateway = enterprise_gateway.gateway
    kernel_id = gateway.start_kernel("slurm-cpu", env=USER_ENV, timeout=120)["id"]
    [job] = job_fields(kernel_id)
    subprocess.run(["scancel", job.split("|")[0]], check=True)

    def kernel_gone():
        try:
            gateway.kernel(kernel_id)
        except GatewayError as error:
            return error.status == 404
        return False

    # The kernel restarter polls every 3 s; with no client connected,
    # Enterprise Gateway removes a dead remote kernel instead of restarting it.
    assert wait_until(kernel_gone, 15, interval=0.5)
    assert job_fields(kernel_id) == []


def test_tunnelled_kernel_survives_ssh_drop(enterprise_gateway, ssh_server):
    gateway = enterprise_gateway.gateway
    logins = ssh_server.accepted_logins()
    kernel_id = gateway.start_kernel("slurm-cpu-tunnel", env=USER_ENV, timeout=120)["id"]
    channels = gateway.connect(kernel_id)
    try:
        assert ssh_server.accepted_logins() == logins + 1
        bound = channels.execute("from ipykernel.kernelapp import IPKernelApp\nx = 41\nprint(IPKernelApp.instance().ip)")
        assert bound.stdout == "127.0.0.1\n"

        restored = enterprise_gateway.log().count("restored after")
        assert ssh_server.kill_sessions()
        # A request sent while the SSH connection is down can be lost, as with any dropped TCP connection.
        assert wait_until(lambda: enterprise_gateway.log().count("restored after") > restored, 30)
        assert channels.execute("print(x + 1)", timeout=90).stdout == "42\n"
        assert ssh_server.accepted_logins() >= logins + 2
    finally:
        channels.close()
        gateway.shutdown(kernel_id)
    assert wait_until(lambda: not job_fields(kernel_id), 2)


def test_pending_status_route_while_queued(enterprise_gateway, block_gpus):
    blockers = block_gpus()
    gateway = enterprise_gateway.gateway
    kernel_id = str(uuid.uuid4())
    started: dict = {}

    def start():
        try:
            started["model"] = gateway.start_kernel("slurm-gpu", env={**USER_ENV, "KERNEL_ID": kernel_id}, timeout=120)
        except Exception as error:  # noqa: BLE001 - the main thread reports it
            started["error"] = error

    thread = threading.Thread(target=start)
    thread.start()
    try:
        def pending_with_reason():
            try:
                kernel = gateway.request("GET", f"/api/slurm/kernels/{kernel_id}")
            except GatewayError:
                return None
            return kernel if queued_for_gpu(kernel["slurm"]) else None

        kernel = wait_until(pending_with_reason, 30, interval=0.3)
        assert kernel, "the route never showed the job pending for the GPUs"
        assert kernel["user"] == USER_ENV["KERNEL_USERNAME"]
        assert kernel["slurm"]["state"] == "PENDING"
        assert kernel["slurm"]["partition"] == "gpu"
        assert kernel["slurm"]["queue_position"] >= 1
        assert kernel["slurm"]["estimated_start"] is not None
        mine = gateway.request("GET", f"/api/slurm/kernels?user={USER_ENV['KERNEL_USERNAME']}")
        assert kernel_id in [entry["id"] for entry in mine]
        assert gateway.request("GET", "/api/slurm/kernels?user=somebody-else") == []
        assert thread.is_alive()

        subprocess.run(["scancel", blockers[0]], check=True)
        thread.join(90)
        assert "error" not in started, started.get("error")
        assert started["model"]["id"] == kernel_id
        assert started["model"]["slurm"]["state"] == "RUNNING"
    finally:
        thread.join(120)
        if "model" in started:
            gateway.shutdown(kernel_id)


def test_pending_status_route_unknown_kernel(enterprise_gateway):
    with pytest.raises(GatewayError) as caught:
        enterprise_gateway.gateway.request("GET", f"/api/slurm/kernels/{uuid.uuid4()}")
    assert caught.value.status == 404


def test_pending_status_route_needs_token(enterprise_gateway):
    anonymous = Gateway(enterprise_gateway.gateway.url)
    with pytest.raises(GatewayError) as caught:
        anonymous.request("GET", "/api/slurm/kernels")
    assert caught.value.status in (401, 403)


def test_root_refused_before_submission(enterprise_gateway):
    kernel_id = str(uuid.uuid4())
    with pytest.raises(GatewayError) as caught:
        enterprise_gateway.gateway.start_kernel("slurm-cpu", env={"KERNEL_ID": kernel_id}, timeout=60)
    assert caught.value.status == 403
    assert "User 'root' is not authorized" in caught.value.message
    assert job_fields(kernel_id) == []


@pytest.mark.parametrize(
    ("kernel", "env", "status", "message"),
    [
        ("slurm-bad-memory", {}, 400, "invalid memory size '16 GB'"),
        ("slurm-misspelled", {}, 400, "unknown setting(s) partitoin in metadata.process_proxy.config"),
        ("slurm-cpu", {"KERNEL_LAUNCH_TIMEOUT": "-5"}, 400, "invalid KERNEL_LAUNCH_TIMEOUT '-5'"),
        ("slurm-cpu", {"KERNEL_LAUNCH_TIMEOUT": "7200"}, 400, "over this gateway's limit of 3600 s"),
        ("slurm-cpu", {"KERNEL_GPUS": "two"}, 400, "invalid gpus 'two'"),
        ("slurm-cpu", {"KERNEL_PARTITION": "nosuch"}, 400, "partition 'nosuch' does not exist on this cluster"),
    ],
)
def test_invalid_settings_reach_client(enterprise_gateway, kernel, env, status, message):
    kernel_id = str(uuid.uuid4())
    with pytest.raises(GatewayError) as caught:
        enterprise_gateway.gateway.start_kernel(kernel, env={**USER_ENV, "KERNEL_ID": kernel_id, **env}, timeout=60)
    assert caught.value.status == status
    assert message in caught.value.message
    assert job_fields(kernel_id) == []


def test_launch_timeout_error_reaches_client(enterprise_gateway, block_gpus):
    blockers = block_gpus()
    gateway = enterprise_gateway.gateway
    kernel_id = str(uuid.uuid4())
    env = {**USER_ENV, "KERNEL_ID": kernel_id, "KERNEL_LAUNCH_TIMEOUT": "3"}
    caught = None
    try:
        gateway.start_kernel("slurm-gpu", env=env, timeout=60)
    except GatewayError as error:
        caught = error
    else:
        gateway.shutdown(kernel_id)
    # Jobs of the same name are cancelled by any test session's teardown, and the cluster is shared.
    running = squeue_ids("--states=RUNNING", f"--jobs={','.join(blockers)}")
    assert sorted(running) == sorted(blockers), f"GPU blocker jobs {blockers} stopped during the test; still running: {running}"
    assert caught is not None, "the GPU kernel started although both GPUs were blocked"
    assert caught.status == 503
    assert "Slurm kernel launch timed out" in caught.message
    assert "was still queued in partition gpu" in caught.message
    assert any(f"pending reason: {reason}" in caught.message for reason in WAITING_FOR_GPU), caught.message
    assert "The job was cancelled" in caught.message
    assert wait_until(lambda: not job_fields(kernel_id), 5)


@pytest.mark.parametrize("kernel", ["slurm-cpu", "slurm-cpu-tunnel"])
def test_kernel_revived_after_gateway_restart(slurm_cluster, eg3_python, eg3_kernelspecs, ssh_server, tmp_path, kernel):
    # The first gateway dies without shutting its kernel down. The second one
    # finds the kernel in the saved sessions and tracks its job again. For the
    # tunnelled kernel, it also opens a new SSH tunnel.
    persistence = [
        "--EnterpriseGatewayApp.availability_mode=standalone",
        f"--FileKernelSessionManager.persistence_root={tmp_path / 'sessions'}",
    ]
    env = {"JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime")}
    first = start_enterprise_gateway(eg3_python, eg3_kernelspecs, tmp_path / "first.log", persistence, env)
    kernel_id = None
    try:
        kernel_id = first.gateway.start_kernel(kernel, env=USER_ENV, timeout=120)["id"]
        channels = first.gateway.connect(kernel_id)
        assert channels.execute("answer = 42").status == "ok"
        channels.close()
        first.process.kill()
        first.process.wait()
        assert len(job_fields(kernel_id)) == 1
        logins = ssh_server.accepted_logins()

        second = start_enterprise_gateway(eg3_python, eg3_kernelspecs, tmp_path / "second.log", persistence, env)
        try:
            channels = second.gateway.connect(kernel_id)
            assert channels.execute("print(answer)").stdout == "42\n"
            channels.close()
            if kernel == "slurm-cpu-tunnel":
                assert ssh_server.accepted_logins() == logins + 1
            second.gateway.shutdown(kernel_id)
            assert wait_until(lambda: not job_fields(kernel_id), 2)
        finally:
            second.stop()
    finally:
        first.stop()
        if kernel_id and job_fields(kernel_id):
            subprocess.run(["scancel", f"--name=jupyter-kernel-{kernel_id}"], check=False)
