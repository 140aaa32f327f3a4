"""The documentation runs as written: every shell block, the outbox page's SQL and Python, the
generated settings reference."""
