"""Run the doctests of every module; pure helpers document themselves with examples."""

import doctest
import importlib

import pytest

MODULES = [
    "slurmgate.slurm.units",
    "slurmgate.slurm.request",
    "slurmgate.slurm.script",
    "slurmgate.slurm.parsers",
    "slurmgate.slurm.jobs",
    "slurmgate.slurm.devcluster",
    "slurmgate.provisioners.protocol",
    "slurmgate.provisioners.launcher",
]


@pytest.mark.parametrize("name", MODULES)
def test_module_doctests(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{name} has no doctest examples"
    assert result.failed == 0
