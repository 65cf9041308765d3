"""Admin limits and client overrides: offline checks, then the same through a real kernel start."""

from __future__ import annotations

import json

import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from tornado.web import HTTPError

from slurmgate.slurm.policy import Limits, Policy, apply_client_request
from slurmgate.slurm.request import JobRequest, RequestError, request_from_settings
from support import squeue_ids

POLICY = Policy(
    allowed_partitions=("cpu", "gpu"),
    default_limits=Limits(max_cpus=4, max_memory_mb=8192, max_walltime_s=7200),
    partition_limits={"cpu": Limits(max_gpus=0), "gpu": Limits(max_gpus=2, max_walltime_s=14400)},
)


def test_policy_accepts_request_within_limits():
    POLICY.check(JobRequest("k", partition="gpu", gpus=2, cpus=4, memory_mb=8192, walltime_s=14400))


def test_policy_gpu_limit_message():
    with pytest.raises(RequestError) as caught:
        POLICY.check(JobRequest("k", partition="gpu", gpus=4))
    assert str(caught.value) == "partition 'gpu' allows at most 2 GPUs per kernel; got 4. Ask for less."
    assert caught.value.field == "gpus"


def test_policy_suggests_partition_that_fits():
    with pytest.raises(RequestError) as caught:
        POLICY.check(JobRequest("k", partition="cpu", gpus=1))
    assert str(caught.value) == "partition 'cpu' allows at most 0 GPUs per kernel; got 1. Ask for less, or use partition 'gpu'."


def test_policy_partition_limits_replace_defaults():
    assert POLICY.limits_for("gpu").max_walltime_s == 14400
    assert POLICY.limits_for("gpu").max_cpus == 4
    assert POLICY.limits_for("cpu").max_walltime_s == 7200


def test_policy_unknown_partition_from_sinfo():
    with pytest.raises(RequestError, match="partition 'debug' does not exist on this cluster; use one of cpu, gpu"):
        Policy().check(JobRequest("k", partition="debug"), known_partitions=("cpu", "gpu"))


def test_client_request_overlays_kernelspec():
    settings = apply_client_request({"partition": "gpu", "gpus": 1}, {"KERNEL_GPUS": "2", "KERNEL_MEMORY": ""}, POLICY)
    assert settings == {"partition": "gpu", "gpus": "2"}


def test_client_field_not_allowed():
    policy = Policy(client_fields=frozenset({"gpus"}))
    with pytest.raises(RequestError, match="KERNEL_ACCOUNT='physics' is not accepted"):
        apply_client_request({}, {"KERNEL_ACCOUNT": "physics"}, policy)


def test_limits_reject_unknown_name():
    with pytest.raises(RequestError, match="unknown limit"):
        Limits.from_settings({"max_gpu": 1}, "partition 'gpu'")


def test_request_walltime_over_partition_limit():
    request = request_from_settings("k", {"partition": "gpu", "walltime": "5:00:00"})
    with pytest.raises(RequestError, match="allows at most 4:00:00 walltime per kernel; got 5:00:00"):
        POLICY.check(request)


