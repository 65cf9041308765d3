"""One kernel's Slurm job from submission to its end, shared by the provisioner and the process proxy.

Call order: :meth:`KernelJob.submit`, then :meth:`KernelJob.wait_for_connection`
(or its blocking twin), then :meth:`KernelJob.exit_status` as often as the
gateway polls, and :meth:`KernelJob.cancel` and :meth:`KernelJob.release`
when the kernel goes away. Nothing here imports Jupyter.
"""

from __future__ import annotations

import asyncio
import getpass
from dataclasses import replace
import logging
import time
from typing import Any, Mapping, Sequence

from slurmgate.slurm.client import SlurmClient, SlurmError
from slurmgate.slurm.jobs import JobInfo
from slurmgate.slurm.poller import JobPoller
from slurmgate.slurm.request import JobRequest
from slurmgate.slurm.script import render_job_script
from slurmgate.slurm.units import format_walltime

from .protocol import (
    CONNECTION_KEY_ENV,
    KERNEL_ID_ENV,
    KERNEL_IP_ENV,
    REPLY_KEY_ENV,
    ReplyError,
    new_reply_key,
    open_reply,
)

log = logging.getLogger(__name__)


class LaunchError(RuntimeError):
    """The kernel's job ended, or could not be submitted, before the kernel was reachable."""


class LaunchTimeout(LaunchError):
    """The kernel was not reachable within the launch timeout; its job was cancelled."""


