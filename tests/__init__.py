"""The test suite; a package so that tests can import ``tests.smtp_server`` and its fixtures."""
