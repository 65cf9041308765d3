"""Enterprise Gateway 3.3 with a route that shows Slurm kernels while their jobs queue.

Enterprise Gateway 3 has no pending kernels: ``POST /api/kernels`` returns
only once the kernel runs, and until then the kernel is in no list. This app
adds ``GET /api/slurm/kernels/{kernel_id}`` and ``GET /api/slurm/kernels``
(optionally ``?user=NAME``), which return each Slurm kernel's id, user and
``slurm`` status: job id, state, pending reason, queue position, estimated
start. A client that wants to show the wait picks the kernel id itself
(``KERNEL_ID`` in the start request's ``env``, a v4 UUID) and polls the
route while its start request waits.

Run it from the Enterprise Gateway environment instead of
``jupyter enterprisegateway``: ``python -m slurmgate.provisioners.eg3_app``
takes the same options and configuration file.
"""

from __future__ import annotations

import json
import sys

from enterprise_gateway.enterprisegatewayapp import EnterpriseGatewayApp
from enterprise_gateway.mixins import CORSMixin, JSONErrorsMixin, TokenAuthorizationMixin
from jupyter_server.utils import url_path_join
from tornado import web

from .eg3 import LAUNCHES


class SlurmKernelsHandler(TokenAuthorizationMixin, CORSMixin, JSONErrorsMixin, web.RequestHandler):
    """Returns the status of Slurm kernels that are starting, running or recently ended."""

    def get(self, kernel_id: str | None = None) -> None:
        """Return one kernel by id, or the list, optionally for one ``user``."""
        if kernel_id:
            kernel = LAUNCHES.get(kernel_id)
            if kernel is None:
                raise web.HTTPError(404, f"no Slurm kernel {kernel_id} is starting, running or recently ended on this gateway")
            self.finish(json.dumps(kernel))
            return
        self.finish(json.dumps(LAUNCHES.for_user(self.get_argument("user", None))))


class SlurmEnterpriseGatewayApp(EnterpriseGatewayApp):
    """Enterprise Gateway with the ``/api/slurm/kernels`` route."""

    def _create_request_handlers(self) -> list[tuple]:
        # First, because Enterprise Gateway's own list ends in a catch-all 404 handler.
        routes = [
            (url_path_join("/", self.base_url, pattern), SlurmKernelsHandler)
            for pattern in (r"/api/slurm/kernels", r"/api/slurm/kernels/(?P<kernel_id>[0-9a-fA-F-]+)")
        ]
        return routes + super()._create_request_handlers()


def main() -> None:
    """Start the gateway, as ``jupyter enterprisegateway`` does."""
    SlurmEnterpriseGatewayApp.launch_instance(sys.argv[1:])


if __name__ == "__main__":
    main()
