"""The Slurm client over SSH, as a gateway off the cluster uses it, against a real sshd on loopback."""

from __future__ import annotations

import subprocess

import pytest

from slurmgate.slurm.client import SlurmClient, SlurmError
from slurmgate.slurm.request import JobRequest
from slurmgate.slurm.runner import SSHRunner
from slurmgate.slurm.script import render_job_script
from sshd import start_sshd
from support import TEST_JOB_PREFIX, run_code, wait_until

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def ssh_client(slurm_cluster, tmp_path_factory):
    server = start_sshd(tmp_path_factory.mktemp("sshd-runner"))
    runner = SSHRunner("127.0.0.1", known_hosts=str(server.known_hosts), port=server.port,
                       username=server.username, key_filename=str(server.client_key))
    yield SlurmClient(runner), server
    runner.close()
    server.stop()


def test_submit_over_ssh_keeps_values_off_command_lines(ssh_client, tmp_path):
    client, server = ssh_client
    output = tmp_path / "out.txt"
    script = render_job_script(JobRequest(f"{TEST_JOB_PREFIX}job", output=str(output)),
                               ["bash", "-c", 'echo "value=$SECRET_VALUE"'])
    job_id = client.submit(script, {"SECRET_VALUE": "over-ssh-s3cret", "PATH": "/usr/bin:/bin"})
    try:
        assert wait_until(lambda: output.exists() and "value=" in output.read_text(), 20)
        assert output.read_text().strip() == "value=over-ssh-s3cret"
        assert "over-ssh-s3cret" not in server.log_path.read_text()
        stored = subprocess.run(["scontrol", "write", "batch_script", job_id, "-"], capture_output=True, text=True).stdout
        assert "over-ssh-s3cret" not in stored
    finally:
        subprocess.run(["scancel", job_id], check=False)


def test_query_and_cancel_over_ssh(ssh_client, submit_job):
    client, _ = ssh_client
    job_id = submit_job("sleep 300")
    assert wait_until(lambda: job_id in client.query([job_id]) and client.query([job_id])[job_id].is_running, 15)
    client.cancel(job_id)
    assert wait_until(lambda: client.query([job_id])[job_id].base_state == "CANCELLED", 5)


def test_ssh_failure_is_a_slurm_error(ssh_client):
    client, server = ssh_client
    broken = SlurmClient(SSHRunner("127.0.0.1", known_hosts=str(server.known_hosts), port=server.port,
                                   username=server.username, key_filename=str(server.known_hosts)))
    with pytest.raises(SlurmError, match="SSH to 127.0.0.1 failed"):
        broken.query(["1"])


def test_newline_in_value_rejected(ssh_client):
    client, _ = ssh_client
    with pytest.raises(ValueError, match="cannot be sent over SSH"):
        client.submit(render_job_script(JobRequest(f"{TEST_JOB_PREFIX}job"), ["true"]), {"BAD": "a\nb"})


async def test_kernel_submitted_over_ssh(make_manager, ssh_client):
    _, server = ssh_client
    manager = make_manager("slurm-cpu", {
        "submit_host": f"127.0.0.1:{server.port}",
        "ssh_key_file": str(server.client_key),
        "ssh_known_hosts": str(server.known_hosts),
    })
    logins_before = server.accepted_logins()
    await manager.start_kernel()
    job_id = manager.provisioner.job_id
    assert server.accepted_logins() == logins_before + 1
    assert await run_code(manager, "import os; print(os.environ['SLURM_JOB_ID'])") == f"{job_id}\n"
    await manager.shutdown_kernel()
    assert wait_until(lambda: subprocess.run(["squeue", "--noheader", f"--jobs={job_id}"],
                                             capture_output=True, text=True).stdout.strip() == "", 5)
