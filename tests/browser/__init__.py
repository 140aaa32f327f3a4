"""The web console in a real browser: Debian's Chromium (/usr/bin/chromium), driven by
Playwright, against ``mailworker console`` running as a process. Fields are found by their
labels; each page is saved as a screenshot. Without Chromium these tests skip (``.ci/run``
installs it)."""
