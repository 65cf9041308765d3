"""An Enterprise Gateway 3 process proxy that runs each kernel as a Slurm batch job.

Enterprise Gateway 3.3 pins jupyter_client below 7, so it has no kernel
provisioners: a kernelspec selects this class with
``metadata.process_proxy.class_name`` set to
``slurmgate.provisioners.eg3.SlurmProcessProxy``, and its ``config`` sets the
traits of :class:`~slurmgate.provisioners.config.SlurmKernelConfig`, as the
provisioner's config does. Import this module only where Enterprise Gateway
is installed; nothing else in the package imports it.

RemoteKernelManager calls, in this order: the constructor (from
``start_kernel``), :meth:`launch_process` (submit the job and block the start
request until the kernel reports its ports, because Enterprise Gateway has no
pending kernels), then :meth:`poll` from the kernel restarter,
:meth:`send_signal` for interrupts in ``signal`` mode and for SIGKILL,
:meth:`shutdown_listener` after the shutdown request, :meth:`terminate` or
:meth:`kill` when the kernel does not exit, and :meth:`cleanup` last.
:meth:`get_process_info` and :meth:`load_process_info` persist the job id
for Enterprise Gateway's kernel session persistence.
:class:`SlurmRemoteMappingKernelManager` adds the job's status to kernel models.

With ``ssh_tunnel`` set, the kernel binds 127.0.0.1 on its node and the
kernel manager connects to the local end of a
:class:`~slurmgate.provisioners.tunnel.KernelTunnel`, as with the provisioner.

The gateway makes the kernel's HMAC key for each launch, sets it on the
kernel manager's session and hands it to the job, so the key never travels
back from the node. Enterprise Gateway's own launchers do the reverse: they
make the key on the node and send it back with the ports.
"""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

from enterprise_gateway.services.kernels.remotemanager import RemoteMappingKernelManager
from enterprise_gateway.services.processproxies.processproxy import BaseProcessProxyABC, RemoteProcessProxy
from tornado import web
from traitlets import TraitError

from slurmgate.slurm.client import SlurmClient, SlurmError
from slurmgate.slurm.poller import JobPoller
from slurmgate.slurm.request import JobRequest, request_from_settings

from .config import ENV_PREFIX, SlurmKernelConfig
from .launch import build_job_request, checked_environment, http_error, job_environment, job_status, requested_launch_timeout
from .lifecycle import KernelJob, LaunchError, LaunchTimeout
from .protocol import PORT_NAMES, new_connection_key
from .tunnel import KernelTunnel, TunnelError

# Keys of metadata.process_proxy.config that BaseProcessProxyABC reads itself.
EG_PROXY_SETTINGS = frozenset({"authorized_users", "unauthorized_users", "port_range"})


