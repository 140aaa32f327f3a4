"""The test kit, not tests: what the tiers share.

Real SMTP servers (aiosmtpd with trustme TLS and AUTH, scripted faults) and provider servers,
their fixtures, the secret scan, worker processes and the database helpers. Each module's
docstring says what it offers; ``tests/conftest.py`` registers the fixture modules.
"""
