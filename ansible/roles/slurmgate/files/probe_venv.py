"""Print, as JSON, what the slurmgate role needs to know about the Python environment that runs this script.

Usage: python probe_venv.py '{"gateway_module": "kernel_gateway", "requirements": ["jupyter_client>=8"]}'

The request may also name "slurmgate_module", the slurmgate module that
must import (default slurmgate.provisioners.provisioner, which needs
jupyter_client 7 or later). The output has four keys. "slurmgate" is the
installed version, or null when that module cannot be imported. "gateway"
is true when the gateway module is installed. "unsatisfied" lists the
requirements whose distribution is missing or has a version outside the
specifier, or all of them when the 'packaging' library is missing.
"logo_dir" is ipykernel's logo directory, or null.
"""

import importlib.metadata
import importlib.util
import json
import os
import sys


def unsatisfied(requirements):
    """Return the requirements that the installed distributions do not meet. Extras are not checked."""
    try:
        from packaging.requirements import Requirement
    except ImportError:
        return list(requirements)
    missing = []
    for text in requirements:
        requirement = Requirement(text)
        try:
            version = importlib.metadata.version(requirement.name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(text)
            continue
        if not requirement.specifier.contains(version, prereleases=True):
            missing.append(text)
    return missing


DEFAULT_SLURMGATE_MODULE = "slurmgate.provisioners.provisioner"


def probe(gateway_module, requirements, slurmgate_module=DEFAULT_SLURMGATE_MODULE):
    report = {
        "slurmgate": None,
        "gateway": importlib.util.find_spec(gateway_module) is not None,
        "unsatisfied": unsatisfied(requirements),
        "logo_dir": None,
    }
    try:
        importlib.import_module(slurmgate_module)
    except ImportError:
        pass
    else:
        report["slurmgate"] = importlib.metadata.version("slurmgate")
    ipykernel = importlib.util.find_spec("ipykernel")
    if ipykernel is not None and ipykernel.origin:
        resources = os.path.join(os.path.dirname(ipykernel.origin), "resources")
        if os.path.isdir(resources):
            report["logo_dir"] = resources
    return report


if __name__ == "__main__":
    request = json.loads(sys.argv[1])
    slurmgate_module = request.get("slurmgate_module", DEFAULT_SLURMGATE_MODULE)
    print(json.dumps(probe(request["gateway_module"], request["requirements"], slurmgate_module)))
