"""The browser kit's ``screenshots`` fixture copies a test's PNGs to ``$CONSOLE_SCREENSHOTS``
only when that names a folder, so the browser tests never depend on it."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

PICTURE = b"\x89PNG\r\n\x1a\n-a-picture-"

TAKES_A_PICTURE = f"""
def test_takes_a_picture(screenshots):
    screenshots.mkdir()
    (screenshots / "queue-en.png").write_bytes({PICTURE!r})
    (screenshots / "notes.txt").write_text("not a picture")
    assert (screenshots / "queue-en.png").exists()
"""


@pytest.fixture
def inner(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    monkeypatch.setenv("PYTHONPATH", str(REPO_ROOT))
    monkeypatch.delenv("CONSOLE_SCREENSHOTS", raising=False)
    pytester.makepyfile(test_sample=TAKES_A_PICTURE)
    pytester.chdir()
    return pytester


def _run(pytester: pytest.Pytester) -> pytest.RunResult:
    return pytester.runpytest_subprocess(
        "-p", "tests.kit.console_browser", "-p", "no:cacheprovider", "-s"
    )


def test_the_pictures_are_copied_to_the_named_folder(
    inner: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With CONSOLE_SCREENSHOTS set, the PNGs (not other files) land there, the folder made."""
    target = inner.path / "docs" / "console-screenshots"
    monkeypatch.setenv("CONSOLE_SCREENSHOTS", str(target))
    result = _run(inner)
    result.assert_outcomes(passed=1)
    assert ["queue-en.png"] == sorted(path.name for path in target.iterdir())
    assert PICTURE == (target / "queue-en.png").read_bytes()
    assert "screenshots:" in result.stdout.str()


def test_without_the_variable_nothing_is_copied(inner: pytest.Pytester) -> None:
    """Without CONSOLE_SCREENSHOTS the test passes and its pictures stay in its own folder."""
    result = _run(inner)
    result.assert_outcomes(passed=1)
    pictures = inner.path.rglob("*.png")
    assert ["test_takes_a_picture0/screenshots/queue-en.png"] == [
        str(path.relative_to(path.parents[2])) for path in pictures
    ]
