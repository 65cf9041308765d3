"""A jupyter_client kernel provisioner that runs each kernel as a Slurm batch job.

Select it in a kernelspec with ``metadata.kernel_provisioner.provisioner_name``
set to ``slurm-provisioner``; its ``config`` sets the traits of
:class:`~slurmgate.provisioners.config.SlurmKernelConfig`. Works wherever
jupyter_client 8 runs kernels: Jupyter Server 2 (and JupyterLab 4), Kernel
Gateway 3, nbclient.

KernelManager calls the hooks in this order: :meth:`pre_launch` (build and
check the job request), :meth:`launch_kernel` (submit, wait in the queue,
receive the authenticated reply), then :meth:`poll` while the kernel lives,
:meth:`send_signal`, :meth:`kill` or :meth:`terminate` when asked, and
:meth:`cleanup` last. The kernelspec should set ``interrupt_mode`` to
``message`` so that interrupts travel on the signed control channel.
"""

from __future__ import annotations

import asyncio
import re
import signal
from typing import Any

from jupyter_client.provisioning.provisioner_base import KernelProvisionerBase
from tornado import web
from traitlets import TraitError

from slurmgate.slurm.client import SlurmClient
from slurmgate.slurm.poller import JobPoller

from .config import SlurmKernelConfig
from .launch import build_job_request, checked_environment, http_error, job_environment, job_status, requested_launch_timeout
from .lifecycle import KernelJob, LaunchError

# Fields of the kernelspec's argv that are filled in; others stay as written.
_ARGV_FIELD = re.compile(r"\{([A-Za-z0-9_]+)\}")


