"""A Slurm client over the command-line tools: sbatch, squeue, scancel, scontrol, sacct."""

from __future__ import annotations

import logging
import os
import re
import time
from typing import Iterable, Mapping

from .jobs import JobInfo
from .parsers import (
    SACCT_FORMAT,
    SQUEUE_FORMAT,
    ParseError,
    parse_sacct,
    parse_sbatch_parsable,
    parse_scontrol_job,
    parse_pending_queue,
    parse_squeue,
)
from .runner import CommandError, CommandResult, CommandRunner, LocalRunner

log = logging.getLogger(__name__)

_JOB_ID = re.compile(r"^\d+(_\d+)?$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_UNKNOWN_JOB = "Invalid job id specified"
# Partition lists per cluster access, with the time they were read.
_PARTITIONS_CACHE: dict[tuple, tuple[float, tuple[str, ...]]] = {}


class SlurmError(RuntimeError):
    """Slurm rejected a request or could not be reached."""


class SlurmClient:
    """Builds Slurm commands, runs them through a runner and parses the output.

    ``command_timeout`` bounds each command in seconds. ``submit_command``,
    ``queue_command`` and the others name the programs, so that a site can
    point at wrappers.
    """

    submit_command = "sbatch"
    queue_command = "squeue"
    cancel_command = "scancel"
    control_command = "scontrol"
    accounting_command = "sacct"

    def __init__(self, runner: CommandRunner | None = None, command_timeout: float = 30):
        self.runner = runner or LocalRunner()
        self.command_timeout = command_timeout

    @property
    def key(self) -> tuple:
        """Identifies the cluster access, so that clients of one cluster share a poller."""
        return self.runner.key

    def _run(self, argv: list[str], **kwargs) -> CommandResult:
        log.debug("running %s", " ".join(argv))
        result = self.runner.run(argv, timeout=self.command_timeout, **kwargs)
        if result.returncode != 0:
            log.debug("exit code %d: %s", result.returncode, result.stderr.strip())
        return result

    def submit(self, script: str, export: Mapping[str, str]) -> str:
        """Submit a batch script and return its job id.

        The values of ``export`` travel in the environment of the sbatch
        process, never in argv or the script, so keys stay out of ``ps`` and
        ``scontrol`` output. On this host, sbatch runs with only those
        variables (and SLURM_CONF) and ``--export=ALL``, so the job gets
        exactly them plus Slurm's own. Over SSH, sbatch gets
        ``--export=A,B``, which also makes slurmd load the user's login
        environment: that is slower and adds the login shell's variables.
        """
        for name in export:
            if not _ENV_NAME.match(name):
                raise ValueError(f"invalid environment variable name {name!r}")
        log.debug("job script:\n%s", script)
        if getattr(self.runner, "supports_replace_env", False):
            environment = dict(export)
            if "SLURM_CONF" in os.environ:
                environment.setdefault("SLURM_CONF", os.environ["SLURM_CONF"])
            argv = [self.submit_command, "--parsable", "--export=ALL"]
            result = self._run(argv, input=script, env=environment, replace_env=True)
        else:
            names = ",".join(export) if export else "NONE"
            argv = [self.submit_command, "--parsable", f"--export={names}"]
            result = self._run(argv, input=script, env=dict(export))
        if result.returncode != 0:
            raise SlurmError(str(CommandError(result, "Slurm rejected the job; check the request against the partition's limits")))
        try:
            return parse_sbatch_parsable(result.stdout)
        except ParseError as error:
            raise SlurmError(str(error)) from error

    def query(self, job_ids: Iterable[str]) -> dict[str, JobInfo]:
        """Return the controller's view of these jobs in one ``squeue`` call.

        Jobs that the controller has purged are missing from the result.
        Raises :class:`SlurmError` when squeue fails for another reason, for
        example when slurmctld is unreachable, so that callers never mistake
        an outage for ended jobs.
        """
        ids = sorted({_checked_job_id(job_id) for job_id in job_ids}, key=_sort_key)
        if not ids:
            return {}
        argv = [self.queue_command, "--noheader", "--states=all", f"--jobs={','.join(ids)}", f"--format={SQUEUE_FORMAT}"]
        result = self._run(argv)
        if result.returncode != 0:
            if _UNKNOWN_JOB in result.stderr:
                return {}
            raise SlurmError(str(CommandError(result)))
        try:
            jobs = parse_squeue(result.stdout)
        except ParseError as error:
            raise SlurmError(str(error)) from error
        return {job.job_id: job for job in jobs if job.job_id in ids}

    def find_by_name(self, name: str) -> list[JobInfo]:
        """Return the active and recently ended jobs with this exact name."""
        argv = [self.queue_command, "--noheader", "--states=all", f"--name={name}", f"--format={SQUEUE_FORMAT}"]
        result = self._run(argv)
        if result.returncode != 0:
            raise SlurmError(str(CommandError(result)))
        return [job for job in parse_squeue(result.stdout) if job.name == name]

    def show_job(self, job_id: str) -> JobInfo | None:
        """Return ``scontrol show job`` details, or ``None`` for an unknown job."""
        argv = [self.control_command, "--oneliner", "show", "job", _checked_job_id(job_id)]
        result = self._run(argv)
        if result.returncode != 0:
            if _UNKNOWN_JOB in result.stderr:
                return None
            raise SlurmError(str(CommandError(result)))
        return parse_scontrol_job(result.stdout)

    def accounting(self, job_id: str) -> JobInfo | None:
        """Return a finished job from accounting, or ``None`` if it has no record.

        Tries the accounting database first, then the job completion file
        (``sacct -c``), which sites without slurmdbd have.
        """
        job_id = _checked_job_id(job_id)
        for source in ([], ["--completion"]):
            argv = [
                self.accounting_command, *source, "--noheader", "--parsable2", "--allocations",
                f"--jobs={job_id}", f"--format={SACCT_FORMAT}",
            ]
            result = self._run(argv)
            if result.returncode != 0:
                log.debug("%s found no record of job %s: %s", argv[0], job_id, result.stderr.strip())
                continue
            for job in parse_sacct(result.stdout):
                if job.job_id == job_id:
                    return job
        return None

    def cancel(self, job_id: str, signal: str | None = None, batch_only: bool = False) -> None:
        """Cancel a job, or send it a signal when ``signal`` is given.

        Cancelling a job that has already ended is not an error.
        """
        argv = [self.cancel_command]
        if signal:
            argv.append(f"--signal={signal}")
        if batch_only:
            argv.append("--batch")
        argv.append(_checked_job_id(job_id))
        result = self._run(argv)
        ended = "already completing or completed" in result.stderr or _UNKNOWN_JOB in result.stderr
        if result.returncode != 0 and not ended:
            raise SlurmError(str(CommandError(result)))

    def pending_queue(self, partitions: list[str]) -> dict[str, list[str]]:
        """Return, per partition, the ids of all pending jobs in scheduling order.

        The order is by priority, highest first, then by job id; a job
        pending in several partitions counts in each. With ``PrivateData=jobs``
        only the caller's jobs are visible, so positions count those only.
        """
        argv = [self.queue_command, "--noheader", "--states=PENDING", f"--partition={','.join(partitions)}", "--format=%i|%P|%Q"]
        result = self._run(argv)
        if result.returncode != 0:
            raise SlurmError(str(CommandError(result)))
        try:
            rows = parse_pending_queue(result.stdout)
        except ParseError as error:
            raise SlurmError(str(error)) from error
        queue: dict[str, list[str]] = {}
        for job_id, partition, _priority in sorted(rows, key=lambda row: (-row[2], _sort_key(row[0]))):
            queue.setdefault(partition, []).append(job_id)
        return queue

    def known_partitions(self, max_age: float = 60.0) -> tuple[str, ...]:
        """Return :meth:`partitions`, cached for ``max_age`` seconds; empty when sinfo fails.

        An empty result only skips the gateway's early check of a requested
        partition: sbatch still rejects an unknown one.
        """
        cached = _PARTITIONS_CACHE.get(self.key)
        if cached and time.monotonic() - cached[0] < max_age:
            return cached[1]
        try:
            partitions = self.partitions()
        except SlurmError as error:
            log.debug("sinfo failed; partitions are not checked before submission: %s", error)
            return ()
        _PARTITIONS_CACHE[self.key] = (time.monotonic(), partitions)
        return partitions

    def partitions(self) -> tuple[str, ...]:
        """Return the names of the cluster's partitions, as ``sinfo`` lists them."""
        result = self._run(["sinfo", "--noheader", "--format=%R"])
        if result.returncode != 0:
            raise SlurmError(str(CommandError(result)))
        return tuple(dict.fromkeys(line.strip() for line in result.stdout.splitlines() if line.strip()))

    def pending_estimates(self, job_ids: Iterable[str]) -> dict[str, JobInfo]:
        """Return pending jobs with Slurm's estimated start times (``squeue --start``)."""
        ids = sorted({_checked_job_id(job_id) for job_id in job_ids}, key=_sort_key)
        if not ids:
            return {}
        argv = [self.queue_command, "--noheader", "--start", "--states=PENDING", f"--jobs={','.join(ids)}", f"--format={SQUEUE_FORMAT}"]
        result = self._run(argv)
        if result.returncode != 0:
            if _UNKNOWN_JOB in result.stderr:
                return {}
            raise SlurmError(str(CommandError(result)))
        return {job.job_id: job for job in parse_squeue(result.stdout)}


def _checked_job_id(job_id: str) -> str:
    job_id = str(job_id)
    if not _JOB_ID.match(job_id):
        raise ValueError(f"invalid Slurm job id {job_id!r}: expected digits, such as 4242")
    return job_id


def _sort_key(job_id: str) -> tuple[int, int]:
    main, _, task = job_id.partition("_")
    return int(main), int(task or 0)
