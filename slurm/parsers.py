"""Parsers for the output of sbatch, squeue, scontrol and sacct.

Each function takes the text a command printed and returns data; none runs
a command. The formats are Slurm 22.05's; later releases print the same
columns for the format strings used here.
"""

from __future__ import annotations

import re
from datetime import datetime

from .jobs import JobInfo
from .units import parse_walltime


class ParseError(ValueError):
    """Slurm printed something these parsers do not understand."""


# squeue -o fields, in order. The comment comes last because it is free text
# that may contain the separator. The request validation keeps the separator
# out of the job names of slurmgate's own jobs.
SQUEUE_FIELDS = (
    ("%i", "job_id"),
    ("%T", "state"),
    ("%r", "reason"),
    ("%N", "nodes"),
    ("%P", "partition"),
    ("%u", "user"),
    ("%M", "time_used"),
    ("%l", "time_limit"),
    ("%S", "start_time"),
    ("%e", "end_time"),
    ("%b", "gres"),
    ("%j", "name"),
    ("%k", "comment"),
)
SQUEUE_FORMAT = "|".join(code for code, _ in SQUEUE_FIELDS)

SACCT_FIELDS = ("JobID", "State", "ExitCode", "Reason", "NodeList", "Partition", "User", "Start", "End", "Timelimit", "JobName")
SACCT_FORMAT = ",".join(SACCT_FIELDS)

_SBATCH_JOB_ID = re.compile(r"^(\d+)(?:;(\S+))?$")
_SCONTROL_PAIR = re.compile(r"(?:^|\s)([A-Za-z][A-Za-z0-9/:_]*)=")


def parse_sbatch_parsable(stdout: str) -> str:
    """Return the job id that ``sbatch --parsable`` printed.

    The output is ``jobid`` or ``jobid;cluster``; warnings may precede it.

    >>> parse_sbatch_parsable("4242\\n")
    '4242'
    >>> parse_sbatch_parsable("4242;hpc\\n")
    '4242'
    """
    lines = [line.strip() for line in stdout.strip().splitlines() if line.strip()]
    match = _SBATCH_JOB_ID.match(lines[-1]) if lines else None
    if match is None:
        raise ParseError(
            f"sbatch --parsable printed no job id: expected a line matching"
            f" {_SBATCH_JOB_ID.pattern!r}, got {stdout!r}"
        )
    return match.group(1)


def _none_if_unset(value: str) -> str:
    return "" if value in ("(null)", "N/A", "None", "Unknown") else value


def parse_time(value: str) -> datetime | None:
    """Parse a Slurm timestamp; ``N/A``, ``Unknown`` and ``None`` give ``None``.

    >>> parse_time("2026-12-04T20:47:59")
    datetime.datetime(2026, 12, 4, 20, 47, 59)
    >>> parse_time("N/A") is None
    True
    """
    value = _none_if_unset(value.strip())
    if not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError as error:
        raise ParseError(f"invalid Slurm timestamp {value!r}") from error


def _duration(value: str) -> int | None:
    value = value.strip()
    if value in ("", "N/A", "INVALID", "Partition_Limit"):
        return None
    try:
        return parse_walltime(value)
    except ValueError as error:
        raise ParseError(f"invalid Slurm duration {value!r}") from error


def parse_squeue(stdout: str) -> list[JobInfo]:
    """Parse ``squeue -h -o SQUEUE_FORMAT`` output into jobs.

    >>> jobs = parse_squeue("15|PENDING|Resources||gpu|root|0:00|2:00:00|N/A|N/A|gres:gpu:1|pend|(null)\\n")
    >>> jobs[0].reason, jobs[0].time_limit_s, jobs[0].comment
    ('Resources', 7200, '')
    """
    jobs = []
    count = len(SQUEUE_FIELDS)
    for line in stdout.splitlines():
        if not line.strip():
            continue
        values = line.split("|", count - 1)
        if len(values) != count:
            raise ParseError(
                f"squeue line has {len(values)} fields, expected {count}"
                f" for format {SQUEUE_FORMAT!r}: {line!r}"
            )
        row = dict(zip((name for _, name in SQUEUE_FIELDS), values))
        jobs.append(
            JobInfo(
                job_id=row["job_id"].strip(),
                state=row["state"].strip(),
                reason=_none_if_unset(row["reason"]),
                nodes=row["nodes"],
                partition=row["partition"],
                user=row["user"],
                name=row["name"],
                time_used_s=_duration(row["time_used"]),
                time_limit_s=_duration(row["time_limit"]),
                start_time=parse_time(row["start_time"]),
                end_time=parse_time(row["end_time"]),
                gres=_none_if_unset(row["gres"]),
                comment=_none_if_unset(row["comment"]),
            )
        )
    return jobs


