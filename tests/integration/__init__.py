"""The service's code in the test process against real parts: a real PostgreSQL (a database of
each test's own), real SMTP servers with TLS and AUTH, the CLI through click's runner."""
