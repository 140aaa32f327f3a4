"""A private Postfix instance for interoperability tests: Debian's ``postfix``, a real MTA.

``PostfixServer(directory)`` writes a configuration of its own under ``directory`` (``conf/``
with ``main.cf``, ``master.cf`` and a recipient access map; ``queue/``, ``data/``, the
Maildir ``mail/inbox/`` and the mail log ``postfix.log``), listens on a free port of
127.0.0.1 (never port 25, never the system instance's configuration) and delivers every
recipient in :data:`DOMAIN` to that one Maildir. Any client on 127.0.0.0/8 may send without
TLS or AUTH, as through a local relay. Postfix offers PIPELINING and CHUNKING (BDAT) as it
comes; ``discard_ehlo_keywords=("pipelining", "chunking")`` hides them, so a client must use
MAIL, RCPT and DATA. Either way a client that sends on before the reply to a command that
must end a group (EHLO, DATA, QUIT, ...; RFC 2920 3.1) is cut off with ``554 5.5.0`` and an
``improper command pipelining`` line in the log (``smtpd_forbid_unauth_pipelining``); MAIL and
RCPT sent together where PIPELINING is hidden go unnoticed: Postfix tolerates them.
:data:`REFUSED` is refused at RCPT with ``550 5.1.1``.

What a test reads back:

- ``wait_for_messages(n)``: the delivered messages, each with its envelope recipient (the
  ``Delivered-To`` header that Postfix's virtual delivery agent prepends);
- ``wait_for_sessions(mails)``: the SMTP sessions from the mail log's ``disconnect from``
  lines, where Postfix counts the commands each client used (``ehlo=1 mail=1 rcpt=2 bdat=1
  quit=1 commands=6``): ``bdat`` or ``data`` there tells how a message was sent.

Starting needs root (Postfix's master drops privileges to the ``postfix`` user the package
creates); ``directory`` and every directory above it must be searchable by that user, which
pytest's own temporary directories are not. The ``postfix_server_factory`` fixture (registered
in ``tests/conftest.py``) makes such a directory for each server, skips the test when Postfix
is not installed or the tests do not run as root, and stops every server it started. Each
instance has its own directories and port, so tests may run under pytest-xdist::

    def test_x(postfix_server_factory: PostfixServerFactory) -> None:
        server = postfix_server_factory(discard_ehlo_keywords=("pipelining", "chunking"))
        ...   # a profile with host=server.hostname, port=server.port, encryption "none"
        [message] = server.wait_for_messages(1)
        [session] = server.wait_for_sessions(1)
        assert "data" in session.commands
"""

from __future__ import annotations

import dataclasses
import email
import email.policy
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

__all__ = [
    "DOMAIN",
    "POSTFIX",
    "REFUSED",
    "DeliveredMessage",
    "PostfixServer",
    "PostfixServerFactory",
    "PostfixSession",
    "postfix_server_factory",
]

POSTFIX = "/usr/sbin/postfix"
DOMAIN = "example.com"
REFUSED = f"refused@{DOMAIN}"
REFUSED_REPLY = "550 5.1.1 No such mailbox here"
HOST = "127.0.0.1"
_USER = "postfix"
_STARTUP_SECONDS = 20.0
_STOP_SECONDS = 10.0
_PORT_TRIES = 3

# The daemons an instance needs, as in Debian's master.cf but with smtpd on the instance's own
# address and none chrooted: they open paths in the test's directories.
_MASTER_CF = """\
{host}:{port} inet  n       -       n       -       -       smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""

# ``disconnect from localhost[127.0.0.1] ehlo=1 mail=1 rcpt=1/2 data=1 quit=1 commands=5/6``:
# each count is ``accepted`` or ``accepted/issued``.
_DISCONNECT = re.compile(r"postfix/smtpd\[\d+\]: disconnect from (?P<client>\S+) (?P<counts>.*)$")
_COUNT = re.compile(r"(?P<name>[a-z]+)=(?P<ok>\d+)(?:/(?P<all>\d+))?")


@dataclasses.dataclass(frozen=True)
class DeliveredMessage:
    """One message as it landed in the Maildir, for one envelope recipient."""

    recipient: str
    raw: bytes
    message: EmailMessage


@dataclasses.dataclass(frozen=True)
class PostfixSession:
    """One SMTP client session, as the mail log's ``disconnect from`` line counts it."""

    client: str
    # Command name (lower case) to (accepted, issued); ``commands`` is the total.
    commands: dict[str, tuple[int, int]]

    def issued(self, command: str) -> int:
        return self.commands.get(command, (0, 0))[1]


