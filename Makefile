# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
SERVER_VENV ?= .venv-server
BIN := $(VENV)/bin

.PHONY: demo test install server-env bench clean

demo: install server-env
	$(BIN)/coffea-lorentz demo

test: install server-env
	COFFEA_LORENTZ_REQUIRE_TRITON=1 $(BIN)/pytest

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[test,generate]'
	touch $@

server-env: $(SERVER_VENV)/.installed

$(SERVER_VENV)/.installed: deploy/server-requirements.txt deploy/setup_server_env.sh
	bash deploy/setup_server_env.sh $(SERVER_VENV)
	touch $@

bench: install server-env
	$(BIN)/python bench/bench_pipeline.py
	$(BIN)/python bench/bench_taggers.py

clean:
	rm -rf build out .pytest_cache
