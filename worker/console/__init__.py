"""The web console (``mailworker console``): server-rendered pages over the repository.

:mod:`worker.console.app` builds the ASGI app from the settings; :mod:`.auth` signs people in
(passwords, sessions, CSRF, the login rate limit); :mod:`.i18n` picks Polish or English;
:mod:`.accounts` is the accounts page. Templates, the style sheet and the Polish catalogue
live beside the code and ship in the wheel.
"""
