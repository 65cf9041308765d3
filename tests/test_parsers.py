"""Parsers fed the literal output of Slurm 22.05 commands on the dev cluster."""

from datetime import datetime

import pytest

from slurmgate.slurm.parsers import (
    ParseError,
    parse_sacct,
    parse_sbatch_parsable,
    parse_scontrol_job,
    parse_scontrol_record,
    parse_squeue,
)

# squeue --noheader --states=all --format=%i|%T|%r|%N|%P|%u|%M|%l|%S|%e|%b|%j|%k
SQUEUE_OUTPUT = """\
16|FAILED|NonZeroExitCode|vm|cpu|root|0:01|1:00:00|2026-12-04T20:47:59|2026-12-04T20:48:00|N/A|wrap|(null)
17|FAILED|JobLaunchFailure|vm|cpu|root|0:00|1:00:00|2026-12-04T20:48:01|2026-12-04T20:48:01|N/A|wrap|(null)
15|PENDING|Resources||gpu|root|0:00|2:00:00|2026-12-04T22:47:59|2026-12-05T00:47:59|gres:gpu:1|pend|(null)
9|PENDING|Nodes required for job are DOWN, DRAINED or reserved for jobs in higher priority partitions||cpu|root|0:00|1:00:00|N/A|N/A|N/A|wrap|(null)
13|RUNNING|None|vm|gpu|root|0:02|2:00:00|2026-12-04T20:47:59|2026-12-04T22:47:59|gres:gpu:1|wrap|(null)
5|RUNNING|None|vm|cpu|root|1-02:03:04|UNLIMITED|2026-12-04T20:47:36|N/A|N/A|kernel timeout|(null)
21|RUNNING|None|vm|gpu|root|0:03|2:00:00|2026-12-04T20:50:21|2026-12-04T22:50:21|gres:gpu:1|jupyter-kernel-4991|slurmgate-v1:SImseX|with|bars
"""


def test_squeue_states_and_reasons():
    jobs = {job.job_id: job for job in parse_squeue(SQUEUE_OUTPUT)}
    assert len(jobs) == 7
    assert jobs["15"].is_pending
    assert jobs["15"].reason == "Resources"
    assert jobs["15"].nodes == ""
    assert jobs["15"].gres == "gres:gpu:1"
    assert jobs["15"].start_time == datetime(2026, 12, 4, 22, 47, 59)
    assert jobs["9"].reason.startswith("Nodes required for job are DOWN, DRAINED")
    assert jobs["13"].is_running
    assert jobs["13"].nodes == "vm"
    assert jobs["16"].has_ended
    assert jobs["16"].reason == "NonZeroExitCode"
    assert jobs["16"].gres == ""


def test_squeue_times():
    jobs = {job.job_id: job for job in parse_squeue(SQUEUE_OUTPUT)}
    assert jobs["16"].time_used_s == 1
    assert jobs["16"].time_limit_s == 3600
    assert jobs["5"].time_used_s == 93784
    assert jobs["5"].time_limit_s is None
    assert jobs["9"].start_time is None


def test_squeue_comment_keeps_separator():
    job = parse_squeue(SQUEUE_OUTPUT)[-1]
    assert job.name == "jupyter-kernel-4991"
    assert job.comment == "slurmgate-v1:SImseX|with|bars"
    assert job.is_running


def test_squeue_empty_output():
    assert parse_squeue("") == []
    assert parse_squeue("\n\n") == []


def test_squeue_wrong_field_count():
    with pytest.raises(ParseError, match="expected 13"):
        parse_squeue("16|FAILED|NonZeroExitCode\n")


def test_sbatch_parsable():
    assert parse_sbatch_parsable("4242\n") == "4242"
    assert parse_sbatch_parsable("4242;cluster2\n") == "4242"
    assert parse_sbatch_parsable("sbatch: warning: something odd\n4243\n") == "4243"


@pytest.mark.parametrize("output", ["", "Submitted batch job 12\n", "abc\n"])
def test_sbatch_parsable_rejects(output):
    with pytest.raises(ParseError, match="printed no job id"):
        parse_sbatch_parsable(output)


# scontrol --oneliner show job 16
SCONTROL_FAILED = (
    "JobId=16 JobName=wrap UserId=root(0) GroupId=root(0) MCS_label=N/A Priority=4294901744 Nice=0 Account=(null)"
    " QOS=(null) JobState=FAILED Reason=NonZeroExitCode Dependency=(null) Requeue=1 Restarts=0 BatchFlag=1 Reboot=0"
    " ExitCode=3:0 RunTime=00:00:01 TimeLimit=01:00:00 TimeMin=N/A SubmitTime=2026-12-04T20:47:59"
    " EligibleTime=2026-12-04T20:47:59 AccrueTime=2026-12-04T20:47:59 StartTime=2026-12-04T20:47:59"
    " EndTime=2026-12-04T20:48:00 Deadline=N/A SuspendTime=None SecsPreSuspend=0 LastSchedEval=2026-12-04T20:47:59"
    " Scheduler=Backfill Partition=cpu AllocNode:Sid=localhost:1120 ReqNodeList=(null) ExcNodeList=(null) NodeList=vm"
    " BatchHost=vm NumNodes=1 NumCPUs=1 NumTasks=1 CPUs/Task=1 ReqB:S:C:T=0:0:*:* TRES=cpu=1,mem=500M,node=1,billing=1"
    " Socks/Node=* NtasksPerN:B:S:C=0:0:*:* CoreSpec=* MinCPUsNode=1 MinMemoryCPU=500M MinTmpDiskNode=0"
    " Features=(null) DelayBoot=00:00:00 OverSubscribe=OK Contiguous=0 Licenses=(null) Network=(null) Command=(null)"
    " WorkDir=/tmp/sg StdErr=/dev/null StdIn=/dev/null StdOut=/dev/null Power= \n"
)