class PostfixServer:
    """A private Postfix instance under ``directory``; ``start()``, then ``stop()``."""

    def __init__(self, directory: Path, *, discard_ehlo_keywords: tuple[str, ...] = ()) -> None:
        self.directory = directory
        self.discard_ehlo_keywords = discard_ehlo_keywords
        self.hostname = HOST
        self.port = 0
        self.cert_bundle: str | None = None  # no TLS: the profile sends with encryption "none"
        self.config_dir = directory / "conf"
        self.queue_dir = directory / "queue"
        self.data_dir = directory / "data"
        self.mail_base = directory / "mail"
        self.maildir = self.mail_base / "inbox"
        self.log_file = directory / "postfix.log"
        self._master_pid: int | None = None

    def start(self) -> PostfixServer:
        _check_searchable(self.directory)
        for attempt in range(_PORT_TRIES):
            # Another process may take the free port before the master binds it: another one.
            self.port = _free_port()
            self._write_config()
            try:
                self._postfix("start")
                break
            except RuntimeError:
                self._master_pid = self._read_master_pid()
                self.stop()
                taken = f"port {self.port}: Address already in use" in self.log_text()
                if not taken or attempt == _PORT_TRIES - 1:
                    raise
        self._master_pid = self._read_master_pid()
        self._wait_for_greeting()
        return self

    def stop(self) -> None:
        """Stop the instance and make sure none of its processes is left; idempotent."""
        if self._master_pid is None:
            return
        master, self._master_pid = self._master_pid, None
        # Whether it succeeds or not (the master may be gone), what is left is killed below.
        self._postfix("stop", must_succeed=False)
        # The master runs in a session of its own, with every daemon it started.
        deadline = time.monotonic() + _STOP_SECONDS
        while _session_members(master) and time.monotonic() < deadline:
            time.sleep(0.1)
        for pid in _session_members(master):
            os.kill(pid, signal.SIGKILL)

    def __enter__(self) -> PostfixServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def wait_for_messages(self, count: int, timeout: float = 20.0) -> list[DeliveredMessage]:
        """The delivered messages, oldest first, once there are ``count``; fails on timeout."""
        new = self.maildir / "new"
        deadline = time.monotonic() + timeout
        while True:
            files = sorted(new.glob("*"), key=lambda path: (path.stat().st_mtime_ns, path.name))
            if len(files) >= count or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert len(files) == count, f"{len(files)} messages delivered, {count} expected"
        return [_read_delivered(path) for path in files]

    def sessions(self) -> list[PostfixSession]:
        """Every finished SMTP session in the mail log, the readiness probe's included."""
        return [
            _session(match)
            for line in self.log_text().splitlines()
            if (match := _DISCONNECT.search(line))
        ]

    def wait_for_sessions(self, mails: int, timeout: float = 20.0) -> list[PostfixSession]:
        """The sessions that gave MAIL, once they gave ``mails`` MAIL commands between them.

        The log is written apart from delivery, so a session may be logged after its message
        landed."""
        deadline = time.monotonic() + timeout
        while True:
            sending = [session for session in self.sessions() if session.issued("mail")]
            issued = sum(session.issued("mail") for session in sending)
            if issued >= mails or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert issued == mails, f"the mail log shows {issued} MAIL commands, {mails} expected"
        return sending

    def log_text(self) -> str:
        """The whole mail log of this instance."""
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:]) or "(the mail log is empty)"

    def _write_config(self) -> None:
        owner = pwd.getpwnam(_USER)
        for path in (self.config_dir, self.queue_dir):
            path.mkdir(mode=0o755, parents=True, exist_ok=True)
        for path in (self.data_dir, self.mail_base):
            path.mkdir(mode=0o700, exist_ok=True)
            os.chown(path, owner.pw_uid, owner.pw_gid)
        access = self.config_dir / "recipient_access"
        access.write_text(f"{REFUSED} {REFUSED_REPLY}\n")
        (self.config_dir / "main.cf").write_text(self._main_cf(owner, access))
        (self.config_dir / "master.cf").write_text(_MASTER_CF.format(host=HOST, port=self.port))

    def _main_cf(self, owner: pwd.struct_passwd, access: Path) -> str:
        settings = {
            "compatibility_level": "3.6",
            "queue_directory": self.queue_dir,
            "data_directory": self.data_dir,
            "mail_owner": _USER,
            "maillog_file": self.log_file,
            "maillog_file_prefixes": self.directory,
            "myhostname": "mx.postfix.test",
            "mydomain": "postfix.test",
            "mydestination": "",
            "inet_interfaces": HOST,
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            # No /etc/aliases: the system instance's files are none of this instance's business.
            "alias_maps": "",
            "alias_database": "",
            "smtpd_relay_restrictions": "permit_mynetworks, reject_unauth_destination",
            "smtpd_recipient_restrictions": f"check_recipient_access texthash:{access}",
            "smtpd_discard_ehlo_keywords": ", ".join(self.discard_ehlo_keywords),
            "smtpd_peername_lookup": "no",
            # A client that sends on after EHLO, DATA and the like before the reply is cut off.
            "smtpd_forbid_unauth_pipelining": "yes",
            # Every recipient in the test domain lands in one Maildir (the trailing slash).
            "virtual_mailbox_domains": DOMAIN,
            "virtual_mailbox_base": self.mail_base,
            "virtual_mailbox_maps": "static:inbox/",
            "virtual_minimum_uid": owner.pw_uid,
            "virtual_uid_maps": f"static:{owner.pw_uid}",
            "virtual_gid_maps": f"static:{owner.pw_gid}",
            # Nothing leaves this machine: a bounce to the sender is dropped, not sent.
            "default_transport": "discard:no mail leaves the test instance",
            "relay_transport": "discard:no mail leaves the test instance",
        }
        return "".join(f"{name} = {value}\n" for name, value in settings.items())

    def _read_master_pid(self) -> int | None:
        try:
            return int((self.queue_dir / "pid" / "master.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def _postfix(self, command: str, *, must_succeed: bool = True) -> None:
        # Postfix writes its errors to stderr only on a terminal; the mail log has them too.
        done = subprocess.run(
            [POSTFIX, "-c", str(self.config_dir), command],
            check=False,
            capture_output=True,
            text=True,
        )
        if must_succeed and done.returncode != 0:
            raise RuntimeError(
                f"postfix {command} failed ({done.returncode}):\n{done.stdout}{done.stderr}"
                f"\n{self.log_tail()}"
            )

    def _wait_for_greeting(self) -> None:
        deadline = time.monotonic() + _STARTUP_SECONDS
        while True:
            try:
                with socket.create_connection((HOST, self.port), timeout=2) as connection:
                    if connection.recv(512).startswith(b"220 "):
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"Postfix did not greet on port {self.port}:\n{self.log_tail()}")
            time.sleep(0.1)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def _check_searchable(directory: Path) -> None:
    """Postfix's daemons, as the ``postfix`` user, open paths under ``directory``."""
    for path in (directory, *directory.parents):
        if not path.stat().st_mode & stat.S_IXOTH:
            raise RuntimeError(f"{path} is not searchable by the {_USER} user")


def _session_members(session: int) -> list[int]:
    """The processes of the session that ``session`` leads (the instance's master)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # Fields after the command's ``(name)``: state, ppid, pgrp, session, ...
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[3]) == session:
            members.append(int(entry.name))
    return members


def _read_delivered(path: Path) -> DeliveredMessage:
    raw = path.read_bytes()
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return DeliveredMessage(recipient=str(message["Delivered-To"]), raw=raw, message=message)


def _session(match: re.Match[str]) -> PostfixSession:
    commands = {
        count["name"]: (int(count["ok"]), int(count["all"] or count["ok"]))
        for count in _COUNT.finditer(match["counts"])
    }
    return PostfixSession(client=match["client"], commands=commands)


PostfixServerFactory = Callable[..., PostfixServer]
"""Takes ``PostfixServer``'s keyword arguments and returns a started server."""


@pytest.fixture
def postfix_server_factory() -> Iterator[PostfixServerFactory]:
    """Start private Postfix instances; skips without Postfix or root; all stop at the end."""
    if not Path(POSTFIX).exists():
        pytest.skip(f"Postfix is not installed ({POSTFIX}); Debian's package: postfix")
    if os.geteuid() != 0:
        pytest.skip("a Postfix instance is started as root (its master drops privileges)")
    servers: list[PostfixServer] = []

    def start(**options: Any) -> PostfixServer:
        # Not pytest's temporary directory: that one is closed to the postfix user.
        directory = Path(tempfile.mkdtemp(prefix="mailworker-postfix-"))
        directory.chmod(0o755)
        server = PostfixServer(directory, **options)
        servers.append(server)
        return server.start()

    yield start
    for server in reversed(servers):
        server.stop()
        shutil.rmtree(server.directory, ignore_errors=True)
