"""``python -m worker`` does what the ``mailworker`` command does."""

from worker.cli import main

main()