# Each row: the start request's variables and a part of the error message.
BAD_REQUESTS = [
    ({"KERNEL_GPUS": "two"}, "invalid gpus 'two'"),
    ({"KERNEL_GPUS": "4"}, "partition 'gpu' allows at most 2 GPUs per kernel; got 4"),
    ({"KERNEL_GPUS": "-1"}, "invalid gpus '-1'"),
    ({"KERNEL_GPUS": "99999999999"}, "invalid gpus '99999999999'"),
    ({"KERNEL_GPUS": "1.5"}, "invalid gpus '1.5'"),
    ({"KERNEL_CPUS": "0"}, "invalid cpus 0"),
    ({"KERNEL_CPUS": "64"}, "allows at most 4 CPUs per kernel; got 64"),
    ({"KERNEL_CPUS": "lots"}, "invalid cpus 'lots'"),
    ({"KERNEL_MEMORY": "16 GB"}, "invalid memory size '16 GB'"),
    ({"KERNEL_MEMORY": "64G"}, "allows at most 8G memory per kernel; got 64G"),
    ({"KERNEL_MEMORY": "-5G"}, "invalid memory size '-5G'"),
    ({"KERNEL_MEMORY": "0"}, "ask for at least 1M"),
    ({"KERNEL_WALLTIME": "90 minutes"}, "invalid time '90 minutes'"),
    ({"KERNEL_WALLTIME": "5:00:00"}, "allows at most 4:00:00 walltime per kernel; got 5:00:00"),
    ({"KERNEL_WALLTIME": "UNLIMITED"}, "a kernel needs a finite time limit"),
    ({"KERNEL_WALLTIME": "1:2:3:4"}, "invalid time '1:2:3:4'"),
    ({"KERNEL_WALLTIME": "99-00:00:00"}, "got 99-00:00:00"),
    ({"KERNEL_PARTITION": "nosuch"}, "partition 'nosuch' is not offered by this gateway; use one of cpu, gpu"),
    ({"KERNEL_PARTITION": "gpu;rm -rf ~"}, "invalid partition 'gpu;rm -rf ~'"),
    (
        {"KERNEL_PARTITION": "cpu", "KERNEL_GPUS": "1"},
        "partition 'cpu' allows at most 0 GPUs per kernel; got 1. Ask for less, or use partition 'gpu'",
    ),
    ({"KERNEL_ACCOUNT": "physics"}, "KERNEL_ACCOUNT='physics' is not accepted"),
    ({"KERNEL_QOS": "bad qos"}, "invalid qos 'bad qos'"),
    ({"KERNEL_RESERVATION": "x\ny"}, "invalid reservation"),
    ({"KERNEL_CONSTRAINT": "a b"}, "invalid constraint 'a b'"),
    ({"KERNEL_LAUNCH_TIMEOUT": "soon"}, "invalid KERNEL_LAUNCH_TIMEOUT 'soon'"),
    ({"KERNEL_LAUNCH_TIMEOUT": "-3"}, "invalid KERNEL_LAUNCH_TIMEOUT '-3'"),
    ({"KERNEL_LAUNCH_TIMEOUT": "999999"}, "over this gateway's limit of 600 s"),
    ({"KERNEL_LAUNCH_TIMEOUT": "nan"}, "invalid KERNEL_LAUNCH_TIMEOUT 'nan'"),
]

POLICY_CONFIG = {
    "allowed_partitions": ["cpu", "gpu"],
    "max_cpus": 4,
    "max_memory": "8G",
    "max_walltime": "2:00:00",
    "partition_limits": {"cpu": {"max_gpus": 0}, "gpu": {"max_gpus": 2, "max_walltime": "4:00:00"}},
    "client_overrides": ["partition", "gpus", "cpus", "memory", "walltime", "qos", "reservation", "constraint"],
    "max_launch_timeout": 600,
}


@pytest.fixture(scope="module")
def policy_kernel_dir(kernelspec_prefix, tmp_path_factory):
    spec = json.loads((kernelspec_prefix / "kernels" / "slurm-gpu" / "kernel.json").read_text())
    spec["metadata"]["kernel_provisioner"]["config"].update(POLICY_CONFIG)
    directory = tmp_path_factory.mktemp("policy-kernels")
    (directory / "slurm-gpu-limited").mkdir()
    (directory / "slurm-gpu-limited" / "kernel.json").write_text(json.dumps(spec))
    return directory


@pytest.mark.cluster
@pytest.mark.parametrize(("env", "message"), BAD_REQUESTS, ids=[str(i) for i in range(len(BAD_REQUESTS))])
async def test_bad_request_rejected_before_submission(slurm_cluster, policy_kernel_dir, env, message):
    assert len(BAD_REQUESTS) >= 25
    specs = KernelSpecManager(kernel_dirs=[str(policy_kernel_dir)])
    manager = AsyncKernelManager(kernel_name="slurm-gpu-limited", kernel_spec_manager=specs)
    with pytest.raises(HTTPError) as caught:
        await manager.start_kernel(env={"PATH": "/usr/bin:/bin", **env})
    assert caught.value.status_code == 400
    assert message in caught.value.log_message
    assert manager.kernel_id in caught.value.log_message
    assert squeue_ids("--states=all", f"--name=jupyter-kernel-{manager.kernel_id}") == []
