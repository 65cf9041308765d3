"""The CLI client and the shared poller against the real dev cluster."""

import subprocess

import pytest

from support import TEST_JOB_PREFIX, WAITING_FOR_GPU, squeue_ids, wait_until
from slurmgate.slurm.client import SlurmClient, SlurmError
from slurmgate.slurm.poller import JobPoller
from slurmgate.slurm.request import JobRequest
from slurmgate.slurm.script import render_job_script

pytestmark = pytest.mark.cluster


@pytest.fixture
def client(slurm_cluster):
    return SlurmClient()


@pytest.fixture
def cancel_after():
    ids = []
    yield ids.append
    if ids:
        subprocess.run(["scancel", *ids], check=False)


def test_submit_passes_values_not_in_script(client, cancel_after, tmp_path):
    output = tmp_path / "out.txt"
    request = JobRequest(f"{TEST_JOB_PREFIX}job", output=str(output))
    script = render_job_script(request, ["bash", "-c", 'echo "value=$SECRET_VALUE other=${NOT_EXPORTED:-unset}"'])
    job_id = client.submit(script, {"SECRET_VALUE": "s3cret"})
    cancel_after(job_id)
    assert wait_until(lambda: output.exists() and "value=" in output.read_text(), 20)
    assert output.read_text().strip() == "value=s3cret other=unset"
    stored = subprocess.run(["scontrol", "write", "batch_script", job_id, "-"], capture_output=True, text=True).stdout
    assert "s3cret" not in stored


def test_job_environment_is_exactly_export(client, cancel_after, tmp_path):
    output = tmp_path / "env.txt"
    request = JobRequest(f"{TEST_JOB_PREFIX}job", output=str(output))
    script = render_job_script(request, ["bash", "-c", "env -0 > " + str(tmp_path / "env.bin") + "; echo done"])
    job_id = client.submit(script, {"PATH": "/usr/bin:/bin", "ONLY_THIS": "1"})
    cancel_after(job_id)
    assert wait_until(lambda: output.exists() and "done" in output.read_text(), 20)
    names = {entry.split("=", 1)[0] for entry in (tmp_path / "env.bin").read_text().split("\0") if entry}
    unexpected = {name for name in names if not name.startswith(("SLURM", "SLURMD_"))} - {
        "PATH", "ONLY_THIS", "ENVIRONMENT", "HOSTNAME", "PWD", "SHLVL", "_", "TMPDIR", "OLDPWD",
        "CUDA_VISIBLE_DEVICES", "GPU_DEVICE_ORDINAL", "ROCR_VISIBLE_DEVICES", "ZES_ENABLE_SYSMAN",
    }
    assert "ONLY_THIS" in names
    assert unexpected == set()


def test_query_running_pending_and_unknown(client, submit_job, block_gpus):
    blockers = block_gpus()
    waiting = submit_job("sleep 30", "job", "--partition=gpu", "--gres=gpu:1")
    states = client.query([*blockers, waiting, "999999"])
    assert set(states) == {*blockers, waiting}
    assert all(states[job_id].is_running for job_id in blockers)
    assert states[waiting].is_pending
    assert states[waiting].partition == "gpu"
    assert wait_until(lambda: client.query([waiting])[waiting].reason in WAITING_FOR_GPU, 10)


def test_query_only_unknown_jobs(client):
    assert client.query(["999998", "999999"]) == {}
    assert client.query([]) == {}


def test_query_rejects_bad_job_id(client):
    with pytest.raises(ValueError, match="invalid Slurm job id '1;rm'"):
        client.query(["1;rm"])


def test_cancel_and_end_details(client, submit_job):
    job_id = submit_job("sleep 300")
    assert wait_until(lambda: client.query([job_id])[job_id].is_running, 10)
    client.cancel(job_id)
    # Gone from squeue's default listing (pending, running, completing). The
    # kernel tests hold the 2 s promise; a loaded slurmd may take a little longer here.
    assert wait_until(lambda: not squeue_ids(f"--jobs={job_id}"), 5)
    assert wait_until(lambda: client.query([job_id])[job_id].base_state == "CANCELLED", 10)
    assert client.show_job(job_id).state == "CANCELLED"
    client.cancel(job_id)  # cancelling an ended job is not an error


def test_failed_job_exit_code_from_accounting(client, submit_job):
    job_id = submit_job("exit 3")
    assert wait_until(lambda: client.query([job_id]).get(job_id) and client.query([job_id])[job_id].has_ended, 15)
    record = wait_until(lambda: client.accounting(job_id), 10)
    assert record is not None
    assert record.state == "FAILED"
    assert record.exit_code == 3


def test_submit_error_names_command_and_reason(client):
    script = render_job_script(JobRequest(f"{TEST_JOB_PREFIX}job", partition="nosuchpartition"), ["true"])
    with pytest.raises(SlurmError) as caught:
        client.submit(script, {})
    message = str(caught.value)
    assert "sbatch --parsable --export=ALL" in message
    assert "exit code 1" in message
    assert "Invalid partition name specified" in message


def test_poller_one_squeue_call_for_all_jobs(client, submit_job):
    jobs = [submit_job("sleep 120") for _ in range(6)]
    poller = JobPoller(client, interval=60, fast_interval=60)
    for job_id in jobs:
        poller.track(job_id, urgent=False)
    assert wait_until(lambda: all(poller.get(job_id) for job_id in jobs), 10)
    # One refresh of six tracked jobs costs exactly one squeue call.
    before = poller.query_count
    poller.poll_once()
    assert poller.query_count == before + 1
    assert all(poller.get(job_id).job_id == job_id for job_id in jobs)
    for job_id in jobs:
        poller.untrack(job_id)


def test_poller_keeps_states_when_squeue_fails(client, submit_job):
    job_id = submit_job("sleep 120")
    poller = JobPoller(client, interval=60, fast_interval=60)
    poller.track(job_id, urgent=False)
    assert wait_until(lambda: poller.get(job_id), 10)
    before = poller.get(job_id)
    client.queue_command = "/nonexistent/squeue"
    poller.poll_once()
    poller.poll_once()
    assert poller.failure_count == 2
    assert poller.consecutive_failures == 2
    assert poller.get(job_id) == before
    assert not poller.get(job_id).has_ended
    assert "command not found" in poller.last_error
    client.queue_command = "squeue"
    poller.poll_once()
    assert poller.consecutive_failures == 0
    poller.untrack(job_id)
