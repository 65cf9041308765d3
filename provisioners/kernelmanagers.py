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
        successful answer. This waits until the job is submitted or the
        launch fails before it answers, which takes milliseconds.
        """
        kernel_id = await super().start_kernel(*args, **kwargs)  # type: ignore[misc]
        manager = self.get_kernel(kernel_id)  # type: ignore[attr-defined]
        ready = getattr(manager, "ready", None)
        deadline = time.monotonic() + self.submit_wait
        while ready is not None and time.monotonic() < deadline:
            if ready.done():
                error = ready.exception()
                if isinstance(error, web.HTTPError) and error.status_code == 400:
                    self.remove_kernel(kernel_id)  # type: ignore[attr-defined]
                    raise error
                break
            provisioner = getattr(manager, "provisioner", None)
            if provisioner is not None and (not isinstance(provisioner, SlurmProvisioner) or provisioner.job_id is not None):
                break
            await asyncio.sleep(0.02)
        return kernel_id

    def kernel_model(self, kernel_id: str) -> dict[str, Any]:
        """Return the kernel's model with a ``slurm`` field for Slurm kernels."""
        model = super().kernel_model(kernel_id)  # type: ignore[misc]
        manager = self.get_kernel(kernel_id)  # type: ignore[attr-defined]
        provisioner = getattr(manager, "provisioner", None)
        if isinstance(provisioner, SlurmProvisioner):
            model["slurm"] = provisioner.slurm_status()
        return model


class SlurmMappingKernelManager(SlurmKernelModelMixin, AsyncMappingKernelManager):
    """Jupyter Server 2's kernel manager with the ``slurm`` field.

    Select it with ``c.ServerApp.kernel_manager_class``.
    """
