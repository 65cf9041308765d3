"""Print, as JSON, what the slurmgate role needs to know about the Python environment that runs this script.

Usage: python probe_venv.py '{"gateway_module": "kernel_gateway", "requirements": ["jupyter_client>=8"]}'

The output has four keys. "slurmgate" is the installed version, or null
when slurmgate cannot be imported. "gateway" tells whether the gateway module
is installed. "unsatisfied" lists the requirements whose distribution is
missing or has a version outside the specifier, or all of them when the
'packaging' library is missing. "logo_dir" is ipykernel's logo directory, or
null.
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


def probe(gateway_module, requirements):
    report = {
        "slurmgate": None,
        "gateway": importlib.util.find_spec(gateway_module) is not None,
        "unsatisfied": unsatisfied(requirements),
        "logo_dir": None,
    }
    try:
        import slurmgate.provisioners.provisioner  # noqa: F401 - the module the gateway loads
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
    print(json.dumps(probe(request["gateway_module"], request["requirements"])))