class KernelJob:
    """The Slurm job of one kernel launch.

    ``command`` runs inside the job (the kernelspec's argv). ``passthrough``
    maps variable names to values the job receives; the reply key, the
    HMAC key ``connection_key`` and the kernel id are added here.
    ``requested_by`` is the client's KERNEL_USERNAME: it only labels log
    lines and the status, because the job runs as the user who runs sbatch.
    """

    def __init__(
        self,
        kernel_id: str,
        request: JobRequest,
        command: Sequence[str],
        client: SlurmClient,
        poller: JobPoller,
        *,
        connection_key: str,
        kernel_ip: str = "node",
        passthrough: Mapping[str, str] | None = None,
        prologue: Sequence[str] = (),
        requested_by: str | None = None,
        logger: logging.Logger | logging.LoggerAdapter | None = None,
        poll_interval: float | None = None,
        fast_poll_interval: float | None = None,
    ):
        self.kernel_id = kernel_id
        self.request = request
        self.command = list(command)
        self.client = client
        self.poller = poller
        self.connection_key = connection_key
        self.kernel_ip = kernel_ip
        self.passthrough = dict(passthrough or {})
        self.prologue = list(prologue)
        self.user = getpass.getuser()
        self.requested_by = requested_by
        self.log = logger or log
        self.poll_interval = poll_interval
        self.fast_poll_interval = fast_poll_interval
        self.reply_key = new_reply_key()
        self.job_id: str | None = None
        self.connection_info: dict[str, Any] | None = None
        self._accepted_reply: str | None = None
        self._rejected_replies: set[str] = set()
        self._last_seen: tuple[str, str] | None = None
        self._final: JobInfo | None = None

    def adopt(self, job_id: str, connection_info: dict[str, Any], reply: str | None = None) -> None:
        """Track a job that an earlier gateway process launched, with its known connection info.

        ``reply`` is the job's comment as that gateway accepted it; later
        comments are then treated as second replies and ignored.
        """
        self.job_id = str(job_id)
        self.connection_info = dict(connection_info) if connection_info else None
        self._accepted_reply = reply
        self.poller.track(self.job_id, urgent=True, interval=self.poll_interval, fast_interval=self.fast_poll_interval)

    def render_script(self) -> str:
        """Render the batch script, which contains no secret."""
        environment = {KERNEL_ID_ENV: self.kernel_id, KERNEL_IP_ENV: self.kernel_ip}
        return render_job_script(self.request, self.command, environment=environment, prologue=self.prologue)

    def submit(self) -> str:
        """Submit the job and start tracking it; return the job id."""
        export = dict(self.passthrough)
        export[REPLY_KEY_ENV] = self.reply_key
        export[CONNECTION_KEY_ENV] = self.connection_key
        try:
            self.job_id = self.client.submit(self.render_script(), export)
        except SlurmError as error:
            raise LaunchError(f"kernel {self.kernel_id}: submitting its Slurm job failed: {error}") from error
        self.poller.track(self.job_id, urgent=True, interval=self.poll_interval, fast_interval=self.fast_poll_interval)
        self.log.info(
            "kernel %s: submitted Slurm job %s to partition %s as user %s (KERNEL_USERNAME %s)",
            self.kernel_id, self.job_id, self.request.partition or "(default)", self.user, self.requested_by or "not given",
        )
        return self.job_id

    def current(self) -> JobInfo | None:
        """Return the poller's last view of the job."""
        return self.poller.get(self.job_id) if self.job_id else None

    def _observe(self, info: JobInfo) -> None:
        """Log each change of state or pending reason once, and check the reply."""
        seen = (info.base_state, info.reason)
        if seen != self._last_seen:
            self._last_seen = seen
            if info.is_pending:
                self.log.info("kernel %s: Slurm job %s is pending (reason %s)", self.kernel_id, self.job_id, info.reason or "none given")
            elif info.is_running:
                self.log.info("kernel %s: Slurm job %s is running on node %s", self.kernel_id, self.job_id, info.nodes)
        if info.comment:
            self._consider_reply(info.comment)

    def _consider_reply(self, reply: str) -> None:
        if reply == self._accepted_reply or reply in self._rejected_replies:
            return
        if self._accepted_reply is not None:
            self._rejected_replies.add(reply)
            self.log.warning(
                "kernel %s: ignored a second connection reply in Slurm job %s; the first one is kept",
                self.kernel_id, self.job_id,
            )
            return
        try:
            info = open_reply(self.reply_key, self.kernel_id, self.job_id or "", reply)
        except ReplyError as error:
            self._rejected_replies.add(reply)
            self.log.warning("kernel %s: rejected a connection reply in Slurm job %s: %s", self.kernel_id, self.job_id, error)
            return
        self._accepted_reply = reply
        self.connection_info = info
        self.log.info(
            "kernel %s: Slurm job %s reports the kernel on %s (node %s, pid %s)",
            self.kernel_id, self.job_id, info["ip"], info.get("hostname", "?"), info.get("pid", "?"),
        )

    def _check_launch(self, started: float, timeout: float) -> dict[str, Any] | None:
        """Advance the launch by one look at the cached state; raise when it failed."""
        info = self.current()
        if info is not None:
            self._observe(info)
            if self.connection_info is not None:
                self.poller.set_urgent(self.job_id, False)
                return self.connection_info
            if info.has_ended:
                raise LaunchError(
                    f"kernel {self.kernel_id}: {self.describe_end()} before the kernel"
                    " reported its ports. The job's output file may say why."
                )
        if time.monotonic() - started >= timeout:
            self._cancel_after_timeout(info, timeout)
        return None

    def _cancel_after_timeout(self, info: JobInfo | None, timeout: float) -> None:
        self.cancel()
        if info is not None and info.is_pending:
            estimate = f"; Slurm estimated its start at {info.start_time.isoformat(sep=' ')}" if info.start_time else ""
            detail = (
                f"its Slurm job {self.job_id} was still queued in partition {info.partition}"
                f" (pending reason: {info.reason or 'none given'}){estimate}"
            )
            advice = "Try again later, ask for fewer resources, or raise KERNEL_LAUNCH_TIMEOUT."
        else:
            state = info.base_state if info else "unknown to squeue"
            detail = f"its Slurm job {self.job_id} was {state} but the kernel did not report its ports"
            advice = "The job's output file may say why."
        raise LaunchTimeout(
            f"kernel {self.kernel_id} did not start within the launch timeout of {timeout:g} s:"
            f" {detail}. The job was cancelled. {advice}"
        )

    async def wait_for_connection(self, timeout: float) -> dict[str, Any]:
        """Wait until the launcher's reply arrives; return the kernel's connection info.

        Raises :class:`LaunchError` when the job ends first, and
        :class:`LaunchTimeout` (after cancelling the job) when ``timeout``
        seconds pass. Checks run in a worker thread because the failure
        paths call Slurm.
        """
        started = time.monotonic()
        while True:
            result = await asyncio.to_thread(self._check_launch, started, timeout)
            if result is not None:
                return result
            await asyncio.sleep(0.1)

    def wait_for_connection_blocking(self, timeout: float) -> dict[str, Any]:
        """Block until the launcher's reply arrives; see :meth:`wait_for_connection`."""
        started = time.monotonic()
        while True:
            result = self._check_launch(started, timeout)
            if result is not None:
                return result
            time.sleep(0.1)

    def exit_status(self) -> int | None:
        """Return ``None`` while the job is pending or running, else an exit status.

        The status is the job's exit code, minus the signal number for jobs
        killed by a signal, and 1 for jobs that ended any other way except
        COMPLETED.
        """
        info = self.current()
        if info is None:
            return None
        self._observe(info)
        if not info.has_ended:
            return None
        final = self.final_state()
        if final.exit_code:
            return final.exit_code
        if final.signal:
            return -final.signal
        return 0 if final.base_state == "COMPLETED" else 1

    def final_state(self) -> JobInfo:
        """Return the ended job's details, looked up once (exit code, cancelling user)."""
        if self._final is None:
            info = self.current()
            details = None
            try:
                details = self.client.accounting(self.job_id) or self.client.show_job(self.job_id)
            except SlurmError as error:
                self.log.debug("kernel %s: no end details for job %s: %s", self.kernel_id, self.job_id, error)
            self._final = details if details is not None and details.has_ended else info
            if info is not None and self._final is not info and not self._final.reason and info.reason:
                # Accounting may lack the reason that squeue showed, such as JobLaunchFailure.
                self._final = replace(self._final, reason=info.reason)
            self.log.info("kernel %s: %s", self.kernel_id, self._final.describe_end())
        return self._final

    def describe_end(self) -> str:
        """Say how the job ended, in Slurm's words."""
        return self.final_state().describe_end()

    def cancel(self) -> None:
        """Cancel the job; nothing happens if it has already ended."""
        if self.job_id is None:
            return
        info = self.current()
        if info is not None and info.has_ended:
            return
        self.log.info("kernel %s: cancelling Slurm job %s", self.kernel_id, self.job_id)
        self.client.cancel(self.job_id)
        self.poller.set_urgent(self.job_id, True)
        self.poller.refresh()

    def send_signal(self, signal_name: str) -> None:
        """Send a signal to the kernel process (the job's batch step)."""
        if self.job_id is not None:
            self.client.cancel(self.job_id, signal=signal_name, batch_only=True)

    def release(self) -> None:
        """Stop tracking the job; call after it has ended or been cancelled."""
        if self.job_id is not None:
            self.poller.untrack(self.job_id)

    def status(self) -> dict[str, Any]:
        """Describe the job for clients: state, pending reason, queue position, times.

        Times are ISO 8601 in the cluster's local time, as Slurm prints them.
        While the job pends, ``estimated_start`` is Slurm's estimate, if any.
        """
        info = self.current()
        status: dict[str, Any] = {
            "job_id": self.job_id,
            "partition": self.request.partition,
            "user": self.user,
            "kernel_username": self.requested_by,
            "kernel_connected": self.connection_info is not None,
        }
        if info is None:
            status["state"] = "SUBMITTING" if self.job_id is None else "SUBMITTED"
            return status
        status.update(
            state=info.base_state,
            reason=info.reason or None,
            partition=info.partition or self.request.partition,
            nodes=info.nodes or None,
            time_limit=format_walltime(info.time_limit_s) if info.time_limit_s else None,
        )
        if info.is_pending:
            status["queue_position"] = self.poller.queue_position(self.job_id)
            status["estimated_start"] = info.start_time.isoformat() if info.start_time else None
        else:
            status["start_time"] = info.start_time.isoformat() if info.start_time else None
            status["end_time"] = info.end_time.isoformat() if info.end_time else None
        if info.has_ended and self._final is not None:
            status["end_reason"] = self._final.describe_end()
        return status

    def state_for_persistence(self) -> dict[str, Any]:
        """Return what a gateway must save to find this kernel's job again (nothing secret).

        ``reply`` is the accepted sealed reply, which :meth:`adopt` needs to
        recognise the job's comment after a gateway restart.
        """
        return {"job_id": self.job_id, "kernel_id": self.kernel_id, "requested_by": self.requested_by, "reply": self._accepted_reply}
