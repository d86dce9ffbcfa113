# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
SERVER_VENV ?= .venv-server
BIN := $(VENV)/bin

.PHONY: demo test install server-env system-deps bench clean

demo: install server-env
	$(BIN)/coffea-lorentz demo

test: system-deps install server-env
	COFFEA_LORENTZ_REQUIRE_TRITON=1 COFFEA_LORENTZ_REQUIRE_STORAGE=1 COFFEA_LORENTZ_REQUIRE_SLURM=1 $(BIN)/pytest

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[test,generate]'
	touch $@

# Debian packages the storage and batch tests run for real: the xrootd daemon, util-linux's unshare and
# setpriv (workers without a shared disk; xrootd as nobody), and slurm-wlm with munge (a one-node
# Slurm cluster on loopback). Installed only where missing.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_INSTALL := DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends

system-deps:
	@if ! command -v xrootd >/dev/null 2>&1; then \
		$(SUDO) apt-get update -q && $(APT_INSTALL) xrootd-server; fi
	@if ! command -v unshare >/dev/null 2>&1 || ! command -v setpriv >/dev/null 2>&1; then \
		$(SUDO) apt-get update -q && $(APT_INSTALL) util-linux; fi
	@if ! command -v slurmctld >/dev/null 2>&1 || ! command -v slurmd >/dev/null 2>&1 || \
			! command -v sbatch >/dev/null 2>&1 || ! command -v munged >/dev/null 2>&1; then \
		$(SUDO) apt-get update -q && $(APT_INSTALL) slurm-wlm munge; fi

server-env: $(SERVER_VENV)/.installed

$(SERVER_VENV)/.installed: deploy/server-requirements.txt deploy/setup_server_env.sh
	bash deploy/setup_server_env.sh $(SERVER_VENV)
	touch $@

bench: install server-env
	$(BIN)/python bench/bench_pipeline.py
	$(BIN)/python bench/bench_taggers.py
	$(BIN)/python bench/bench_onnx.py

clean:
	rm -rf build out .pytest_cache
