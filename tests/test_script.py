import shlex
import subprocess

from slurmgate.slurm.request import JobRequest
from slurmgate.slurm.script import render_job_script


def test_script_headers_and_exec():
    request = JobRequest("jupyter-kernel-7", partition="gpu", gpus=1, walltime_s=1800, working_dir="/home/a b/nb")
    script = render_job_script(request, ["/opt/venv/bin/python", "-m", "slurmgate.provisioners.launcher"],
                               environment={"SLURMGATE_KERNEL_ID": "7"}, prologue=["module load cuda"])
    lines = script.splitlines()
    assert lines[0] == "#!/bin/bash"
    assert "#SBATCH --gres=gpu:1" in lines
    assert "#SBATCH --time=0:30:00" in lines
    assert "#SBATCH --chdir='/home/a b/nb'" in lines
    assert lines.index("module load cuda") < lines.index("export SLURMGATE_KERNEL_ID=7")
    assert "cd -- '/home/a b/nb' || exit 1" in lines
    assert lines[-1] == "exec /opt/venv/bin/python -m slurmgate.provisioners.launcher"


def test_script_quotes_hostile_values():
    hostile = "$(touch /tmp/pwned); `id` 'quote'"
    script = render_job_script(JobRequest("k"), ["python3", "-c", hostile], environment={"NOTE": hostile})
    assert f"export NOTE={shlex.quote(hostile)}" in script
    assert script.splitlines()[-1] == "exec " + shlex.join(["python3", "-c", hostile])


def test_script_quoting_survives_bash():
    hostile = "$(echo bad) ; echo 'q' \"dq\" \\"
    script = render_job_script(JobRequest("k"), ["printf", "%s|%s", hostile, "$HOME"], environment={"X": hostile})
    body = "\n".join(line for line in script.splitlines() if not line.startswith("#"))
    output = subprocess.run(["bash", "-c", body.replace("exec ", "")], capture_output=True, text=True).stdout
    assert output == f"{hostile}|$HOME"


def test_script_contains_no_secret_values():
    script = render_job_script(JobRequest("k"), ["python3"], environment={"SLURMGATE_KERNEL_ID": "k"})
    assert "SLURMGATE_REPLY_KEY" not in script
    assert "SLURMGATE_CONNECTION_KEY" not in script


def test_script_rejects_empty_command():
    try:
        render_job_script(JobRequest("k"), [])
    except ValueError as error:
        assert "argv" in str(error)
    else:
        raise AssertionError("an empty command was accepted")
