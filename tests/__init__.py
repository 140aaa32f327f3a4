"""The test suite; a package so that tests can import ``tests.kit.smtp_server`` and its fixtures."""
