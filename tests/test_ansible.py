"""The slurmgate Ansible role, run with ansible-playbook against this host and the dev cluster.

Every run uses ``-i localhost, -c local`` and points the role's paths (venv,
kernelspecs, configuration, systemd unit) into a temporary directory, with
service management off, so nothing outside that directory changes. The
Enterprise Gateway tests also need SLURMGATE_EG3_PYTHON, the Python of an
Enterprise Gateway 3.3 environment. The filter tests at the end need neither
the cluster nor Ansible.
"""

from __future__ import annotations

import doctest
import getpass
import grp
import importlib.util
import json
import os
import re
import secrets
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from traitlets.config.loader import PyFileConfigLoader

from ansible_support import (
    ANSIBLE_DIR, ansible_environment, copy_source, find_ansible_tool, make_test_venv, run_playbook,
)
from slurmgate.provisioners.config import SlurmKernelConfig
from slurmgate.provisioners.kernelspec import main as slurm_spec_main
from slurmgate.slurm.policy import Limits
from slurmgate.slurm.units import parse_memory, parse_walltime
from gateway_client import Gateway, GatewayError
from gateways import GatewayProcess, free_port
from support import squeue_ids, wait_until

ROLE_DIR = ANSIBLE_DIR / "roles" / "slurmgate"
EXAMPLE_PLAYBOOK = ANSIBLE_DIR / "examples" / "gpu-cluster" / "playbook.yml"
EG3_PLAYBOOK = ANSIBLE_DIR / "examples" / "enterprise-gateway" / "playbook.yml"
MARKER = ".slurmgate-ansible"
CONFIG_NAME = "jupyter_kernel_gateway_config.py"
EG3_CONFIG_NAME = "jupyter_enterprise_gateway_config.py"
PROCESS_PROXY_CLASS = "slurmgate.provisioners.eg3.SlurmProcessProxy"
# The tests run as root, and Enterprise Gateway rejects kernels for root, so
# start requests name another user.
EG3_USER_ENV = {"KERNEL_USERNAME": "slurmgate-test"}

# CLI option of `jupyter slurm-spec install` for each entry key that has one.
CLI_OPTIONS = {
    "display_name": "--display-name", "partition": "--partition", "gpus": "--gpus", "gpu_type": "--gpu-type",
    "cpus": "--cpus", "memory": "--memory", "walltime": "--walltime", "account": "--account", "qos": "--qos",
    "reservation": "--reservation", "constraint": "--constraint", "kernel_ip": "--kernel-ip",
    "launch_timeout": "--launch-timeout", "job_output": "--job-output",
}