def parse_scontrol_record(text: str) -> dict[str, str]:
    """Split one ``scontrol show`` record into its ``Key=Value`` pairs.

    Works on the one-line form (``scontrol -o``) and the multi-line form.
    A value may contain spaces (``JobName=a b``); a new pair starts only at
    whitespace followed by ``Key=``.

    >>> parse_scontrol_record("JobId=3 JobName=a b UserId=root(0) Reason=None")["JobName"]
    'a b'
    """
    matches = list(_SCONTROL_PAIR.finditer(text))
    record = {}
    for index, match in enumerate(matches):
        end = matches[index + 1].start() if index + 1 < len(matches) else len(text)
        record[match.group(1)] = text[match.end():end].strip()
    return record


def _exit_status(value: str) -> tuple[int | None, int | None]:
    """Split Slurm's ``code:signal`` exit status.

    >>> _exit_status("3:0")
    (3, None)
    >>> _exit_status("0:11")
    (None, 11)
    """
    code, _, signal = value.partition(":")
    if not code.isdigit():
        return None, None
    signal_number = int(signal) if signal.isdigit() and int(signal) else None
    return (int(code) or None), signal_number


def parse_scontrol_job(text: str) -> JobInfo:
    """Parse ``scontrol -o show job ID`` output into a job."""
    record = parse_scontrol_record(text)
    if "JobId" not in record or "JobState" not in record:
        raise ParseError(f"scontrol show job printed no JobId and JobState: {text!r}")
    exit_code, signal = _exit_status(record.get("ExitCode", ""))
    return JobInfo(
        job_id=record["JobId"],
        state=record["JobState"],
        reason=_none_if_unset(record.get("Reason", "")).replace("_", " "),
        nodes=_none_if_unset(record.get("NodeList", "")),
        partition=record.get("Partition", ""),
        user=record.get("UserId", "").split("(", 1)[0],
        name=record.get("JobName", ""),
        time_used_s=_duration(record.get("RunTime", "")),
        time_limit_s=_duration(record.get("TimeLimit", "")),
        start_time=parse_time(record.get("StartTime", "")),
        end_time=parse_time(record.get("EndTime", "")),
        gres=_none_if_unset(record.get("TresPerNode", "")),
        comment=_none_if_unset(record.get("Comment", "")),
        exit_code=exit_code,
        signal=signal,
    )


def parse_sacct(stdout: str) -> list[JobInfo]:
    """Parse ``sacct -n -P -X -o SACCT_FORMAT`` output into jobs.

    The plain accounting database and the job completion file (``sacct -c``)
    print the same columns. ``CANCELLED by UID`` keeps who cancelled.

    >>> parse_sacct("16|CANCELLED by 1000|0:15|None|vm|cpu|alice|2026-12-04T20:47:59|2026-12-04T20:48:00|60|wrap\\n")[0].cancelled_by
    '1000'
    """
    jobs = []
    for line in stdout.splitlines():
        if not line.strip():
            continue
        values = line.split("|", len(SACCT_FIELDS) - 1)
        if len(values) != len(SACCT_FIELDS):
            raise ParseError(
                f"sacct line has {len(values)} fields, expected {len(SACCT_FIELDS)}"
                f" for format {SACCT_FORMAT!r}: {line!r}"
            )
        row = dict(zip(SACCT_FIELDS, values))
        state, _, cancelled_by = row["State"].partition(" by ")
        exit_code, signal = _exit_status(row["ExitCode"])
        limit = row["Timelimit"].strip()
        jobs.append(
            JobInfo(
                job_id=row["JobID"],
                state=state.strip(),
                reason=_none_if_unset(row["Reason"]),
                nodes=_none_if_unset(row["NodeList"]),
                partition=row["Partition"],
                user=row["User"].split("(", 1)[0],
                name=row["JobName"],
                # The job completion file prints the limit in bare minutes.
                time_limit_s=_duration(limit),
                start_time=parse_time(row["Start"]),
                end_time=parse_time(row["End"]),
                exit_code=exit_code,
                signal=signal,
                cancelled_by=cancelled_by.strip(),
            )
        )
    return jobs


def parse_pending_queue(stdout: str) -> list[tuple[str, str, int]]:
    """Parse ``squeue --states=PENDING --format=%i|%P|%Q`` into (job id, partition, priority).

    >>> parse_pending_queue("15|gpu|4294901752\\n16|gpu,cpu|100\\n")
    [('15', 'gpu', 4294901752), ('16', 'gpu', 100), ('16', 'cpu', 100)]
    """
    rows = []
    for line in stdout.splitlines():
        if not line.strip():
            continue
        parts = line.strip().split("|")
        if len(parts) != 3 or not parts[2].isdigit():
            raise ParseError(f"pending queue line is not 'jobid|partition|priority': {line!r}")
        for partition in parts[1].split(","):
            rows.append((parts[0], partition, int(parts[2])))
    return rows
