"""``mailworker profiles authorize NAME``: sign an OAuth 2.0 profile in with its provider.

What happens depends on the profile's flow (docs/oauth.md):

* ``device_code`` (Microsoft, a person's mailbox): prints the provider's page and a code; the
  person enters the code there, on any device, and the command stores the tokens. Works on a
  server without a browser.
* ``authorization_code`` (Google, a person's account): prints the consent page's address and
  listens on 127.0.0.1 for the browser to come back; with ``--no-browser`` the person pastes
  the address the browser was sent to instead (the page itself then fails to load, which is
  expected).
* ``client_credentials`` (Microsoft app-only) and ``service_account`` (Google Workspace): no
  person; the command gets a first token, which shows that the app is set up right.

The tokens are stored encrypted; a new sign-in ends the profile's pause, and the messages
waiting for it go out at once.
"""

from __future__ import annotations

import http.server
import threading
import urllib.parse
from datetime import UTC, datetime
from typing import Any

import click
import structlog

from worker.cli.context import CliContext, pass_cli, run_async
from worker.cli.exits import ExitCode, UsageProblem
from worker.crypto import PasswordCipher, load_cipher
from worker.errors import AppRefused, ProfileNotFound, SignInInvalid
from worker.listener import notify_channel
from worker.oauth_app import OAuthApp
from worker.oauth_flows import (
    Tokens,
    finish_device_code,
    finish_google_consent,
    renew,
    start_device_code,
    start_google_consent,
)
from worker.profiles import Profile

__all__ = ["authorize"]

log = structlog.get_logger(__name__)


class NotAuthorised(click.ClickException):
    """The provider said no (a declined sign-in, a refused app): exit code 1."""

    exit_code = ExitCode.NOT_OK


@click.command("authorize", short_help="Sign an OAuth 2.0 profile in with its provider.")
@click.argument("name")
@click.option(
    "--no-browser",
    is_flag=True,
    help="Google: paste the address the browser was sent to instead of listening on 127.0.0.1.",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=0,
    show_default=True,
    help="Google: the 127.0.0.1 port the browser comes back to (0: any free port).",
)
@click.option(
    "--wait",
    type=click.IntRange(1, 3600),
    default=600,
    show_default=True,
    metavar="SECONDS",
    help="How long to wait for the person to sign in.",
)
@pass_cli
def authorize(cli: CliContext, name: str, no_browser: bool, port: int, wait: int) -> None:
    """Sign profile NAME in with its provider and store its tokens (docs/oauth.md)."""
    profile = run_async(lambda: _oauth_profile(cli, name))
    app = OAuthApp.of(profile)
    cipher = load_cipher(cli.settings)
    credential = None
    if profile.oauth_credential_encrypted is not None:
        credential = cipher.decrypt(profile.oauth_credential_encrypted, profile=name)
    try:
        tokens = _sign_in(app, credential, no_browser=no_browser, port=port, wait=wait)
    except (SignInInvalid, AppRefused) as exc:
        raise NotAuthorised(str(exc)) from None
    run_async(lambda: _store(cli, profile, cipher, tokens))
    who = tokens.account or app.mailbox
    log.info("profile_authorized", profile=name, account=who, flow=app.flow)
    click.echo(
        f"authorised profile {name!r} as {who}; the access token lasts until"
        f" {tokens.expires_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC and is renewed by the worker"
    )


def _sign_in(
    app: OAuthApp, credential: str | None, *, no_browser: bool, port: int, wait: int
) -> Tokens:
    match app.flow:
        case "device_code":
            device_code = start_device_code(app)
            click.echo(device_code.message or f"open {device_code.verification_uri}")
            click.echo("waiting for the sign-in ...", err=True)
            return finish_device_code(app, device_code, wait=wait)
        case "authorization_code":
            return _consent(app, credential, no_browser=no_browser, port=port, wait=wait)
        case _:
            return renew(app, credential=credential, refresh_token=None)


def _consent(
    app: OAuthApp, credential: str | None, *, no_browser: bool, port: int, wait: int
) -> Tokens:
    """Google's consent page, and the code it sends the browser back with."""
    if no_browser:
        # The browser is sent to 127.0.0.1 on the person's own machine, where nothing listens;
        # the address bar then holds the code.
        url, flow = start_google_consent(app, credential, redirect_uri="http://127.0.0.1/")
        click.echo(f"open this page, allow access, then paste the address it sends you to:\n{url}")
        pasted = click.prompt("address", err=True)
        return finish_google_consent(app, flow, code=_code_in(pasted))
    with _Loopback(port) as loopback:
        url, flow = start_google_consent(app, credential, redirect_uri=loopback.redirect_uri)
        click.echo(f"open this page in a browser and allow access:\n{url}")
        click.echo(f"waiting on {loopback.redirect_uri} ...", err=True)
        returned = loopback.wait(wait)
    return finish_google_consent(app, flow, code=_code_in(returned))


def _code_in(address: str) -> str:
    """The authorisation code in the address the consent page sent the browser to."""
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(address.strip()).query)
    if "error" in query:
        raise NotAuthorised(f"the sign-in was not allowed: {query['error'][0]}")
    if "code" not in query:
        raise UsageProblem("that address holds no code= part; paste the whole address")
    return query["code"][0]


class _Loopback:
    """A one-request HTTP server on 127.0.0.1: where the browser comes back with the code."""

    def __init__(self, port: int) -> None:
        self._returned: list[str] = []
        self._arrived = threading.Event()
        handler = self._handler()
        self._server = http.server.HTTPServer(("127.0.0.1", port), handler)
        self.redirect_uri = f"http://127.0.0.1:{self._server.server_port}/"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        loopback = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                query = urllib.parse.urlsplit(self.path).query
                if "code=" not in query and "error=" not in query:
                    self.send_error(404)
                    return
                loopback._returned.append(f"{loopback.redirect_uri}?{query}")
                loopback._arrived.set()
                body = b"mailworker: the sign-in is done; you may close this page.\n"
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: the request line holds the code."""

        return Handler

    def __enter__(self) -> _Loopback:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def wait(self, seconds: float) -> str:
        if not self._arrived.wait(seconds):
            raise NotAuthorised(f"no sign-in came back within {seconds:.0f} s")
        return self._returned[0]


async def _oauth_profile(cli: CliContext, name: str) -> Profile:
    async with cli.repository() as repository:
        profile = await repository.get_profile(name)
    if profile is None:
        raise ProfileNotFound(f"no profile is named {name!r}; `mailworker profiles list` shows all")
    if profile.auth_method != "oauth2":
        raise UsageProblem(
            f"profile {name!r} signs in with authentication {profile.auth_method}, not oauth2"
        )
    return profile


async def _store(cli: CliContext, profile: Profile, cipher: PasswordCipher, tokens: Tokens) -> None:
    """Keep the tokens, and end the profile's pause: its waiting messages go now."""
    now = datetime.now(UTC)
    values: dict[str, object] = {
        "access_token_encrypted": cipher.encrypt(tokens.access_token),
        "access_expires_at": tokens.expires_at,
        "scopes": tokens.scopes,
        "authorized_by": tokens.account or profile.login or profile.from_address,
        "authorized_at": now,
        "refreshed_at": now,
        "refresh_count": 0,
        "refresh_token_encrypted": (
            None if tokens.refresh_token is None else cipher.encrypt(tokens.refresh_token)
        ),
    }
    async with cli.repository() as repository:
        await repository.store_oauth_grant(profile.id, values)
        await repository.update_profile(profile.name, {"oauth_authorized_at": now})
        await repository.wake_workers(notify_channel(cli.settings.db_schema))