def load_filters():
    """Import the role's filter plugin as a plain module."""
    spec = importlib.util.spec_from_file_location("slurmgate_role_filters", ROLE_DIR / "filter_plugins" / "slurmgate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def example_partitions(playbook: Path = EXAMPLE_PLAYBOOK) -> list[dict]:
    """Return slurmgate_partitions as an example playbook (default: the GPU-cluster one) declares it."""
    play = yaml.safe_load(playbook.read_text())[0]
    return play["vars"]["slurmgate_partitions"]


def cli_options(entry: dict) -> list[str]:
    """Translate a slurmgate_partitions entry into `jupyter slurm-spec install` options."""
    options = [f"--name={entry['name']}"]
    options += [f"{flag}={entry[key]}" for key, flag in CLI_OPTIONS.items() if key in entry]
    options += [f"--extra-directive={directive}" for directive in entry.get("extra_directives", [])]
    options += [f"--prologue={line}" for line in entry.get("prologue", [])]
    return options


def directory_files(directory: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in directory.iterdir() if path.name != MARKER}


@dataclass
class Site:
    """One set of role paths under a temporary directory, and the extra variables that select them."""

    base: Path
    extra_vars: dict
    playbook: Path = EXAMPLE_PLAYBOOK

    @property
    def kernels_dir(self) -> Path:
        return self.base / "prefix" / "share" / "jupyter" / "kernels"

    @property
    def token(self) -> str:
        return self.extra_vars["slurmgate_gateway_auth_token"]

    def run(self, *options: str, **overrides):
        return run_playbook(self.playbook, {**self.extra_vars, **overrides}, self.base / "ansible", *options)


@pytest.fixture(scope="module")
def role_venv(tmp_path_factory) -> tuple[Path, Path]:
    """A venv for the role to install into, and a copy of the checkout as slurmgate_package."""
    find_ansible_tool("ansible-playbook")
    base = tmp_path_factory.mktemp("role-venv")
    make_test_venv(base / "venv")
    return base / "venv", copy_source(base / "source")


@pytest.fixture(scope="module")
def make_site(role_venv, tmp_path_factory):
    """Create a Site whose variables point every role path into a new temporary directory."""
    venv, source = role_venv

    def make(name: str) -> Site:
        base = tmp_path_factory.mktemp(name)
        (base / "systemd").mkdir()
        return Site(base, {
            "slurmgate_play_hosts": "localhost",
            "ansible_python_interpreter": sys.executable,
            # The example plays use become; the tests run as the current user.
            "ansible_become": False,
            "slurmgate_venv": str(venv),
            "slurmgate_package": str(source),
            "slurmgate_kernelspec_prefix": str(base / "prefix"),
            "slurmgate_config_dir": str(base / "etc"),
            "slurmgate_systemd_unit_dir": str(base / "systemd"),
            "slurmgate_gateway_user": getpass.getuser(),
            "slurmgate_gateway_group": grp.getgrgid(os.getgid()).gr_name,
            "slurmgate_gateway_create_user": False,
            "slurmgate_gateway_working_dir": str(base / "work"),
            "slurmgate_manage_service": False,
            "slurmgate_gateway_auth_token": secrets.token_hex(16),
        })

    return make


@pytest.fixture(scope="module")
def converged(slurm_cluster, make_site):
    """A site where the GPU-cluster example playbook ran once, and that run."""
    site = make_site("converged")
    first_run = site.run()
    assert first_run.returncode == 0, first_run.output
    return site, first_run


@pytest.fixture(scope="module")
def eg3_venv(eg3_python, tmp_path_factory) -> Path:
    """A venv for the role to install slurmgate into, which reuses the Enterprise Gateway 3.3 packages of SLURMGATE_EG3_PYTHON."""
    venv = tmp_path_factory.mktemp("role-eg3-venv") / "venv"
    make_test_venv(venv, base_python=eg3_python)
    return venv


@pytest.fixture(scope="module")
def eg3_converged(slurm_cluster, make_site, eg3_venv):
    """A site where the Enterprise Gateway example playbook ran once, and that run."""
    site = make_site("eg3-converged")
    site.playbook = EG3_PLAYBOOK
    site.extra_vars.update({"slurmgate_eg3_venv": str(eg3_venv), "slurmgate_gateway_port": free_port()})
    first_run = site.run()
    assert first_run.returncode == 0, first_run.output
    return site, first_run


@pytest.mark.cluster
def test_role_passes_ansible_lint(tmp_path):
    result = subprocess.run(
        [str(find_ansible_tool("ansible-lint")), "-c", ".ansible-lint", "roles/slurmgate", "examples"],
        capture_output=True, text=True, cwd=ANSIBLE_DIR, env=ansible_environment(tmp_path), timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "0 failure(s), 0 warning(s)" in output, output


@pytest.mark.cluster
def test_example_creates_kernelspecs(converged):
    site, first_run = converged
    assert first_run.recap["changed"] > 0
    assert sorted(path.name for path in site.kernels_dir.iterdir()) == ["slurm-cpu", "slurm-gpu"]
    for name in ("slurm-cpu", "slurm-gpu"):
        assert (site.kernels_dir / name / MARKER).is_file()
    spec = json.loads((site.kernels_dir / "slurm-gpu" / "kernel.json").read_text())
    assert spec["argv"] == [site.extra_vars["slurmgate_venv"] + "/bin/python", "-m", "slurmgate.provisioners.launcher"]
    assert spec["metadata"]["kernel_provisioner"]["config"] == {
        "partition": "gpu", "gpus": 1, "cpus": 4, "memory": "8G", "walltime": "1:00:00",
        "extra_directives": ["--no-requeue"], "script_prologue": ['export OMP_NUM_THREADS="${SLURM_CPUS_PER_TASK:-1}"'],
        "kernel_ip": "node",
    }


@pytest.mark.cluster
def test_example_writes_gateway_config(converged):
    site, _ = converged
    config_dir = site.base / "etc"
    config = PyFileConfigLoader(CONFIG_NAME, path=str(config_dir)).load_config()
    assert config.KernelGatewayApp.ip == "127.0.0.1"
    assert config.KernelGatewayApp.port == 8888
    assert config.KernelGatewayApp.default_kernel_name == "slurm-cpu"
    assert config.KernelSpecManager.allowed_kernelspecs == ["slurm-cpu", "slurm-gpu"]
    assert config.SlurmKernelConfig.launch_timeout == 600.0
    assert config.SlurmKernelConfig.allowed_partitions == ["cpu", "gpu"]
    assert config.SlurmKernelConfig.partition_limits == {
        "cpu": {"max_cpus": 8, "max_walltime": "8:00:00"},
        "gpu": {"max_gpus": 2, "max_memory": "32G", "max_walltime": "2:00:00"},
    }
    assert site.token not in (config_dir / CONFIG_NAME).read_text()
    environment_file = config_dir / "gateway.env"
    assert stat.S_IMODE(environment_file.stat().st_mode) == 0o600
    assert f"KG_AUTH_TOKEN={site.token}\n" in environment_file.read_text()


@pytest.mark.cluster
def test_gateway_config_sets_slurmgate_policy(converged):
    site, _ = converged
    config = PyFileConfigLoader(CONFIG_NAME, path=str(site.base / "etc")).load_config()
    policy = SlurmKernelConfig(config=config).policy()
    assert policy.allowed_partitions == ("cpu", "gpu")
    assert policy.limits_for("gpu") == Limits(max_gpus=2, max_memory_mb=32768, max_walltime_s=7200)
    assert policy.limits_for("cpu") == Limits(max_cpus=8, max_walltime_s=28800)


@pytest.mark.cluster
def test_playbook_output_hides_token(converged):
    site, first_run = converged
    assert site.token not in first_run.output


@pytest.mark.cluster
def test_example_writes_systemd_unit(converged):
    site, _ = converged
    unit = (site.base / "systemd" / "slurmgate-gateway.service").read_text()
    venv = site.extra_vars["slurmgate_venv"]
    config = site.base / "etc" / CONFIG_NAME
    assert f'ExecStart="{venv}/bin/python" -m kernel_gateway "--config={config}"\n' in unit
    assert f"EnvironmentFile={site.base / 'etc' / 'gateway.env'}\n" in unit
    assert f"User={getpass.getuser()}\n" in unit


@pytest.mark.cluster
def test_systemd_unit_passes_verify(converged):
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    site, _ = converged
    result = subprocess.run(
        ["systemd-analyze", "verify", str(site.base / "systemd" / "slurmgate-gateway.service")],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.cluster
@pytest.mark.parametrize(("site_fixture", "layout"), [("converged", "provisioner"), ("eg3_converged", "eg3")])
def test_kernelspecs_match_slurm_spec_install(request, site_fixture, layout, tmp_path):
    site, _ = request.getfixturevalue(site_fixture)
    venv = Path(site.extra_vars["slurmgate_venv"])
    for entry in example_partitions(site.playbook):
        options = [
            "install", *cli_options(entry), f"--gateway={layout}", f"--python={venv}/bin/python", f"--prefix={tmp_path}",
        ]
        subprocess.run([str(venv / "bin" / "jupyter-slurm-spec"), *options], check=True, capture_output=True)
        expected = directory_files(tmp_path / "share/jupyter/kernels" / entry["name"])
        assert sorted(expected) == ["kernel.json", "logo-32x32.png", "logo-64x64.png"]
        assert directory_files(site.kernels_dir / entry["name"]) == expected


def squeue_fields(job_id: str) -> list[str]:
    """Return the partition and gres of a job in the queue, or an empty list once it has left."""
    out = subprocess.run(["squeue", "--noheader", f"--jobs={job_id}", "--format=%P|%b"],
                         capture_output=True, text=True).stdout.strip()
    return out.split("|") if out else []


async def run_code(manager: AsyncKernelManager, code: str) -> str:
    """Execute ``code`` in the kernel and return its stdout."""
    client = manager.client()
    client.start_channels()
    try:
        await client.wait_for_ready(timeout=60)
        lines: list[str] = []

        def keep_stream(message):
            if message["msg_type"] == "stream":
                lines.append(message["content"]["text"])

        reply = await client.execute_interactive(code, timeout=60, output_hook=keep_stream)
        assert reply["content"]["status"] == "ok", reply["content"]
        return "".join(lines)
    finally:
        client.stop_channels()


@pytest.mark.cluster
async def test_gpu_kernelspec_runs_on_gpu_partition(converged, tmp_path):
    site, _ = converged
    specs = KernelSpecManager(kernel_dirs=[str(site.kernels_dir)])
    manager = AsyncKernelManager(kernel_name="slurm-gpu", kernel_spec_manager=specs)
    # The job's working directory, where Slurm writes its output file.
    await manager.start_kernel(cwd=str(tmp_path))
    job_id = manager.provisioner.kernel_job.job_id
    try:
        assert squeue_fields(job_id) == ["gpu", "gres:gpu:1"]
        code = "import os, sys; print(sys.executable, os.environ.get('CUDA_VISIBLE_DEVICES'), os.environ.get('OMP_NUM_THREADS'))"
        python, gpu, threads = (await run_code(manager, code)).split()
        assert python == site.extra_vars["slurmgate_venv"] + "/bin/python"
        assert gpu in ("0", "1")
        assert threads == "4"
        await manager.shutdown_kernel()
        assert wait_until(lambda: not squeue_ids(f"--jobs={job_id}"), 15)
    finally:
        if manager.has_kernel:
            await manager.shutdown_kernel(now=True)
        if squeue_ids(f"--jobs={job_id}"):
            subprocess.run(["scancel", job_id], check=False)


@pytest.mark.cluster
def test_second_run_changes_nothing(converged):
    site, _ = converged
    second_run = site.run()
    assert second_run.returncode == 0, second_run.output
    assert second_run.recap["changed"] == 0, second_run.output


@pytest.mark.cluster
def test_check_diff_after_converge_is_clean(converged):
    site, _ = converged
    check_run = site.run("--check", "--diff")
    assert check_run.returncode == 0, check_run.output
    assert check_run.recap["changed"] == 0, check_run.output
    assert site.token not in check_run.output


def read_environment_file(path: Path) -> dict[str, str]:
    """Read the role's environment file as systemd's EnvironmentFile= does for its simple NAME=VALUE lines."""
    environment = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            name, value = line.split("=", 1)
            # The role quotes every value but the token, with backslash escapes inside the quotes.
            environment[name] = re.sub(r"\\(.)", r"\1", value[1:-1]) if value.startswith('"') else value
    return environment


def start_role_enterprise_gateway(site: Site, eg3_venv: Path, runtime_dir: Path) -> GatewayProcess:
    """Start Enterprise Gateway with the command, configuration, environment file and working directory of the role's systemd unit.

    It runs as the user running the tests, not as the unit's User=, so start
    requests must name KERNEL_USERNAME when that user is root.
    """
    environment = read_environment_file(site.base / "etc" / "gateway.env")
    argv = [str(eg3_venv / "bin" / "python"), "-m", "slurmgate.provisioners.eg3_app", f"--config={site.base / 'etc' / EG3_CONFIG_NAME}"]
    log_path = runtime_dir / "gateway.log"
    with open(log_path, "w") as log_file:
        process = subprocess.Popen(
            argv, stdout=log_file, stderr=subprocess.STDOUT, cwd=site.extra_vars["slurmgate_gateway_working_dir"],
            env=dict(os.environ, JUPYTER_RUNTIME_DIR=str(runtime_dir), **environment), start_new_session=True,
        )
    url = f"http://127.0.0.1:{site.extra_vars['slurmgate_gateway_port']}"
    server = GatewayProcess(process, Gateway(url, token=environment["EG_AUTH_TOKEN"]), log_path)
    try:
        server.wait_ready()
    except BaseException:
        server.stop()
        raise
    return server


@pytest.mark.cluster
def test_eg3_example_creates_kernelspecs(eg3_converged):
    site, first_run = eg3_converged
    assert first_run.recap["changed"] > 0
    assert sorted(path.name for path in site.kernels_dir.iterdir()) == ["slurm-cpu", "slurm-gpu"]
    spec = json.loads((site.kernels_dir / "slurm-gpu" / "kernel.json").read_text())
    # The kernels run from the main venv, not from Enterprise Gateway's.
    assert spec["argv"] == [site.extra_vars["slurmgate_venv"] + "/bin/python", "-m", "slurmgate.provisioners.launcher"]
    assert "kernel_provisioner" not in spec["metadata"]
    assert spec["metadata"]["process_proxy"] == {
        "class_name": PROCESS_PROXY_CLASS,
        "config": {"partition": "gpu", "gpus": 1, "cpus": 4, "memory": "8G", "walltime": "1:00:00", "extra_directives": ["--no-requeue"]},
    }


@pytest.mark.cluster
def test_eg3_example_writes_gateway_config(eg3_converged):
    site, first_run = eg3_converged
    config_dir = site.base / "etc"
    assert not (config_dir / CONFIG_NAME).exists()
    config = PyFileConfigLoader(EG3_CONFIG_NAME, path=str(config_dir)).load_config()
    assert config.EnterpriseGatewayApp.ip == "127.0.0.1"
    assert config.EnterpriseGatewayApp.port == site.extra_vars["slurmgate_gateway_port"]
    assert config.EnterpriseGatewayApp.port_retries == 0
    assert config.EnterpriseGatewayApp.default_kernel_name == "slurm-cpu"
    assert config.EnterpriseGatewayApp.list_kernels is True
    assert config.EnterpriseGatewayApp.unauthorized_users == {"root"}
    assert config.EnterpriseGatewayApp.kernel_manager_class == "slurmgate.provisioners.eg3.SlurmRemoteMappingKernelManager"
    assert config.KernelSpecManager.whitelist == ["slurm-cpu", "slurm-gpu"]
    assert config.SlurmKernelConfig.launch_timeout == 600.0
    assert config.SlurmKernelConfig.allowed_partitions == ["cpu", "gpu"]
    assert config.SlurmKernelConfig.partition_limits == {
        "cpu": {"max_cpus": 8, "max_walltime": "8:00:00"},
        "gpu": {"max_gpus": 2, "max_memory": "32G", "max_walltime": "2:00:00"},
    }
    assert site.token not in (config_dir / EG3_CONFIG_NAME).read_text()
    assert site.token not in first_run.output
    environment_file = config_dir / "gateway.env"
    assert stat.S_IMODE(environment_file.stat().st_mode) == 0o600
    environment = read_environment_file(environment_file)
    assert environment["EG_AUTH_TOKEN"] == site.token
    assert "KG_AUTH_TOKEN" not in environment
    assert environment["JUPYTER_PATH"] == str(site.base / "prefix" / "share" / "jupyter")


@pytest.mark.cluster
def test_eg3_example_writes_systemd_unit(eg3_converged, eg3_venv):
    site, _ = eg3_converged
    unit_path = site.base / "systemd" / "slurmgate-gateway.service"
    unit = unit_path.read_text()
    config = site.base / "etc" / EG3_CONFIG_NAME
    assert f'ExecStart="{eg3_venv}/bin/python" -m slurmgate.provisioners.eg3_app "--config={config}"\n' in unit
    assert f"User={getpass.getuser()}\n" in unit
    assert "Description=Jupyter Enterprise Gateway for kernels that run as Slurm jobs (slurmgate)\n" in unit
    if shutil.which("systemd-analyze") is not None:
        result = subprocess.run(["systemd-analyze", "verify", str(unit_path)], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.cluster
def test_eg3_second_run_changes_nothing(eg3_converged):
    site, _ = eg3_converged
    second_run = site.run()
    assert second_run.returncode == 0, second_run.output
    assert second_run.recap["changed"] == 0, second_run.output


@pytest.mark.cluster
def test_eg3_check_diff_after_converge_is_clean(eg3_converged):
    site, _ = eg3_converged
    check_run = site.run("--check", "--diff")
    assert check_run.returncode == 0, check_run.output
    assert check_run.recap["changed"] == 0, check_run.output
    assert site.token not in check_run.output


@pytest.mark.cluster
def test_eg3_gpu_kernel_runs_on_gpu_partition(eg3_converged, eg3_venv, tmp_path):
    site, _ = eg3_converged
    server = start_role_enterprise_gateway(site, eg3_venv, tmp_path)
    gateway = server.gateway
    job_id = None
    kernel_id = None
    try:
        # Only the role's kernelspecs are offered, not the EG venv's own python3.
        assert sorted(gateway.kernelspecs()) == ["slurm-cpu", "slurm-gpu"]
        kernel_id = gateway.start_kernel("slurm-gpu", env=EG3_USER_ENV, timeout=120)["id"]
        job_id = gateway.kernel(kernel_id)["slurm"]["job_id"]
        assert squeue_fields(job_id) == ["gpu", "gres:gpu:1"]
        channels = gateway.connect(kernel_id)
        try:
            result = channels.execute("import os, sys; print(sys.executable, os.environ['SLURM_JOB_PARTITION'])")
        finally:
            channels.close()
        assert result.stdout.split() == [site.extra_vars["slurmgate_venv"] + "/bin/python", "gpu"]
        gateway.shutdown(kernel_id)
        kernel_id = None
        assert wait_until(lambda: not squeue_ids(f"--jobs={job_id}"), 15)
    finally:
        if kernel_id is not None:
            try:
                gateway.shutdown(kernel_id)
            except (GatewayError, OSError):
                pass  # The gateway stop below shuts the kernel down, and the scancel cancels its job.
        server.stop()
        if job_id is not None and squeue_ids(f"--jobs={job_id}"):
            subprocess.run(["scancel", job_id], check=False)


@pytest.mark.cluster
def test_check_on_new_host_writes_nothing(slurm_cluster, make_site, tmp_path):
    site = make_site("new-host")
    site.extra_vars["slurmgate_venv"] = str(tmp_path / "no-venv-yet")
    check_run = site.run("--check", "--diff")
    assert check_run.returncode == 0, check_run.output
    assert check_run.recap["changed"] > 0
    # The diff shows the new files' content, except the environment file's.
    assert "c.KernelGatewayApp.port = 8888" in check_run.output
    assert site.token not in check_run.output
    assert not (tmp_path / "no-venv-yet").exists()
    assert not (site.base / "prefix").exists()
    assert not (site.base / "etc").exists()
    assert not (site.base / "work").exists()
    assert list((site.base / "systemd").iterdir()) == []


@pytest.mark.cluster
def test_removed_entry_removes_only_its_kernelspec(converged, make_site):
    converged_site, _ = converged
    site = make_site("removal")
    shutil.copytree(converged_site.kernels_dir, site.kernels_dir)
    assert slurm_spec_main(["install", "--name=python-local", "--partition=cpu", f"--prefix={site.base / 'prefix'}"]) == 0
    gpu_only = [entry for entry in example_partitions() if entry["name"] == "slurm-gpu"]
    removal_run = site.run(slurmgate_partitions=gpu_only)
    assert removal_run.returncode == 0, removal_run.output
    assert sorted(path.name for path in site.kernels_dir.iterdir()) == ["python-local", "slurm-gpu"]
    config = PyFileConfigLoader(CONFIG_NAME, path=str(site.base / "etc")).load_config()
    assert config.KernelSpecManager.allowed_kernelspecs == ["slurm-gpu"]


@pytest.mark.cluster
def test_unmanaged_kernelspec_is_not_overwritten(converged, make_site):
    site = make_site("foreign")
    assert slurm_spec_main(["install", "--name=slurm-gpu", "--partition=gpu", f"--prefix={site.base / 'prefix'}"]) == 0
    written = (site.kernels_dir / "slurm-gpu" / "kernel.json").read_bytes()
    run = site.run()
    assert run.returncode != 0
    assert "Kernelspec directories slurm-gpu exist in" in run.output
    assert "were not written by this role" in run.output
    assert (site.kernels_dir / "slurm-gpu" / "kernel.json").read_bytes() == written
    assert not (site.kernels_dir / "slurm-cpu").exists()


INVALID_SETTINGS = {
    "missing partition": (
        {"slurmgate_partitions": [{"name": "slurm-nosuch", "partition": "nosuch"}, {"name": "slurm-cpu", "partition": "cpu"}]},
        "Slurm partition 'nosuch' of slurmgate_partitions entry 'slurm-nosuch' does not exist on this cluster",
    ),
    "default over maximum": (
        {"slurmgate_partitions": [{"name": "slurm-gpu", "partition": "gpu", "gpus": 4, "max_gpus": 2}]},
        "slurmgate_partitions entry 'slurm-gpu' (partition 'gpu'): gpus 4 is more than max_gpus 2",
    ),
    "unquoted walltime": (
        {"slurmgate_partitions": [{"name": "slurm-cpu", "partition": "cpu", "walltime": 3600}]},
        "walltime: invalid time 3600: write the time limit as a quoted string",
    ),
    "enterprise gateway in the kernels' venv": (
        {"slurmgate_gateway_kind": "enterprisegateway", "slurmgate_eg3_venv": "{{ slurmgate_venv }}/"},
        "slurmgate_eg3_venv and slurmgate_venv are both",
    ),
    "short token": (
        {"slurmgate_gateway_auth_token": "short"},
        "slurmgate_gateway_auth_token is missing or invalid",
    ),
}


@pytest.mark.cluster
@pytest.mark.parametrize("case", INVALID_SETTINGS, ids=list(INVALID_SETTINGS))
def test_invalid_settings_fail_before_changes(slurm_cluster, make_site, case):
    overrides, message = INVALID_SETTINGS[case]
    site = make_site("invalid")
    run = site.run(**overrides)
    assert run.returncode != 0
    assert message in run.output
    assert not (site.base / "prefix").exists()
    assert not (site.base / "etc").exists()


def test_filters_doctests():
    results = doctest.testmod(load_filters())
    assert results.attempted > 0
    assert results.failed == 0


FULL_ENTRY = {
    "name": "Slurm-GPU-Long", "display_name": "Python 3 (2× A100, 8 h)", "partition": "gpu", "gpus": 2,
    "gpu_type": "a100", "cpus": 8, "memory": "64G", "walltime": "8:00:00", "account": "proj1", "qos": "normal",
    "reservation": "maint", "constraint": "a100&ib", "kernel_ip": "loopback",
    "extra_directives": ["--exclusive", "--nice=10"], "prologue": ["module load cuda", "echo 'ready'"],
    "launch_timeout": 900, "job_output": "/scratch/%u/jupyter-%j.log", "max_gpus": 4,
}


@pytest.mark.parametrize("layout", ["provisioner", "eg3"])
@pytest.mark.parametrize("entry", [FULL_ENTRY, {"name": "cpu-small", "partition": "cpu", "gpus": 0}], ids=["all-settings", "defaults"])
def test_kernelspec_filter_matches_cli(entry, layout, tmp_path):
    python = "/opt/slurmgate/bin/python"
    options = ["install", *cli_options(entry), f"--gateway={layout}", f"--python={python}", f"--prefix={tmp_path}"]
    assert slurm_spec_main(options) == 0
    written = (tmp_path / "share/jupyter/kernels" / entry["name"].lower() / "kernel.json").read_text()
    assert load_filters().kernelspec_json(entry, python, layout) == written


def test_kernelspec_filter_rejects_unknown_layout():
    with pytest.raises(ValueError, match="invalid kernelspec layout 'eg2'"):
        load_filters().kernelspec({"name": "slurm-cpu", "partition": "cpu"}, "/opt/slurmgate/bin/python", "eg2")


@pytest.mark.parametrize("value", ["1", "512M", "16G", "1T", "1500K", "2048", 4096, "8gb"])
def test_memory_filter_matches_slurmgate(value):
    assert load_filters().memory_mb(value) == parse_memory(value)


@pytest.mark.parametrize("value", ["30", "0:45", "10:00", "1:30:00", "2-12", "3-4:05", "1-00:00:00"])
def test_walltime_filter_matches_slurmgate(value):
    assert load_filters().walltime_seconds(value) == parse_walltime(value)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda filters: filters.memory_mb("16 GB"), "invalid memory size '16 GB'"),
        (lambda filters: filters.memory_mb("0"), "ask for at least 1M"),
        (lambda filters: filters.walltime_seconds("90 minutes"), "invalid time '90 minutes'"),
        (lambda filters: filters.walltime_seconds(60), "write the time limit as a quoted string"),
    ],
    ids=["memory-spaces", "memory-zero", "walltime-words", "walltime-number"],
)
def test_unit_filters_reject_bad_values(call, message):
    with pytest.raises(ValueError, match=message):
        call(load_filters())


def test_partition_errors_report_each_problem():
    entries = [
        {"name": "gpu-a", "partition": "gpu", "gpus": 3, "max_gpus": 2, "extra_directives": ["exclusive"]},
        {"name": "gpu-b", "partition": "gpu", "max_gpus": 4, "kernel_ip": "0.0.0.0"},
        {"name": "GPU-A", "partition": "gpu large"},
    ]
    errors = load_filters().partition_errors(entries)
    assert "slurmgate_partitions entry 'gpu-a' (partition 'gpu'): gpus 3 is more than max_gpus 2; lower gpus or raise max_gpus" in errors
    assert any("invalid extra #SBATCH directive 'exclusive'" in error for error in errors)
    assert any("invalid kernel_ip '0.0.0.0': use loopback or node" in error for error in errors)
    assert any("the kernelspec name 'gpu-a' is used twice" in error for error in errors)
    assert any("invalid partition 'gpu large'" in error for error in errors)
    assert any("entries 'gpu-a' and 'gpu-b' set max_gpus 2 and 4 for partition 'gpu'" in error for error in errors)
    assert len(errors) == 6, errors


def test_partition_errors_accept_example():
    assert load_filters().partition_errors(example_partitions()) == []
