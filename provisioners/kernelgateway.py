"""Kernel Gateway 3's kernel manager with the ``slurm`` field in kernel models.

Select it with ``c.KernelGatewayApp.kernel_manager_class``; Kernel Gateway
requires a subclass of its ``SeedingMappingKernelManager``.
"""

from kernel_gateway.services.kernels.manager import SeedingMappingKernelManager

from .kernelmanagers import SlurmKernelModelMixin


class SlurmSeedingKernelManager(SlurmKernelModelMixin, SeedingMappingKernelManager):
    """Kernel Gateway's kernel manager, adding each Slurm kernel's job status to its model."""