class SlurmProvisioner(KernelProvisionerBase, SlurmKernelConfig):  # type: ignore[misc]
    """Runs a kernel as a Slurm batch job and connects to it where the job runs."""

    def __init__(self, **kwargs: Any):
        spec = kwargs.get("kernel_spec")
        where = f"Slurm settings of kernelspec {getattr(spec, 'display_name', '?')!r} or of the gateway's configuration"
        unknown = set(kwargs) - {"kernel_id", "kernel_spec", "parent", "config", "log"} - set(self.class_trait_names())
        if unknown:
            message = (
                f"{where}: unknown setting(s) {', '.join(sorted(unknown))} in"
                " metadata.kernel_provisioner.config; valid settings are"
                f" {', '.join(sorted(SlurmKernelConfig.class_own_traits(config=True)))}"
            )
            raise web.HTTPError(400, message, reason="Invalid Slurm kernelspec")
        try:
            super().__init__(**kwargs)
        except TraitError as error:
            raise web.HTTPError(400, f"{where}: {error}", reason="Invalid Slurm kernelspec") from error
        self.kernel_job: KernelJob | None = None
        self.job_id: str | None = None
        self.end_reason: str | None = None
        self.tunnel = None
        self._launch_env: dict[str, str] = {}

    @property
    def has_process(self) -> bool:
        """Whether a job exists for this kernel (pending or running)."""
        return self.kernel_job is not None and self.kernel_job.job_id is not None

    def _client(self) -> SlurmClient:
        return self.slurm_client()

    def _poller(self) -> JobPoller:
        return JobPoller.shared(self._client(), interval=self.poll_interval, fast_interval=self.fast_poll_interval)

    async def pre_launch(self, **kwargs: Any) -> dict[str, Any]:
        """Check the request and format the command; called by KernelManager.pre_start_kernel."""
        kwargs = await super().pre_launch(**kwargs)
        env = kwargs["env"] = checked_environment(self.kernel_id, kwargs["env"])
        known = await asyncio.to_thread(self._client().known_partitions)
        display_name = self.kernel_spec.display_name
        self._request = build_job_request(self, self.kernel_id, display_name, env, kwargs.get("cwd"), known)
        requested_launch_timeout(self, self.kernel_id, env, self.launch_timeout)
        self._launch_env = env
        substitutions = {"kernel_id": self.kernel_id, "resource_dir": self.kernel_spec.resource_dir}
        kwargs["cmd"] = [
            _ARGV_FIELD.sub(lambda match: substitutions.get(match[1], match[0]), argument)
            for argument in self.kernel_spec.argv
        ]
        return kwargs

    async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> dict[str, Any]:
        """Submit the job, wait for the kernel's reply and return its connection info.

        If the launch fails, times out or is cancelled, the job is cancelled
        before the error propagates, so no job outlives a failed start.
        """
        env = self._launch_env
        timeout = requested_launch_timeout(self, self.kernel_id, env, self.launch_timeout)
        key = self.parent.session.key
        job = KernelJob(
            self.kernel_id,
            self._request,
            cmd,
            self._client(),
            self._poller(),
            connection_key=key.decode(),
            kernel_ip="loopback" if self.ssh_tunnel else self.kernel_ip,
            passthrough=job_environment(self, env),
            prologue=self.script_prologue,
            requested_by=env.get("KERNEL_USERNAME"),
            logger=self.log,
            poll_interval=self.poll_interval,
            fast_poll_interval=self.fast_poll_interval,
        )
        self.kernel_job = job
        submission = asyncio.ensure_future(asyncio.to_thread(job.submit))
        try:
            self.job_id = await asyncio.shield(submission)
            info = await job.wait_for_connection(timeout)
            if self.ssh_tunnel:
                info = await self._open_tunnel(job, info)
        except BaseException as error:
            # A start cancelled while sbatch runs must still cancel the job sbatch creates.
            if not submission.done():
                await asyncio.wait([submission])
            self.job_id = job.job_id
            await self._close_tunnel()
            await asyncio.to_thread(job.cancel)
            job.release()
            self.kernel_job = None
            if isinstance(error, LaunchError):
                self.end_reason = str(error)
                raise http_error(error) from error
            raise
        self.connection_info = {
            "ip": info["ip"],
            "transport": info.get("transport", "tcp"),
            "signature_scheme": info.get("signature_scheme", "hmac-sha256"),
            "key": key,
            **{name: info[name] for name in ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port")},
        }
        return self.connection_info

    async def _open_tunnel(self, job: KernelJob, info: dict[str, Any]) -> dict[str, Any]:
        """Open the SSH tunnel to the kernel's node; return the local connection info."""
        from .tunnel import TunnelError

        node = (job.current().nodes if job.current() else "") or info.get("hostname", "")
        try:
            self.tunnel = self.build_tunnel(self.kernel_id, info, node)
            return await asyncio.to_thread(self.tunnel.open)
        except (TunnelError, ValueError) as error:
            raise LaunchError(f"kernel {self.kernel_id}: the SSH tunnel to node {node} failed: {error}") from error

    async def _close_tunnel(self) -> None:
        if self.tunnel is not None:
            await asyncio.to_thread(self.tunnel.close)
            self.tunnel = None

    async def post_launch(self, **kwargs: Any) -> None:
        """Stop jupyter_client's restarter from resubmitting a job that Slurm ended.

        A job ends by scancel, walltime, preemption or node failure: an
        automatic restart would submit a new job behind the admin's or the
        limit's back. The restarter still reports the kernel dead, and users
        restart kernels themselves.
        """
        await super().post_launch(**kwargs)
        restarter = getattr(self.parent, "_restarter", None)
        if restarter is not None:
            restarter.restart_limit = 0

    async def abandon_launch(self) -> None:
        """Cancel the job of a launch that is still waiting for its kernel, so the launch fails at once."""
        job = self.kernel_job
        if job is not None and job.job_id is not None and job.connection_info is None:
            self.log.info("kernel %s: shutdown requested while Slurm job %s is queued; cancelling it", self.kernel_id, job.job_id)
            await asyncio.to_thread(job.cancel)

    async def poll(self) -> int | None:
        """Return None while the job is pending or running, else its exit status.

        A tunnel that has given up reconnecting also ends the kernel, with status 1.
        """
        if self.kernel_job is None:
            return 0
        if self.tunnel is not None and self.tunnel.failure is not None:
            self.end_reason = self.end_reason or str(self.tunnel.failure)
            return 1
        status = await asyncio.to_thread(self.kernel_job.exit_status)
        if status is not None and self.end_reason is None:
            self.end_reason = self.kernel_job.describe_end()
        return status

    async def wait(self) -> int | None:
        """Wait until the job has ended and return its exit status."""
        while True:
            status = await self.poll()
            if status is not None:
                return status
            await asyncio.sleep(0.2)

    async def send_signal(self, signum: int) -> None:
        """Send a signal to the kernel process through scancel."""
        if self.kernel_job is not None:
            await asyncio.to_thread(self.kernel_job.send_signal, signal.Signals(signum).name.removeprefix("SIG"))

    async def kill(self, restart: bool = False) -> None:
        """Cancel the job."""
        if self.kernel_job is not None:
            await asyncio.to_thread(self.kernel_job.cancel)

    async def terminate(self, restart: bool = False) -> None:
        """Cancel the job; Slurm sends SIGTERM, then SIGKILL after the site's KillWait."""
        await self.kill(restart=restart)

    # TODO: a gateway killed with SIGKILL never calls cleanup, so its kernels' jobs
    # run until their walltime. A lease that the gateway renews would let the launcher exit.
    async def cleanup(self, restart: bool = False) -> None:
        """Cancel the job if it still runs, stop tracking it and drop it.

        Afterwards :attr:`has_process` is false; :attr:`job_id` and
        :attr:`end_reason` keep the last job's id and how it ended.
        """
        await self._close_tunnel()
        job = self.kernel_job
        if job is None:
            return
        if job.job_id is not None and await self.poll() is None:
            await asyncio.to_thread(job.cancel)
            self.end_reason = self.end_reason or f"Slurm job {job.job_id} was cancelled when the kernel was cleaned up"
        job.release()
        self.kernel_job = None

    async def shutdown_requested(self, restart: bool = False) -> None:
        """Poll fast while the kernel exits, so that its job's end is seen at once."""
        job = self.kernel_job
        if job is not None and job.job_id is not None:
            job.poller.set_urgent(job.job_id, True)

    def slurm_status(self) -> dict[str, Any]:
        """Describe this kernel's job for the kernel model's ``slurm`` field.

        Reads only cached state, so that serving a kernel model never calls Slurm.
        """
        return job_status(self.kernel_job, self.job_id, self.end_reason)

    async def get_provisioner_info(self) -> dict[str, Any]:
        """Add the job id to what KernelManager saves for this kernel."""
        info = await super().get_provisioner_info()
        if self.kernel_job is not None:
            info["slurm"] = self.kernel_job.state_for_persistence()
        return info

    def get_shutdown_wait_time(self, recommended: float = 5.0) -> float:
        """Allow for the poll interval: the job's end shows up one squeue call late."""
        return max(recommended, 2 * self.fast_poll_interval + 1.0)
