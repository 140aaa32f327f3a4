"""Tests against a real PostgreSQL and real SMTP servers."""
