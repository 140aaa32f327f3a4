"""The health decision, and the settings of the endpoint that serves it."""

from __future__ import annotations

import pytest

from worker.errors import ConfigurationError
from worker.health import Vitals, WorkerState, assess
from worker.settings import load_settings, split_address

STALE_AFTER = 60.0
ALL_OK = {"database": "ok", "loop": "ok", "claim": "ok", "running": "ok"}
IDLE = WorkerState(saturated=False, stopping=False)
EVERYWHERE = "0.0.0.0"  # noqa: S104 - only parsed here, never bound


def _vitals(
    *,
    now: float = 1000.0,
    last_turn: float | None = 995.0,
    last_claim: float | None = 995.0,
    state: WorkerState = IDLE,
    database_error: str | None = None,
) -> Vitals:
    return Vitals(
        now=now,
        started=100.0,
        last_turn=last_turn,
        last_claim=last_claim,
        state=state,
        database_error=database_error,
    )


def test_a_working_worker_is_healthy() -> None:
    """Database answering, loop turning, claims recent, no stop: every check is ok."""
    health = assess(_vitals(), stale_after=STALE_AFTER)
    assert (True, [], ALL_OK) == (health.healthy, health.failing, dict(health.checks))


def test_a_fresh_worker_is_healthy_before_its_first_claim() -> None:
    """Right after start nothing has happened yet; that is not a failure."""
    health = assess(_vitals(now=130.0, last_turn=None, last_claim=None), stale_after=STALE_AFTER)
    assert health.healthy


@pytest.mark.parametrize(
    ("vitals", "failing", "verdict"),
    [
        (_vitals(database_error="ConnectionRefusedError"), "database", "unreachable: "),
        (_vitals(last_turn=900.0), "loop", "the loop has not turned for 100 s"),
        (_vitals(last_claim=900.0), "claim", "no claim reached the database for 100 s"),
        (_vitals(last_turn=None, last_claim=990.0), "loop", "the loop has not turned for 900 s"),
        (_vitals(state=WorkerState(saturated=False, stopping=True)), "running", "stopping"),
    ],
)
def test_each_failing_check_says_what_is_wrong(vitals: Vitals, failing: str, verdict: str) -> None:
    """One thing wrong: that check alone fails, and its verdict says what and for how long."""
    health = assess(vitals, stale_after=STALE_AFTER)
    assert (False, [failing]) == (health.healthy, health.failing)
    assert health.checks[failing].startswith(verdict)


def test_a_saturated_worker_need_not_claim() -> None:
    """Every slot busy with long sends: no claim is due, so an old claim is no failure."""
    busy = WorkerState(saturated=True, stopping=False)
    health = assess(_vitals(last_claim=100.0, state=busy), stale_after=STALE_AFTER)
    assert health.healthy


def test_the_stale_limit_is_inclusive() -> None:
    """Exactly ``stale_after`` seconds since the last claim is still healthy; a bit more is not."""
    assert assess(_vitals(last_claim=940.0), stale_after=STALE_AFTER).healthy
    assert not assess(_vitals(last_claim=939.0), stale_after=STALE_AFTER).healthy


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        (f"{EVERYWHERE}:9090", (EVERYWHERE, 9090)),
        ("127.0.0.1:0", ("127.0.0.1", 0)),
        ("localhost:8080", ("localhost", 8080)),
        ("[::1]:9090", ("::1", 9090)),
    ],
)
def test_addresses_split_into_host_and_port(address: str, expected: tuple[str, int]) -> None:
    """host:port, with brackets around an IPv6 address."""
    assert expected == split_address(address)


@pytest.mark.parametrize(
    "address", ["9090", ":9090", EVERYWHERE, "h:http", "h:70000", "::1:9090", "h:-1", "h:²"]
)
def test_wrong_addresses_are_refused(address: str) -> None:
    """Anything but host:port with a port from 0 to 65535 is refused, showing the right form."""
    with pytest.raises(ValueError, match=r"must be host:port, e\.g\. 0\.0\.0\.0:9090"):
        split_address(address)


@pytest.mark.parametrize(
    ("environment", "expected"),
    [
        ({}, 60.0),
        ({"MAILWORKER_POLL_INTERVAL": "30"}, 90.0),
        ({"MAILWORKER_POLL_INTERVAL": "30", "MAILWORKER_HEALTH_STALE_AFTER": "61"}, 61.0),
    ],
)
def test_stale_limit_follows_the_poll_interval_unless_set(
    monkeypatch: pytest.MonkeyPatch, environment: dict[str, str], expected: float
) -> None:
    """By default a claim may be 60 s old, or three poll intervals if that is longer."""
    for variable in ("MAILWORKER_POLL_INTERVAL", "MAILWORKER_HEALTH_STALE_AFTER"):
        monkeypatch.delenv(variable, raising=False)
    for variable, value in environment.items():
        monkeypatch.setenv(variable, value)
    assert expected == load_settings().health_stale_limit


def test_the_endpoint_is_off_unless_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    """No MAILWORKER_HTTP_ADDRESS, or an empty one: no endpoint."""
    monkeypatch.delenv("MAILWORKER_HTTP_ADDRESS", raising=False)
    assert load_settings().http_address is None
    monkeypatch.setenv("MAILWORKER_HTTP_ADDRESS", "")
    assert load_settings().http_address is None
    monkeypatch.setenv("MAILWORKER_HTTP_ADDRESS", f" {EVERYWHERE}:9090 ")
    assert f"{EVERYWHERE}:9090" == load_settings().http_address


@pytest.mark.parametrize(
    ("environment", "expected"),
    [
        ({"MAILWORKER_HTTP_ADDRESS": "9090"}, "http_address (MAILWORKER_HTTP_ADDRESS)"),
        (
            {"MAILWORKER_POLL_INTERVAL": "30", "MAILWORKER_HEALTH_STALE_AFTER": "60"},
            "health_stale_after (MAILWORKER_HEALTH_STALE_AFTER): Value error, must be more than"
            " twice poll_interval (30 s)",
        ),
    ],
)
def test_wrong_endpoint_settings_fail_at_start(
    monkeypatch: pytest.MonkeyPatch, environment: dict[str, str], expected: str
) -> None:
    """A malformed address, or a stale limit an idle worker would break, is named at start."""
    for variable, value in environment.items():
        monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    assert expected in str(caught.value)
