"""The service as separate processes: ``mailworker`` commands and workers run as an operator
runs them, several at once, killed and restarted, with their databases restarted under them;
the chaos and benchmark runs at their smoke sizes."""
