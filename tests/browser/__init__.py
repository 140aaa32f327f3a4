"""The web console in a real browser: Debian's Chromium (/usr/bin/chromium), driven by
Playwright, against ``mailworker console`` running as a process (``tests/kit/console_browser.py``
has both, the sign-in and the ``screenshots`` fixture). Fields are found by their labels; the
pages docs/console.md shows are saved as screenshots. Without Chromium these tests skip
(``.ci/run`` installs it)."""
