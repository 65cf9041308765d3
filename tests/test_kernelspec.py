import json

import pytest

from slurmgate.provisioners.kernelspec import main


def test_install_writes_provisioner_config(tmp_path):
    code = main(["install", "--name", "Slurm-GPU", "--display-name", "Python 3 (GPU)", "--partition", "gpu",
                 "--gpus", "1", "--memory", "8G", "--walltime", "2:00:00", "--extra-directive=--exclusive",
                 "--prologue", "module load cuda", "--python", "/opt/venv/bin/python", "--prefix", str(tmp_path)])
    assert code == 0
    spec = json.loads((tmp_path / "share/jupyter/kernels/slurm-gpu/kernel.json").read_text())
    assert spec["argv"] == ["/opt/venv/bin/python", "-m", "slurmgate.provisioners.launcher"]
    assert spec["display_name"] == "Python 3 (GPU)"
    assert spec["interrupt_mode"] == "message"
    provisioner = spec["metadata"]["kernel_provisioner"]
    assert provisioner["provisioner_name"] == "slurm-provisioner"
    assert provisioner["config"] == {
        "partition": "gpu", "gpus": 1, "memory": "8G", "walltime": "2:00:00",
        "extra_directives": ["--exclusive"], "script_prologue": ["module load cuda"],
    }


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--memory", "16 GB"], "invalid memory size '16 GB'"),
        (["--walltime", "90 minutes"], "invalid time '90 minutes'"),
        (["--partition", "gpu large"], "invalid partition 'gpu large'"),
        (["--gpus", "-2"], "invalid gpus -2"),
        (["--launch-timeout", "0"], "finite number of seconds above 0"),
        (["--launch-timeout", "nan"], "finite number of seconds above 0"),
        (["--launch-timeout", "inf"], "finite number of seconds above 0"),
        (["--kernel-ip", "foo"], "invalid kernel_ip 'foo'"),
        (["--kernel-ip", "0.0.0.0"], "every interface"),
        (["--gpus", "100000000000000000000"], "invalid gpus"),
        (["--extra-directive=--time=5"], "--time"),
        (["--extra-directive", "exclusive"], "starting with '-'"),
    ],
)
def test_install_rejects_bad_settings(tmp_path, capsys, options, message):
    code = main(["install", "--name", "bad", "--prefix", str(tmp_path), *options])
    assert code == 1
    assert message in capsys.readouterr().err
    assert not (tmp_path / "share/jupyter/kernels/bad").exists()


def test_install_ssh_tunnel_settings(tmp_path):
    code = main(["install", "--name", "tunnelled", "--ssh-tunnel", "--ssh-node-host", "{node}.hpc.example",
                 "--ssh-port", "2222", "--ssh-known-hosts", "/etc/ssh/ssh_known_hosts", "--ssh-jump-host", "login:22",
                 "--prefix", str(tmp_path)])
    assert code == 0
    config = json.loads((tmp_path / "share/jupyter/kernels/tunnelled/kernel.json").read_text())["metadata"]["kernel_provisioner"]["config"]
    assert config == {
        "ssh_tunnel": True, "ssh_node_host": "{node}.hpc.example", "ssh_port": 2222,
        "ssh_known_hosts": "/etc/ssh/ssh_known_hosts", "ssh_jump_host": "login:22",
    }


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--ssh-port", "2222"], "--ssh-port apply only with --ssh-tunnel"),
        (["--ssh-tunnel", "--ssh-port", "70000"], "invalid --ssh-port 70000"),
    ],
)
def test_install_rejects_bad_ssh_settings(tmp_path, capsys, options, message):
    assert main(["install", "--name", "bad", "--prefix", str(tmp_path), *options]) == 1
    assert message in capsys.readouterr().err


def test_help_lists_options(capsys):
    with pytest.raises(SystemExit) as caught:
        main(["install", "--help"])
    assert caught.value.code == 0
    assert "--job-output" in capsys.readouterr().out


def test_install_rejects_bad_name(tmp_path, capsys):
    assert main(["install", "--name", "../evil", "--prefix", str(tmp_path)]) == 1
    assert "invalid kernel name '../evil'" in capsys.readouterr().err


def test_install_eg3_writes_process_proxy_config(tmp_path):
    code = main(["install", "--gateway", "eg3", "--name", "slurm-gpu", "--partition", "gpu", "--gpus", "1",
                 "--launch-timeout", "600", "--python", "/opt/eg3/bin/python", "--prefix", str(tmp_path)])
    assert code == 0
    spec = json.loads((tmp_path / "share/jupyter/kernels/slurm-gpu/kernel.json").read_text())
    assert spec["argv"] == ["/opt/eg3/bin/python", "-m", "slurmgate.provisioners.launcher"]
    assert spec["interrupt_mode"] == "message"
    assert "kernel_provisioner" not in spec["metadata"]
    proxy = spec["metadata"]["process_proxy"]
    assert proxy["class_name"] == "slurmgate.provisioners.eg3.SlurmProcessProxy"
    assert proxy["config"] == {"partition": "gpu", "gpus": 1, "launch_timeout": 600.0}


def test_install_eg3_validates_like_default(tmp_path, capsys):
    assert main(["install", "--gateway", "eg3", "--name", "bad", "--memory", "16 GB", "--prefix", str(tmp_path)]) == 1
    assert "invalid memory size '16 GB'" in capsys.readouterr().err
    assert not (tmp_path / "share/jupyter/kernels/bad").exists()


def test_install_default_gateway_is_provisioner(capsys):
    options = ["install", "--name", "slurm-cpu", "--partition", "cpu", "--python", "/opt/venv/bin/python", "--dry-run"]
    assert main(options) == 0
    implicit = capsys.readouterr().out
    assert main([*options, "--gateway", "provisioner"]) == 0
    assert capsys.readouterr().out == implicit
    assert json.loads(implicit)["metadata"]["kernel_provisioner"]["provisioner_name"] == "slurm-provisioner"
