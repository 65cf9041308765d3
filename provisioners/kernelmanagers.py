"""Kernel managers that add a ``slurm`` field to each kernel's model.

Clients read the field from ``GET /api/kernels`` and ``GET /api/kernels/{id}``:
job id, state, pending reason, queue position, Slurm's estimated start,
time limit, end time and, once the job has ended, why. With pending kernels
enabled, the model exists while the job still waits in the queue, so a
client can show the wait instead of a spinner.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from jupyter_server.services.kernels.kernelmanager import AsyncMappingKernelManager
from tornado import web

from .provisioner import SlurmProvisioner


class SlurmKernelModelMixin:
    """Adds the provisioner's job status to ``kernel_model``; other kernels are unchanged."""

    # Seconds to wait for a pending kernel's request to be checked and submitted.
    submit_wait = 30.0

    async def start_kernel(self, *args: Any, **kwargs: Any) -> str:
        """Start a kernel; with pending kernels, still fail at once on a rejected request.

        A pending kernel's launch runs in the background, so a request the
        provisioner rejects would otherwise leave a dead kernel behind a
        successful response. This waits until the job is submitted or the
        launch fails before it returns, which takes milliseconds.
        """
        kernel_id = await super().start_kernel(*args, **kwargs)  # type: ignore[misc]
        manager = self.get_kernel(kernel_id)  # type: ignore[attr-defined]
        ready = getattr(manager, "ready", None)
        if ready is None:
            return kernel_id
        ready.add_done_callback(lambda future: _mark_failed_start(manager, future))
        deadline = time.monotonic() + self.submit_wait
        while time.monotonic() < deadline:
            if ready.done():
                error = None if ready.cancelled() else ready.exception()
                if error is not None:
                    # Nothing was submitted: respond with the error instead of a dead kernel.
                    self.remove_kernel(kernel_id)  # type: ignore[attr-defined]
                    if isinstance(error, web.HTTPError):
                        raise error
                    raise web.HTTPError(500, f"kernel {kernel_id} failed to start: {error}", reason="Kernel start failed")
                break
            provisioner = getattr(manager, "provisioner", None)
            if provisioner is not None and (not isinstance(provisioner, SlurmProvisioner) or provisioner.job_id is not None):
                break
            await asyncio.sleep(0.02)
        return kernel_id

    async def shutdown_kernel(self, kernel_id: str, now: bool = False, restart: bool = False) -> None:
        """Shut a kernel down; a kernel whose job still queues has its job cancelled first.

        The base class waits for a pending kernel's start to finish, which
        for a queued job means until the launch timeout. Cancelling the job
        ends the launch at once.
        """
        manager = self._kernels.get(kernel_id) if hasattr(self, "_kernels") else None  # type: ignore[attr-defined]
        provisioner = getattr(manager, "provisioner", None)
        if isinstance(provisioner, SlurmProvisioner):
            await provisioner.abandon_launch()
        await super().shutdown_kernel(kernel_id, now=now, restart=restart)  # type: ignore[misc]

    def kernel_model(self, kernel_id: str) -> dict[str, Any]:
        """Return the kernel's model with a ``slurm`` field for Slurm kernels."""
        model = super().kernel_model(kernel_id)  # type: ignore[misc]
        manager = self.get_kernel(kernel_id)  # type: ignore[attr-defined]
        provisioner = getattr(manager, "provisioner", None)
        if isinstance(provisioner, SlurmProvisioner):
            model["slurm"] = provisioner.slurm_status()
        return model


def _mark_failed_start(manager: Any, future: asyncio.Future) -> None:
    """Show a kernel whose launch failed as dead, with the reason, instead of starting forever."""
    if future.cancelled() or future.exception() is None:
        return
    error = future.exception()
    manager.execution_state = "dead"
    manager.reason = getattr(error, "log_message", None) or str(error)


class SlurmMappingKernelManager(SlurmKernelModelMixin, AsyncMappingKernelManager):
    """Jupyter Server 2's kernel manager with the ``slurm`` field.

    Select it with ``c.ServerApp.kernel_manager_class``.
    """
