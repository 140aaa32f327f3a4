"""Django settings for the peer: post_office's defaults, its own database, SMTP to the sink.

The benchmark passes the database, the sink's port and, in the latency mode, the number of
sending threads in ``BENCH_PEER_*`` variables.
"""

from __future__ import annotations

import os

__all__: list[str] = []

SECRET_KEY = "bench-only-not-secret"  # noqa: S105 - a throwaway site that serves nothing
DEBUG = False
USE_TZ = True
INSTALLED_APPS = ["django.contrib.contenttypes", "post_office"]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ.get("BENCH_PEER_DB_NAME", "mailworker_bench_peer"),
        "HOST": os.environ.get("BENCH_PEER_DB_HOST", "127.0.0.1"),
        "PORT": os.environ.get("BENCH_PEER_DB_PORT", "5432"),
        "USER": os.environ.get("BENCH_PEER_DB_USER", "postgres"),
        "PASSWORD": os.environ.get("BENCH_PEER_DB_PASSWORD", ""),
    }
}
# post_office renders every message through Django's template engine, templates or not.
TEMPLATES = [{"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True}]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# post_office hands each message to Django's SMTP backend: plain SMTP to the sink.
EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
EMAIL_HOST = "127.0.0.1"
EMAIL_PORT = int(os.environ.get("BENCH_PEER_SINK_PORT", "25"))
DEFAULT_FROM_EMAIL = "Bench <powiadomienia@example.com>"
# Its sending threads (5 by default), each with a connection of its own; the latency mode
# gives it as many as the worker's profile has connections.
if "BENCH_PEER_THREADS" in os.environ:
    POST_OFFICE = {"THREADS_PER_PROCESS": int(os.environ["BENCH_PEER_THREADS"])}
LOGGING = {"version": 1, "disable_existing_loggers": False}
