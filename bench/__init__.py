"""The benchmark of issue 6: ``python -m bench.run`` (``make bench``); see docs/performance.md."""
