"""``docs/configuration.md`` is generated from the settings and never drifts from them."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from worker.cli import main
from worker.cli.reference import REFERENCE_PATH, settings_reference
from worker.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[2]
REGENERATE = f"mailworker config reference --output {REFERENCE_PATH}"


def test_the_configuration_page_is_the_generated_one() -> None:
    """The committed page equals what the settings render now; if not, regenerate it."""
    committed = (REPO_ROOT / REFERENCE_PATH).read_text(encoding="utf-8")
    assert settings_reference() == committed, f"{REFERENCE_PATH} is out of date; run: {REGENERATE}"


def test_every_setting_has_a_row_with_its_variable_and_default() -> None:
    """Each field of Settings appears with its environment variable and its meaning."""
    rendered = settings_reference()
    for name, field in Settings.model_fields.items():
        env = "DATABASE_URL" if name == "database_url" else f"MAILWORKER_{name.upper()}"
        [row] = [line for line in rendered.splitlines() if line.startswith(f"| `{env}`")]
        assert f"| `{name}` |" in row
        assert " ".join((field.description or "").split()) in row.replace("\\|", "|")
    assert "| `MAILWORKER_CONCURRENCY` | `concurrency` | integer, ≥ 1, ≤ 1000 | `32` |" in rendered


def test_the_command_prints_and_writes_the_page(tmp_path: Path) -> None:
    """`config reference` prints the page, or writes it with --output; no database is needed."""
    printed = CliRunner().invoke(main, ["config", "reference"], env={"DATABASE_URL": ""})
    assert 0 == printed.exit_code, printed.output
    assert settings_reference() == printed.stdout

    target = tmp_path / "configuration.md"
    written = CliRunner().invoke(main, ["config", "reference", "--output", str(target)])
    assert 0 == written.exit_code, written.output
    assert settings_reference() == target.read_text(encoding="utf-8")