class SlurmProcessProxy(RemoteProcessProxy):
    """Runs a kernel of Enterprise Gateway 3 as a Slurm batch job and connects to it where the job runs."""

    def __init__(self, kernel_manager: Any, proxy_config: dict[str, Any]):
        # RemoteProcessProxy.__init__ is skipped on purpose: it starts Enterprise
        # Gateway's response listener, a TCP socket on the host's public address
        # (port 8877 by default), for launchers that send their ports back.
        # Here the ports arrive sealed in the job's Slurm comment instead.
        BaseProcessProxyABC.__init__(self, kernel_manager, proxy_config)
        self.response_socket = None
        self.start_time = None
        self.assigned_ip = None
        self.assigned_host = ""
        self.comm_ip = None
        self.comm_port = 0
        self.tunneled_connect_info = None
        self.tunnel_processes: dict[str, Any] = {}
        self.settings, self.timeout_configured = load_settings(kernel_manager, proxy_config)
        self.kernel_job: KernelJob | None = None
        self.job_id: str | None = None
        self.end_reason: str | None = None
        self.launch_user: str | None = None
        self.tunnel: KernelTunnel | None = None
        self._node = ""
        self._timeout = self.settings.launch_timeout if self.timeout_configured else float(self.kernel_launch_timeout)
        self._key = ""

    def _client(self) -> SlurmClient:
        return self.settings.slurm_client()

    def _poller(self) -> JobPoller:
        return JobPoller.shared(
            self._client(), interval=self.settings.poll_interval, fast_interval=self.settings.fast_poll_interval
        )

    def build_request(self, env: dict[str, str], cwd: str | None, known_partitions: tuple[str, ...] = ()) -> JobRequest:
        """Build and check the job request; raises HTTP 400 before anything is submitted."""
        display_name = self.kernel_manager.kernel_spec.display_name
        return build_job_request(self.settings, self.kernel_id, display_name, env, cwd, known_partitions)

    def launch_timeout(self, env: dict[str, str]) -> float:
        """Return the seconds the launch may take, queue wait included.

        The start request's KERNEL_LAUNCH_TIMEOUT comes first, then a
        ``launch_timeout`` set in the kernelspec, the gateway's configuration
        or SLURMGATE_LAUNCH_TIMEOUT, then Enterprise Gateway's own launch
        timeout (EG_KERNEL_LAUNCH_TIMEOUT, 30 s unless set).
        """
        default = self.settings.launch_timeout if self.timeout_configured else float(self.kernel_launch_timeout)
        return requested_launch_timeout(self.settings, self.kernel_id, env, default)

    def job_environment(self, env: dict[str, str]) -> dict[str, str]:
        """Return the variables the job receives; see :func:`slurmgate.provisioners.launch.job_environment`."""
        return job_environment(self.settings, env)

    def _new_job(
        self, request: JobRequest, command: list[str], key: str, user: str | None, passthrough: dict[str, str] | None = None
    ) -> KernelJob:
        return KernelJob(
            self.kernel_id,
            request,
            command,
            self._client(),
            self._poller(),
            connection_key=key,
            kernel_ip="loopback" if self.settings.ssh_tunnel else self.settings.kernel_ip,
            passthrough=passthrough,
            prologue=self.settings.script_prologue,
            requested_by=user,
            logger=self.log,
            poll_interval=self.settings.poll_interval,
            fast_poll_interval=self.settings.fast_poll_interval,
        )

    async def launch_process(self, kernel_cmd: list[str], **kwargs: Any) -> "SlurmProcessProxy":
        """Submit the kernel's job and wait until the kernel reports its ports.

        Called by RemoteKernelManager._launch_kernel. The base classes check
        KERNEL_USERNAME against the authorized and unauthorized users first,
        so a rejected user submits nothing. If the launch fails, times out or
        the request is cancelled, the job is cancelled before the error
        propagates, so no job outlives a failed start.
        """
        try:
            await super().launch_process(kernel_cmd, **kwargs)
        finally:
            # RemoteProcessProxy removes the connection file that
            # pre_start_kernel wrote only after the user checks pass, so a
            # rejected user would leave it behind in the runtime directory.
            self.kernel_manager.cleanup_connection_file()
        env = kwargs["env"] = checked_environment(self.kernel_id, kwargs["env"])
        known = await asyncio.to_thread(self._client().known_partitions)
        request = self.build_request(env, kwargs.get("cwd"), known)
        self._timeout = self.launch_timeout(env)
        self._key = new_connection_key()
        # Sign with the new key from now on; the job receives the same key.
        self.kernel_manager.session.key = self._key.encode()
        job = self._new_job(request, list(kernel_cmd), self._key, env.get("KERNEL_USERNAME"), self.job_environment(env))
        self.kernel_job = job
        self.launch_user = env.get("KERNEL_USERNAME")
        LAUNCHES.register(self)
        submission = asyncio.ensure_future(asyncio.to_thread(job.submit))
        try:
            self.job_id = await asyncio.shield(submission)
            await self.confirm_remote_startup()
        except BaseException as error:
            # A start cancelled while sbatch runs must still cancel the job sbatch creates.
            if not submission.done():
                await asyncio.wait([submission])
            self.job_id = job.job_id
            # KernelJob cancels the job itself before it raises LaunchTimeout.
            await asyncio.to_thread(self._abandon_launch, job, isinstance(error, LaunchTimeout))
            if isinstance(error, LaunchError):
                self.end_reason = str(error)
            LAUNCHES.unregister(self)
            if isinstance(error, LaunchError):
                raise http_error(error) from error
            raise
        return self

    def _abandon_launch(self, job: KernelJob, already_cancelled: bool) -> None:
        self._close_tunnel()
        try:
            if not already_cancelled:
                job.cancel()
        except SlurmError as error:
            self.log.error(
                "kernel %s: cancelling Slurm job %s after the failed launch failed; cancel it with scancel %s: %s",
                self.kernel_id, job.job_id, job.job_id, error,
            )
        job.release()
        self.kernel_job = None

    async def confirm_remote_startup(self) -> None:
        """Wait for the job's sealed reply and load the kernel's ports and key into the kernel manager."""
        self.start_time = RemoteProcessProxy.get_current_time()
        job = self.kernel_job
        info = await job.wait_for_connection(self._timeout)
        self._node = (job.current().nodes if job.current() else "") or info.get("hostname", "")
        if self.settings.ssh_tunnel:
            info = await asyncio.to_thread(self._open_tunnel, info)
        self._load_connection(info)
        self.ip = self.assigned_ip = info["ip"]
        self.assigned_host = info.get("hostname", "")

    def _open_tunnel(self, remote_info: dict[str, Any]) -> dict[str, Any]:
        """Open the SSH tunnel to the kernel's node; return the local connection info."""
        try:
            self.tunnel = self.settings.build_tunnel(self.kernel_id, remote_info, self._node)
            return self.tunnel.open()
        except (TunnelError, ValueError) as error:
            self.tunnel = None
            raise LaunchError(f"kernel {self.kernel_id}: the SSH tunnel to node {self._node} failed: {error}") from error

    def _close_tunnel(self) -> None:
        if self.tunnel is not None:
            self.tunnel.close()
            self.tunnel = None

    def _load_connection(self, info: dict[str, Any]) -> None:
        """Give the kernel manager the kernel's address, ports and this launch's key."""
        connection_info = {
            "ip": info["ip"],
            "transport": info.get("transport", "tcp"),
            "signature_scheme": info.get("signature_scheme", "hmac-sha256"),
            "key": self._key,
            **{name: info[name] for name in PORT_NAMES},
        }
        manager = self.kernel_manager
        # load_connection_info keeps every port that is not 0, and a restart
        # reuses this kernel manager with the previous job's ports.
        for name in PORT_NAMES:
            setattr(manager, name, 0)
        manager.load_connection_info(connection_info)

    def poll(self) -> bool | None:
        """Return None while the job is pending or running, else False.

        False, not an exit code, because Enterprise Gateway's session revival
        (``start_kernel_from_session``) treats only False as a gone kernel.
        How the job ended is logged and kept in :attr:`end_reason`. An SSH
        tunnel that has given up reconnecting also ends the kernel.
        """
        if self.kernel_job is None:
            return False
        if self.tunnel is not None and self.tunnel.failure is not None:
            self.end_reason = self.end_reason or str(self.tunnel.failure)
            return False
        if self.kernel_job.exit_status() is None:
            return None
        if self.end_reason is None:
            self.end_reason = self.kernel_job.describe_end()
        return False

    def wait(self) -> None:
        """Block until the job has ended, for at most a few poll intervals."""
        job = self.kernel_job
        if job is None or job.job_id is None:
            return None
        limit = max(5.0, 2 * self.settings.fast_poll_interval + 1.0)
        info = job.poller.wait_for(job.job_id, lambda current: current.has_ended, limit)
        if info is None or not info.has_ended:
            self.log.warning("kernel %s: Slurm job %s has not ended after %g s; continuing", self.kernel_id, job.job_id, limit)
        return None

    def send_signal(self, signum: int) -> bool | None:
        """Send a signal to the kernel process through scancel.

        Signal 0 only checks the job, as :meth:`poll` does. SIGKILL, which
        jupyter_client sends when a kernel does not exit, cancels the whole
        job. Interrupts arrive here only when the kernelspec's
        ``interrupt_mode`` is ``signal``.
        """
        if signum == 0:
            return self.poll()
        job = self.kernel_job
        if job is None or job.job_id is None:
            return False
        try:
            if signum == signal.SIGKILL:
                job.cancel()
            else:
                job.send_signal(_signal_name(signum))
        except SlurmError as error:
            message = f"kernel {self.kernel_id}: sending signal {_signal_name(signum)} to Slurm job {job.job_id} failed: {error}"
            raise web.HTTPError(500, message, reason="Slurm signal failed") from error
        return None

    def kill(self) -> None:
        """Cancel the job."""
        if self.kernel_job is not None:
            self.kernel_job.cancel()

    def terminate(self) -> None:
        """Cancel the job; Slurm sends SIGTERM, then SIGKILL after the site's KillWait."""
        self.kill()

    def shutdown_listener(self) -> None:
        """Poll fast while the kernel exits, so that its job's end is seen at once.

        RemoteKernelManager.request_shutdown calls this after sending the
        shutdown request. There is no launcher listener to stop.
        """
        job = self.kernel_job
        if job is not None and job.job_id is not None:
            job.poller.set_urgent(job.job_id, True)

    def cleanup(self) -> None:
        """Close the SSH tunnel, cancel the job if it still runs, stop tracking it and drop it.

        Afterwards :attr:`job_id` and :attr:`end_reason` keep the last job's
        id and how it ended.
        """
        self._close_tunnel()
        job = self.kernel_job
        if job is not None:
            if job.job_id is not None and self.poll() is None:
                try:
                    job.cancel()
                except SlurmError as error:
                    self.log.error(
                        "kernel %s: cancelling Slurm job %s at cleanup failed; cancel it with scancel %s: %s",
                        self.kernel_id, job.job_id, job.job_id, error,
                    )
                self.end_reason = self.end_reason or f"Slurm job {job.job_id} was cancelled when the kernel was cleaned up"
            job.release()
            self.kernel_job = None
        LAUNCHES.unregister(self)
        super().cleanup()

    def slurm_status(self) -> dict[str, Any]:
        """Describe this kernel's job for the kernel model's ``slurm`` field.

        Reads only cached state, so that serving a kernel model never calls Slurm.
        """
        return job_status(self.kernel_job, self.job_id, self.end_reason)

    def get_process_info(self) -> dict[str, Any]:
        """Add the job id, the node and the kernel's ports there to what Enterprise Gateway saves for this kernel.

        The node's ports are saved because with an SSH tunnel the saved
        connection info names only the tunnel's local ports. Nothing saved
        here is secret; Enterprise Gateway saves the HMAC key itself.
        """
        info = super().get_process_info()
        job = self.kernel_job
        if job is not None:
            info["slurm"] = {
                **job.state_for_persistence(),
                "node": self._node,
                "remote_connection_info": job.connection_info,
                "ssh_tunnel": self.tunnel is not None,
            }
        return info

    def load_process_info(self, process_info: dict[str, Any]) -> None:
        """Track the saved job again; called when Enterprise Gateway revives a persisted kernel.

        Waits for the first squeue result (a few seconds at most), so that the
        :meth:`poll` that follows reports a job that ended meanwhile as gone.
        """
        super().load_process_info(process_info)
        saved = process_info.get("slurm") or {}
        job_id = saved.get("job_id")
        if not job_id:
            self.log.warning("kernel %s: the saved process info names no Slurm job; the kernel cannot be revived", self.kernel_id)
            return
        request = request_from_settings(self.settings.job_name_prefix + self.kernel_id, {})
        key = self.kernel_manager.session.key.decode()
        job = self._new_job(request, list(self.kernel_manager.kernel_spec.argv), key, saved.get("requested_by"))
        # The reply was sealed under the first gateway's reply key, which is not
        # saved; the saved copy of the reply marks it as already accepted.
        job.adopt(str(job_id), saved.get("remote_connection_info"), reply=saved.get("reply"))
        self.job_id = job.job_id
        self._node = saved.get("node", "")
        self.kernel_job = job
        job.poller.wait_for(job.job_id, lambda info: True, max(5.0, 2 * self.settings.fast_poll_interval + 1.0))
        job.poller.set_urgent(job.job_id, False)
        self.log.info("kernel %s: tracking Slurm job %s again after a gateway restart", self.kernel_id, job.job_id)
        if saved.get("ssh_tunnel") and self.poll() is None:
            self._reopen_tunnel(job, saved)

    def _reopen_tunnel(self, job: KernelJob, saved: dict[str, Any]) -> None:
        """Open a new SSH tunnel to a revived kernel; cancel its job when that fails."""
        self._key = self.kernel_manager.session.key.decode()
        try:
            self._load_connection(self._open_tunnel(saved["remote_connection_info"]))
        except LaunchError as error:
            self.log.error("%s; cancelling Slurm job %s because the kernel cannot be reached", error, job.job_id)
            self.end_reason = str(error)
            self._abandon_launch(job, already_cancelled=False)


