# The mail-outbox-worker image: `mailworker` on a slim Python, as a non-root user.
#
#   docker build -t mail-outbox-worker .
#   docker run --init -e DATABASE_URL=postgresql://... -e MAILWORKER_SECRET_KEY_FILE=... IMAGE
#
# docker-compose.yml runs it with PostgreSQL and Mailpit; docs/quickstart.md explains both.
# No secret is ever part of the image: the database URL, the secret key and the profiles'
# passwords come from the environment or from mounted files (Docker secrets) at run time.
# Nor does the image make a key by itself: without MAILWORKER_SECRET_KEY(_FILE), `mailworker
# run` refuses to start (MAILWORKER_ALLOW_DEVELOPMENT_KEY=false). Nor a database: the embedded
# PostgreSQL (the `local` extra) is not installed, so without DATABASE_URL every command
# refuses in one line.
#
# Both builders take this file, BuildKit and the classic one (DOCKER_BUILDKIT=0, engines
# without BuildKit): it uses no BuildKit-only instruction or option, and has no `# syntax=`
# line, so no frontend image is fetched either.

ARG PYTHON_IMAGE=python:3.12-slim-bookworm

# --- builder: a virtualenv holding exactly requirements.lock and the package ------------------
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore
# Without pip of its own: the builder's pip fills it (--python), and the image needs no pip.
RUN python -m venv --without-pip /opt/mailworker
WORKDIR /src
# The pinned runtime dependencies first: this layer is rebuilt only when the lock changes.
# --require-hashes: every file is checked against the lock's hash, and a dependency the lock
# does not pin fails the build; wheels only, as the image has no compiler.
COPY requirements.lock ./
RUN pip --python /opt/mailworker/bin/python install --require-hashes --only-binary=:all: \
        --requirement requirements.lock
# Then the package itself, without dependencies (its wheel carries the migrations and config/
# as package data); `pip check` fails the build if the lock lacks one it requires.
COPY pyproject.toml README.md ./
COPY worker ./worker
COPY migrations ./migrations
COPY config ./config
RUN pip wheel --no-deps --wheel-dir /tmp/wheels . \
    && pip --python /opt/mailworker/bin/python install --no-deps /tmp/wheels/mail_outbox_worker-*.whl \
    && pip --python /opt/mailworker/bin/python check

# --- the image: the virtualenv, nothing else -----------------------------------------------------
FROM ${PYTHON_IMAGE}
ENV PATH=/opt/mailworker/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MAILWORKER_DATA_DIR=/var/lib/mailworker \
    MAILWORKER_ALLOW_DEVELOPMENT_KEY=false \
    MAILWORKER_LOG_FORMAT=json \
    MAILWORKER_HTTP_ADDRESS=0.0.0.0:9090
RUN groupadd --system --gid 10001 mailworker \
    && useradd --system --uid 10001 --gid mailworker --home-dir /var/lib/mailworker \
        --create-home --shell /usr/sbin/nologin mailworker
# Owned by root: the service cannot change its own code.
COPY --from=builder /opt/mailworker /opt/mailworker
WORKDIR /var/lib/mailworker
USER 10001:10001
# /healthz of the worker (MAILWORKER_HTTP_ADDRESS); /metrics is on the same port.
EXPOSE 9090
# The worker drains on SIGTERM: it stops claiming, gives sends in progress
# MAILWORKER_SHUTDOWN_GRACE seconds (25 by default) and exits 0. Whoever stops the container
# must wait longer than that before SIGKILL: compose's stop_grace_period is 40s.
STOPSIGNAL SIGTERM
# Healthy: /healthz answers 200 (urllib, as the image has no curl; never through an HTTP_PROXY).
# With the endpoint off (MAILWORKER_HTTP_ADDRESS empty), healthy means the database answers.
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, subprocess, sys, urllib.request; a = os.environ.get('MAILWORKER_HTTP_ADDRESS', '').strip(); h, _, p = a.rpartition(':'); h = '127.0.0.1' if h in ('', '0.0.0.0', '[::]') else h; sys.exit(urllib.request.build_opener(urllib.request.ProxyHandler({})).open('http://%s:%s/healthz' % (h, p), timeout=5).status != 200 if a else subprocess.call(['mailworker', 'profiles', 'list'], stdout=subprocess.DEVNULL) != 0)"]
CMD ["mailworker", "run"]
