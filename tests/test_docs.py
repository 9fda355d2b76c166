"""The docs name what the code has: columns, flags."""

from __future__ import annotations

import re
from pathlib import Path

from analyzer_widgets.cli import build_parser, flag_table
from analyzer_widgets.schema import MODEL_COLUMNS, SERVER_COLUMNS, metrics_doc_table, samples_doc_table

ROOT = Path(__file__).resolve().parent.parent


def test_metrics_doc_holds_the_tables_the_schema_gives() -> None:
    # regenerate with schema.metrics_doc_table(MODEL_COLUMNS / SERVER_COLUMNS) and samples_doc_table()
    text = (ROOT / "docs" / "metrics.md").read_text()
    model = text.index("## metrics-model.csv")
    server = text.index("## metrics-server-only.csv")
    assert metrics_doc_table(MODEL_COLUMNS) in text[model:server]
    assert metrics_doc_table(SERVER_COLUMNS) in text[server:]
    assert samples_doc_table() in text


def test_readme_flag_table_is_the_one_the_declarations_give() -> None:
    # regenerate with: python -c "from analyzer_widgets.cli import flag_table; print(flag_table())"
    readme = (ROOT / "README.md").read_text()
    start = readme.index("| flag | meaning | default |")
    end = readme.index("<!-- /flag-table -->")
    assert readme[start:end] == flag_table()


def test_every_profile_flag_is_in_the_readme_table() -> None:
    table = flag_table()
    profile = build_parser()._subparsers._group_actions[0].choices["profile"]  # type: ignore[union-attr]
    for action in profile._actions:
        if action.dest in ("help", "quiet"):
            continue
        assert any(f"`{o}" in table or f" {o}" in table for o in action.option_strings), action.option_strings


def test_every_test_the_reliability_table_names_exists() -> None:
    table = (ROOT / "docs" / "reliability.md").read_text()
    named = set(re.findall(r"`(test_\w+)`", table))
    defined = {m for path in (ROOT / "tests").glob("test_*.py") for m in re.findall(r"^def (test_\w+)", path.read_text(), re.M)}
    assert len(named) >= 20, named  # the table names its tests this way
    assert named <= defined, f"docs/reliability.md names tests that do not exist: {sorted(named - defined)}"
