"""The docs name what the code has: columns, flags."""

from __future__ import annotations

import re
from pathlib import Path

from analyzer_widgets.cli import build_parser
from analyzer_widgets.schema import MODEL_COLUMNS, SERVER_COLUMNS

ROOT = Path(__file__).resolve().parent.parent


def test_metrics_doc_lists_every_column_with_its_meaning() -> None:
    text = (ROOT / "docs" / "metrics.md").read_text()
    for column in (*MODEL_COLUMNS, *SERVER_COLUMNS):
        assert f"| `{column.name}` | {column.kind} | {column.doc} |" in text, column.name


def test_readme_documents_every_profile_flag() -> None:
    readme = (ROOT / "README.md").read_text()
    parser = build_parser()
    profile = next(a for a in parser._subparsers._group_actions[0].choices.items() if a[0] == "profile")[1]  # type: ignore[union-attr]
    for action in profile._actions:
        if action.dest in ("help", "quiet"):
            continue
        documented = [o for o in action.option_strings if f"`{o}" in readme or f" {o}" in readme]
        assert documented, f"README does not document {action.option_strings}"


def test_every_test_the_reliability_table_names_exists() -> None:
    table = (ROOT / "docs" / "reliability.md").read_text()
    named = set(re.findall(r"`(test_\w+)`", table))
    defined = {m for path in (ROOT / "tests").glob("test_*.py") for m in re.findall(r"^def (test_\w+)", path.read_text(), re.M)}
    assert len(named) >= 20, named  # the table names its tests this way
    assert named <= defined, f"docs/reliability.md names tests that do not exist: {sorted(named - defined)}"
