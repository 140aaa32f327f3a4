# syntax=docker/dockerfile:1
# The mail-outbox-worker image: `mailworker` on a slim Python, as a non-root user.
#
#   docker build -t mail-outbox-worker .
#   docker run --init -e DATABASE_URL=postgresql://... -e MAILWORKER_SECRET_KEY_FILE=... IMAGE
#
# docker-compose.yml runs it with PostgreSQL and Mailpit; docs/quickstart.md explains both.
# No secret is ever part of the image: the database URL, the secret key and the profiles'
# passwords come from the environment or from mounted files (Docker secrets) at run time.
# Nor does the image make a key by itself: without MAILWORKER_SECRET_KEY(_FILE), `mailworker
# run` refuses to start (MAILWORKER_ALLOW_DEVELOPMENT_KEY=false).

ARG PYTHON_IMAGE=python:3.12-slim-bookworm

# --- builder: every wheel the service needs, from requirements.lock --------------------------
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
# The pinned runtime dependencies first: this layer is rebuilt only when the lock changes.
COPY requirements.lock ./
RUN pip wheel --no-deps --wheel-dir /wheels --requirement requirements.lock
# Then the package itself (its wheel carries the migrations and config/ as package data).
COPY pyproject.toml README.md ./
COPY worker ./worker
COPY migrations ./migrations
COPY config ./config
RUN pip wheel --no-deps --wheel-dir /wheels . \
    && cp requirements.lock /wheels/

# --- the image: the wheels installed, nothing else ---------------------------------------------
FROM ${PYTHON_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore \
    MAILWORKER_DATA_DIR=/var/lib/mailworker \
    MAILWORKER_ALLOW_DEVELOPMENT_KEY=false \
    MAILWORKER_LOG_FORMAT=json \
    MAILWORKER_HTTP_ADDRESS=0.0.0.0:9090
# Only from the builder's wheels (--no-index): exactly the locked versions, no compiler here.
# `pip check` fails the build if the lock and the package's requirements disagree.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-index --find-links /wheels --requirement /wheels/requirements.lock \
        /wheels/mail_outbox_worker-*.whl \
    && pip check \
    && groupadd --system --gid 10001 mailworker \
    && useradd --system --uid 10001 --gid mailworker --home-dir /var/lib/mailworker \
        --create-home --shell /usr/sbin/nologin mailworker
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
