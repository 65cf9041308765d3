"""Jupyter Enterprise Gateway 3.3 configuration for kernels that run as Slurm jobs.

Start the gateway from its own environment (it pins jupyter_client below 7)
with ``jupyter enterprisegateway --config PATH_TO_THIS_FILE``, or copy this
file into a Jupyter config directory: Enterprise Gateway looks for exactly
this name and ignores ``jupyter_enterprisegateway_config.py``. Set the port
with --EnterpriseGatewayApp.port and the token with the EG_AUTH_TOKEN
environment variable; never write a token into this file.
"""

c = get_config()  # noqa: F821 - defined by traitlets when it loads this file

# Listen on loopback only. Put a TLS-terminating proxy in front for remote users.
c.EnterpriseGatewayApp.ip = "127.0.0.1"

# Fail at start when the port is taken. By default the gateway moves to one
# of the next 50 ports, where clients configured with the port do not look.
c.EnterpriseGatewayApp.port_retries = 0

# Clients built on @jupyterlab/services (VS Code, JupyterLab) list kernels
# before they use one, and Enterprise Gateway returns 403 unless listing is on.
c.EnterpriseGatewayApp.list_kernels = True

# Kernel models carry a "slurm" field (job id, state, partition, node, time
# limit). Enterprise Gateway 3 has no pending kernels, so the model exists
# only once the kernel runs.
c.EnterpriseGatewayApp.kernel_manager_class = "slurmgate.provisioners.eg3.SlurmRemoteMappingKernelManager"

# Kernels of the users named here are rejected with HTTP 403. The check uses
# the start request's KERNEL_USERNAME, or the gateway's own user when the
# request names none, so a gateway that runs as root rejects requests that
# do not name a user. This is Enterprise Gateway's default, written out here.
c.EnterpriseGatewayApp.unauthorized_users = {"root"}

# A kernel waits in the Slurm queue inside its start request, because
# Enterprise Gateway 3 has no pending kernels. These apply to every Slurm
# kernelspec unless the kernelspec sets its own value. The start request's
# KERNEL_LAUNCH_TIMEOUT replaces launch_timeout; Jupyter Server 2 as a
# gateway client sends 40 s unless its GatewayClient.request_timeout is raised.
c.SlurmKernelConfig.launch_timeout = 300.0
c.SlurmKernelConfig.poll_interval = 5.0
