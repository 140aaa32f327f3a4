# The two commands of the README, and the tools around them.
# Everything runs from .venv, created on first use with the first Python 3.11+ found.

PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do \
	command -v $$p >/dev/null && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
	&& echo $$p && break; done)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The runtime dependencies, pinned: the Dockerfile installs exactly these, and .venv gets them
# as constraints (the dev tools and the benchmark's peer on top are not pinned). `make lock`
# re-pins them.
LOCK := requirements.lock

.PHONY: run test lint format lock clean bench chaos

$(STAMP): pyproject.toml $(LOCK)
	@test -n "$(PYTHON)" || { echo "Python 3.11 or newer is needed" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --constraint $(LOCK) -e '.[dev,bench]'
	@touch $@

# --dev-smtp: while there is no profile, a capture SMTP server runs in the worker and a profile
# named `local` sends to it; each message lands as an .eml file under .data/devmail/.
run: $(STAMP)  ## start the embedded database (unless DATABASE_URL is set), migrate, run the service
	$(BIN)/mailworker migrate
	$(BIN)/mailworker run --dev-smtp

test: $(STAMP)  ## the whole test suite
	$(BIN)/pytest

# The benchmark of docs/performance.md: a table on stdout, every figure in bench-results.json.
bench: $(STAMP)  ## throughput, latency, enqueue, idle cost and memory against the limit and a peer
	$(BIN)/python -m bench.run

# The chaos run of docs/reliability.md: 10,000 messages through 4 workers while workers are
# killed and PostgreSQL and the SMTP server restart; a table on stdout, figures in
# chaos-results.json, exit code 1 if a check fails.
chaos: $(STAMP)  ## send under SIGKILLs, restarts and 4xx replies, then check nothing was lost
	$(BIN)/python -m chaos.run

lint: $(STAMP)  ## ruff, formatting and strict typing
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Resolves pyproject.toml's runtime dependencies afresh (the newest versions it allows) in a
# throwaway venv and writes what got installed, minus the package itself, as name==version.
lock:  ## re-pin requirements.lock from pyproject.toml's runtime dependencies
	@test -n "$(PYTHON)" || { echo "Python 3.11 or newer is needed" >&2; exit 1; }
	rm -rf $(VENV)/lock-env
	$(PYTHON) -m venv $(VENV)/lock-env
	$(VENV)/lock-env/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/lock-env/bin/python -m pip install --quiet .
	{ echo "# The runtime dependencies of mail-outbox-worker, pinned. Made by \`make lock\` from"; \
	  echo "# pyproject.toml; do not edit. The Dockerfile installs exactly these (pip install -r);"; \
	  echo "# make installs .venv with them as constraints (pip install -c)."; \
	  echo "# Resolved with Python $$($(VENV)/lock-env/bin/python -c 'import platform; print(platform.python_version())')."; \
	  $(VENV)/lock-env/bin/python -m pip freeze --exclude mail-outbox-worker; } > $(LOCK).new
	mv $(LOCK).new $(LOCK)
	rm -rf $(VENV)/lock-env

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage
