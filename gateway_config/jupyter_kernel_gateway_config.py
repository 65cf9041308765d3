"""Jupyter Kernel Gateway 3 configuration for kernels that run as Slurm jobs.

Start the gateway with ``jupyter kernelgateway --config PATH_TO_THIS_FILE``.
Set the port and the token with --KernelGatewayApp.port and the
KG_AUTH_TOKEN environment variable; never write a token into this file.
"""

c = get_config()  # noqa: F821 - defined by traitlets when it loads this file

# Listen on loopback only; put a TLS-terminating proxy in front for remote users.
c.KernelGatewayApp.ip = "127.0.0.1"

# Clients built on @jupyterlab/services (VS Code, JupyterLab) list kernels
# before they use one; Kernel Gateway responds 403 unless listing is on.
c.JupyterWebsocketPersonality.list_kernels = True

# A kernel waits in the Slurm queue inside its start request. These apply to
# every Slurm kernelspec unless the kernelspec sets its own value.
c.SlurmKernelConfig.launch_timeout = 300.0
c.SlurmKernelConfig.poll_interval = 5.0

# Kernel models carry a "slurm" field (job id, state, pending reason, queue
# position, estimated start, time limit). With pending kernels, POST
# /api/kernels returns at once and the model is readable while the job
# queues; the kernel's WebSocket waits until the kernel runs.
c.KernelGatewayApp.kernel_manager_class = "slurmgate.provisioners.kernelgateway.SlurmSeedingKernelManager"
c.SlurmSeedingKernelManager.use_pending_kernels = True