def load_settings(kernel_manager: Any, proxy_config: dict[str, Any]) -> tuple[SlurmKernelConfig, bool]:
    """Validate the kernelspec's process proxy config; return the settings and whether a launch timeout is set.

    Values come from the kernelspec, then the gateway's configuration file
    (``c.SlurmKernelConfig...``), then the SLURMGATE_* environment variables.
    Raises HTTP 400 naming the kernelspec when a setting is unknown or invalid.
    """
    display_name = kernel_manager.kernel_spec.display_name
    valid = set(SlurmKernelConfig.class_own_traits(config=True))
    unknown = set(proxy_config) - valid - EG_PROXY_SETTINGS
    if unknown:
        message = (
            f"kernelspec {display_name!r}: unknown setting(s) {', '.join(sorted(unknown))} in"
            f" metadata.process_proxy.config; valid settings are {', '.join(sorted(valid | EG_PROXY_SETTINGS))}"
        )
        raise web.HTTPError(400, message, reason="Invalid Slurm kernelspec")
    values = {name: value for name, value in proxy_config.items() if name in valid}
    try:
        settings = SlurmKernelConfig(parent=kernel_manager, **values)
    except TraitError as error:
        message = f"kernelspec {display_name!r}: invalid metadata.process_proxy.config: {error}"
        raise web.HTTPError(400, message, reason="Invalid Slurm kernelspec") from error
    # Read before the first use of the trait, which would compute its default.
    timeout_configured = settings.trait_has_value("launch_timeout") or bool(os.environ.get(ENV_PREFIX + "LAUNCH_TIMEOUT"))
    return settings, timeout_configured