# scontrol show job 1 (multi-line form), shortened to the fields the parser reads.
SCONTROL_MULTILINE = """\
JobId=1 JobName=test comment
   UserId=root(0) GroupId=root(0) MCS_label=N/A
   JobState=COMPLETED Reason=None Dependency=(null)
   Requeue=1 Restarts=0 BatchFlag=1 Reboot=0 ExitCode=0:0
   RunTime=00:00:03 TimeLimit=02:00:00 TimeMin=N/A
   StartTime=2026-12-04T20:44:56 EndTime=2026-12-04T20:44:59 Deadline=N/A
   Partition=gpu AllocNode:Sid=localhost:1120
   NodeList=vm
   Comment=AAAA
   TresPerNode=gres:gpu:1
"""


def test_scontrol_failed_job():
    job = parse_scontrol_job(SCONTROL_FAILED)
    assert job.job_id == "16"
    assert job.state == "FAILED"
    assert job.exit_code == 3
    assert job.signal is None
    assert job.reason == "NonZeroExitCode"
    assert job.partition == "cpu"
    assert job.user == "root"
    assert job.time_limit_s == 3600
    assert job.describe_end() == "Slurm job 16 ended with state FAILED (exit code 3)"


def test_scontrol_signal_and_underscored_reason():
    text = SCONTROL_FAILED.replace("ExitCode=3:0", "ExitCode=0:11").replace(
        "Reason=NonZeroExitCode", "Reason=Nodes_required_for_job_are_DOWN,_DRAINED")
    job = parse_scontrol_job(text)
    assert job.exit_code is None
    assert job.signal == 11
    assert job.reason == "Nodes required for job are DOWN, DRAINED"


def test_scontrol_multiline_and_spaces():
    job = parse_scontrol_job(SCONTROL_MULTILINE)
    assert job.name == "test comment"
    assert job.comment == "AAAA"
    assert job.gres == "gres:gpu:1"
    assert job.end_time == datetime(2026, 12, 4, 20, 44, 59)


def test_scontrol_record_keys_with_slashes():
    record = parse_scontrol_record(SCONTROL_FAILED)
    assert record["CPUs/Task"] == "1"
    assert record["AllocNode:Sid"] == "localhost:1120"
    assert record["Power"] == ""


def test_scontrol_garbage():
    with pytest.raises(ParseError):
        parse_scontrol_job("slurm_load_jobs error: Invalid job id specified\n")


# sacct -c -n -P -X -o JobID,State,ExitCode,Reason,NodeList,Partition,User,Start,End,Timelimit,JobName
SACCT_COMPLETION = """\
16|FAILED|3:0||vm|cpu|root(0)|2026-12-04T20:47:59|2026-12-04T20:48:00|60|wrap
17|FAILED|0:11||vm|cpu|root(0)|2026-12-04T20:48:01|2026-12-04T20:48:01|60|wrap
10|CANCELLED|0:0||(null)|cpu|root(0)|2026-12-04T20:47:38|2026-12-04T20:47:38|60|wrap
"""

# The same columns from slurmdbd's accounting, with states it adds.
SACCT_DATABASE = """\
31|CANCELLED by 1001|0:15|None|node01|gpu|alice|2026-12-04T21:00:00|2026-12-04T21:05:00|01:00:00|jupyter-kernel-a
32|TIMEOUT|0:0|None|node02|gpu|bob|2026-12-04T21:00:00|2026-12-04T22:00:00|01:00:00|jupyter-kernel-b
33|OUT_OF_MEMORY|0:125|None|node03|cpu|carol|2026-12-04T21:00:00|2026-12-04T21:00:30|00:30:00|jupyter-kernel-c
34|NODE_FAIL|0:0|None|node04|cpu|dave|2026-12-04T21:00:00|2026-12-04T21:10:00|00:30:00|jupyter-kernel-d
35|PREEMPTED|0:0|None|node05|gpu|erin|2026-12-04T21:00:00|2026-12-04T21:20:00|UNLIMITED|jupyter-kernel-e
"""


def test_sacct_completion_file():
    jobs = {job.job_id: job for job in parse_sacct(SACCT_COMPLETION)}
    assert jobs["16"].exit_code == 3
    assert jobs["16"].time_limit_s == 3600
    assert jobs["17"].signal == 11
    assert jobs["10"].state == "CANCELLED"
    assert jobs["10"].nodes == ""
    assert jobs["10"].cancelled_by == ""


def test_sacct_database_states():
    jobs = {job.job_id: job for job in parse_sacct(SACCT_DATABASE)}
    assert jobs["31"].state == "CANCELLED"
    assert jobs["31"].cancelled_by == "1001"
    assert jobs["31"].describe_end() == "Slurm job 31 ended with state CANCELLED (cancelled by 1001, signal 15)"
    assert jobs["32"].base_state == "TIMEOUT"
    assert jobs["32"].has_ended
    assert jobs["33"].exit_code is None
    assert jobs["33"].signal == 125
    assert jobs["34"].describe_end() == "Slurm job 34 ended with state NODE_FAIL"
    assert jobs["35"].time_limit_s is None


def test_sacct_bad_line():
    with pytest.raises(ParseError, match="expected 11"):
        parse_sacct("31|CANCELLED\n")
