"""The gateway's view of one Slurm job, and the groups of Slurm's job states."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

# Job states, as squeue's %T prints them (slurm/slurm.h job_states).
PENDING_STATES = frozenset(
    {"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD", "SUSPENDED", "STOPPED"}
)
RUNNING_STATES = frozenset({"RUNNING", "SIGNALING", "STAGE_OUT", "RESIZING"})
# Everything else has ended. COMPLETING counts as ended: the batch script,
# and with it the kernel, has already exited and Slurm is only cleaning up.


@dataclass(frozen=True)
class JobInfo:
    """One job's state as the controller or the accounting data reported it.

    Times are seconds; ``time_limit_s`` is ``None`` for an unlimited job.
    ``start_time`` of a pending job is Slurm's estimate, if it has one.
    ``exit_code`` and ``signal`` are known only once the job has ended and
    the source reports them (``scontrol`` and ``sacct`` do, ``squeue`` does not).
    """

    job_id: str
    state: str
    reason: str = ""
    nodes: str = ""
    partition: str = ""
    user: str = ""
    name: str = ""
    time_used_s: int | None = None
    time_limit_s: int | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    gres: str = ""
    comment: str = ""
    exit_code: int | None = None
    signal: int | None = None
    cancelled_by: str = ""

    @property
    def base_state(self) -> str:
        """The state without qualifiers: sacct prints ``CANCELLED by 1000``."""
        return self.state.split(" ", 1)[0].rstrip("+")

    @property
    def is_pending(self) -> bool:
        """Whether the job waits in the queue (or is held or suspended)."""
        return self.base_state in PENDING_STATES

    @property
    def is_running(self) -> bool:
        """Whether the batch script is running on its node."""
        return self.base_state in RUNNING_STATES

    @property
    def has_ended(self) -> bool:
        """Whether the job has left the pending and running states for good."""
        return not (self.is_pending or self.is_running)

    def describe_end(self) -> str:
        """Describe why the job ended, in Slurm's words.

        >>> JobInfo("7", "FAILED", exit_code=3).describe_end()
        'Slurm job 7 ended with state FAILED (exit code 3)'
        >>> JobInfo("7", "CANCELLED", cancelled_by="alice").describe_end()
        'Slurm job 7 ended with state CANCELLED (cancelled by alice)'
        """
        details = []
        if self.cancelled_by:
            details.append(f"cancelled by {self.cancelled_by}")
        if self.exit_code:
            details.append(f"exit code {self.exit_code}")
        if self.signal:
            details.append(f"signal {self.signal}")
        if self.reason and self.reason not in ("None", "NonZeroExitCode"):
            details.append(f"reason {self.reason}")
        suffix = f" ({', '.join(details)})" if details else ""
        return f"Slurm job {self.job_id} ended with state {self.base_state}{suffix}"
