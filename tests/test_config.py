"""Validators of the configuration traits raise TraitError with the value and the fix."""

import pytest
from traitlets import TraitError

from slurmgate.provisioners.config import SlurmKernelConfig


@pytest.mark.parametrize(
    ("trait", "value", "message"),
    [
        ("gpus", -1, "gpus must be at least 0"),
        ("cpus", 0, "cpus must be at least 1"),
        ("memory", "lots", "invalid memory size 'lots'"),
        ("walltime", "forever", "invalid time 'forever'"),
        ("walltime", "UNLIMITED", "finite time limit"),
        ("launch_timeout", 0.0, "launch_timeout must be a finite number of seconds above 0"),
        ("poll_interval", -1.0, "poll_interval must be a finite number of seconds above 0"),
        ("kernel_ip", "0.0.0.0", "every interface"),
        ("kernel_ip", "::", "every interface"),
        ("kernel_ip", "node01", "invalid kernel_ip 'node01'"),
        ("launch_timeout", float("nan"), "finite number of seconds"),
        ("max_launch_timeout", float("inf"), "finite number of seconds"),
        ("client_overrides", ["partition", "launch_timeout"], "unknown field"),
        ("submit_host", "login01:ssh", "invalid port"),
        ("ssh_jump_host", "login01:70000", "invalid port"),
    ],
)
def test_trait_validators_raise(trait, value, message):
    config = SlurmKernelConfig()
    with pytest.raises(TraitError, match=message):
        setattr(config, trait, value)


def test_defaults_from_environment(monkeypatch):
    monkeypatch.setenv("SLURMGATE_PARTITION", "gpu")
    monkeypatch.setenv("SLURMGATE_GPUS", "2")
    monkeypatch.setenv("SLURMGATE_LAUNCH_TIMEOUT", "30")
    monkeypatch.setenv("SLURMGATE_ENV_PASSTHROUGH", "PATH, HOME")
    config = SlurmKernelConfig()
    assert config.partition == "gpu"
    assert config.gpus == 2
    assert config.launch_timeout == 30.0
    assert config.env_passthrough == ["PATH", "HOME"]


def test_malformed_environment_value(monkeypatch):
    monkeypatch.setenv("SLURMGATE_GPUS", "two")
    with pytest.raises(TraitError, match="SLURMGATE_GPUS is 'two'"):
        SlurmKernelConfig().gpus


def test_nothing_read_at_import(monkeypatch):
    config = SlurmKernelConfig()
    monkeypatch.setenv("SLURMGATE_QOS", "late")
    assert config.qos == "late"
