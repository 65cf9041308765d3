# Set-up, demo and tests. Run as root on Debian 12: the dev cluster needs it.
PYTHON ?= python3
VENV ?= .venv
VENV_PYTHON := $(VENV)/bin/python
PYTEST_ARGS ?=
# Enterprise Gateway 3 needs jupyter_client 6, so it gets an environment of its own.
EG3_VENV ?= .venv-eg3
EG3_PYTHON := $(EG3_VENV)/bin/python
# ansible-core and ansible-lint live apart from the product's environment.
ANSIBLE_VENV ?= .ansible-venv

.PHONY: demo test lint unit cluster cluster-down venv eg3-venv test-packages sshd-package node-client clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3 python3-venv python3-dev; }
	@$(PYTHON) -c "import ensurepip, venv" 2>/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv; }
	$(PYTHON) -m venv $(VENV)
	$(VENV_PYTHON) -m pip install --quiet --upgrade pip
	$(VENV_PYTHON) -m pip install --quiet -e '.[test,demo]'
	# Editable installs skip data files: enable the Jupyter Server extension by hand.
	install -D -m 0644 lab_extension/jupyter-config/jupyter_server_config.d/slurmgate.json \
		$(VENV)/etc/jupyter/jupyter_server_config.d/slurmgate.json
	touch $@

# Debian's Chromium for the browser tests (Playwright drives it, no browser
# download) and OpenSSH's server for the tunnel tests and the EG demo.
test-packages: sshd-package
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; }

sshd-package:
	@test -x /usr/sbin/sshd || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends openssh-server; }

# Installs Slurm from Debian when missing and starts a one-host cluster.
cluster: venv
	$(VENV)/bin/slurmgate devcluster up

cluster-down: venv
	$(VENV)/bin/slurmgate devcluster down

# GATEWAY=eg3 runs the demo through Enterprise Gateway 3.3, with the kernel's
# channels tunnelled over SSH through a loopback sshd.
GATEWAY ?= kernelgateway

demo: cluster
ifeq ($(GATEWAY),eg3)
	$(MAKE) eg3-venv sshd-package
	$(VENV_PYTHON) examples/demo.py --gateway eg3 --eg3-python $(abspath $(EG3_PYTHON))
else
	$(VENV_PYTHON) examples/demo.py
endif

lint: venv
	$(VENV_PYTHON) -m flake8 slurm provisioners lab_extension examples tests gateway_config ansible

# Tests that need neither the cluster nor a gateway.
unit: venv
	$(VENV_PYTHON) -m pytest -m "not cluster" $(PYTEST_ARGS)

$(EG3_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(EG3_VENV)
	$(EG3_PYTHON) -m pip install --quiet --upgrade pip
	$(EG3_PYTHON) -m pip install --quiet -e '.[eg3]'
	touch $@

eg3-venv: $(EG3_VENV)/.installed

$(ANSIBLE_VENV)/.installed:
	$(PYTHON) -m venv $(ANSIBLE_VENV)
	$(ANSIBLE_VENV)/bin/python -m pip install --quiet 'ansible-core>=2.19,<2.20' 'ansible-lint>=26,<27'
	touch $@

# @jupyterlab/services for the VS Code-style client test, from the lock file.
node-client:
	cd examples/vscode_client && npm ci --no-audit --no-fund --loglevel=error

test: cluster test-packages node-client lint eg3-venv $(ANSIBLE_VENV)/.installed
	SLURMGATE_ANSIBLE_BIN=$(abspath $(ANSIBLE_VENV))/bin SLURMGATE_EG3_PYTHON=$(abspath $(EG3_PYTHON)) \
		$(VENV_PYTHON) -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) $(EG3_VENV) $(ANSIBLE_VENV) build *.egg-info .pytest_cache examples/vscode_client/node_modules