class SlurmRemoteMappingKernelManager(RemoteMappingKernelManager):
    """Enterprise Gateway's kernel manager, adding each Slurm kernel's job status to its model.

    Select it with ``c.EnterpriseGatewayApp.kernel_manager_class``. The
    ``slurm`` field has the job id, state, partition, node and time limit.
    Enterprise Gateway 3 has no pending kernels, so the model appears only
    once the kernel runs; the queue wait shows up in the gateway's log.
    """

    def kernel_model(self, kernel_id: str) -> dict[str, Any]:
        """Return the kernel's model with a ``slurm`` field for Slurm kernels."""
        model = super().kernel_model(kernel_id)
        proxy = getattr(self.get_kernel(kernel_id), "process_proxy", None)
        if isinstance(proxy, SlurmProcessProxy):
            model["slurm"] = proxy.slurm_status()
        return model


def _signal_name(signum: int) -> str:
    """Return the name scancel accepts for a signal number.

    >>> _signal_name(2)
    'INT'
    """
    try:
        return signal.Signals(signum).name.removeprefix("SIG")
    except ValueError:
        return str(signum)


class LaunchRegistry:
    """The Slurm kernels of this gateway by kernel id, for the ``/api/slurm/kernels`` route.

    Enterprise Gateway 3 registers a kernel only once it runs, so while the
    start request blocks in the queue, this registry is where a client finds
    the job's state. Kernels that ended keep their last status for a while
    (the newest ``keep_ended`` of them), so a client polling a failed launch
    learns why it failed.
    """

    def __init__(self, keep_ended: int = 200):
        self.keep_ended = keep_ended
        self._live: dict[str, SlurmProcessProxy] = {}
        self._ended: dict[str, dict[str, Any]] = {}

    def register(self, proxy: "SlurmProcessProxy") -> None:
        """Track a kernel from the start of its launch."""
        self._live[proxy.kernel_id] = proxy
        self._ended.pop(proxy.kernel_id, None)

    def unregister(self, proxy: "SlurmProcessProxy") -> None:
        """Keep the last status of a kernel whose launch failed or which was cleaned up."""
        if self._live.get(proxy.kernel_id) is proxy:
            del self._live[proxy.kernel_id]
            self._ended[proxy.kernel_id] = self._describe(proxy)
            while len(self._ended) > self.keep_ended:
                self._ended.pop(next(iter(self._ended)))

    @staticmethod
    def _describe(proxy: "SlurmProcessProxy") -> dict[str, Any]:
        return {"id": proxy.kernel_id, "user": proxy.launch_user, "slurm": proxy.slurm_status()}

    def get(self, kernel_id: str) -> dict[str, Any] | None:
        """Return a kernel's id, user and ``slurm`` status, or None for an unknown id."""
        proxy = self._live.get(kernel_id)
        return self._describe(proxy) if proxy is not None else self._ended.get(kernel_id)

    def for_user(self, user: str | None) -> list[dict[str, Any]]:
        """Return every kernel that is starting, running or recently ended, of ``user`` if given."""
        kernels = [self._describe(proxy) for proxy in self._live.values()]
        kernels += [status for kernel_id, status in self._ended.items() if kernel_id not in self._live]
        return [kernel for kernel in kernels if user is None or kernel["user"] == user]


LAUNCHES = LaunchRegistry()
