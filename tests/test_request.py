import pytest

from slurmgate.slurm.request import JobRequest, RequestError, request_from_settings


def test_sbatch_options_full_request():
    request = request_from_settings(
        "jupyter-kernel-1",
        {
            "partition": "gpu", "gpus": "2", "gpu_type": "a100", "cpus": 4, "memory": "16G",
            "walltime": "1:30:00", "account": "physics", "qos": "interactive", "reservation": "course",
            "constraint": "ib&avx2", "output": "/scratch/%u/jupyter-%j.log", "working_dir": "/home/alice/notebooks",
            "extra_directives": ["--exclusive"],
        },
    )
    assert request.sbatch_options() == [
        "--job-name=jupyter-kernel-1",
        "--partition=gpu",
        "--gres=gpu:a100:2",
        "--cpus-per-task=4",
        "--mem=16G",
        "--time=1:30:00",
        "--account=physics",
        "--qos=interactive",
        "--reservation=course",
        "--constraint=ib&avx2",
        "--output=/scratch/%u/jupyter-%j.log",
        "--chdir=/home/alice/notebooks",
        "--exclusive",
    ]


def test_defaults_leave_partition_defaults():
    options = JobRequest("k").sbatch_options()
    assert options == ["--job-name=k", "--cpus-per-task=1"]


def test_signal_lead_renders_batch_signal():
    assert "--signal=B:USR1@300" in JobRequest("k", signal_lead_s=300).sbatch_options()


BAD_SETTINGS = [
    ({"gpus": "two"}, "gpus", "invalid gpus 'two'"),
    ({"gpus": -1}, "gpus", "from 0 to 100000"),
    ({"gpus": 10**20}, "gpus", "from 0 to 100000"),
    ({"gpus": "١"}, "gpus", "invalid gpus"),
    ({"memory": "５１２M"}, "memory", "invalid memory size"),
    ({"memory": "99999999999999999999T"}, "memory", "more than any node has"),
    ({"working_dir": "relative/dir"}, "working_dir", "use an absolute path"),
    ({"extra_directives": ["--time=5"]}, "extra_directives", "sets --time, which slurmgate sets itself"),
    ({"extra_directives": ["--export=ALL"]}, "extra_directives", "sets --export"),
    ({"extra_directives": ["-t 5"]}, "extra_directives", "sets -t"),
    ({"gpus": "1.5"}, "gpus", "whole number"),
    ({"cpus": 0}, "cpus", "from 1 to 100000"),
    ({"cpus": True}, "cpus", "whole number"),
    ({"memory": "16 GB"}, "memory", "invalid memory size '16 GB'"),
    ({"memory": "0"}, "memory", "at least 1M"),
    ({"walltime": "90 minutes"}, "walltime", "invalid time '90 minutes'"),
    ({"walltime": "UNLIMITED"}, "walltime", "finite time limit"),
    ({"partition": "gpu;rm -rf"}, "partition", "invalid partition 'gpu;rm -rf'"),
    ({"partition": "gpu\n#SBATCH --uid=0"}, "partition", "invalid partition"),
    ({"account": "a b"}, "account", "invalid account"),
    ({"qos": "'x'"}, "qos", "invalid qos"),
    ({"constraint": "a b"}, "constraint", "invalid constraint"),
    ({"gpu_type": "a100 x"}, "gpu_type", "invalid GPU type"),
    ({"output": "/tmp/a'b"}, "output", "invalid output"),
    ({"working_dir": "/home/x\n/y"}, "working_dir", "invalid working dir"),
    ({"extra_directives": ["exclusive"]}, "extra_directives", "starting with '-'"),
    ({"extra_directives": ["--exclusive\n#SBATCH --x"]}, "extra_directives", "one sbatch option per entry"),
    ({"bogus": 1}, "bogus", "unknown request field 'bogus'"),
]


@pytest.mark.parametrize(("settings", "field", "message"), BAD_SETTINGS)
def test_request_rejects_bad_values(settings, field, message):
    with pytest.raises(RequestError, match=message) as caught:
        request_from_settings("k", settings)
    assert caught.value.field == field


def test_job_name_validated():
    with pytest.raises(RequestError, match="invalid job name"):
        JobRequest("name with space").validate()


def test_empty_settings_keep_defaults():
    request = request_from_settings("k", {"reservation": "", "account": None, "memory": ""})
    assert request.reservation is None
    assert request.account is None
    assert request.memory_mb is None
