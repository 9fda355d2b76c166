"""The values table of the chart's README.md, made from values.yaml and its comments.

    python deploy/helm/values_table.py            # rewrite the table in README.md
    python deploy/helm/values_table.py --check    # exit 1 when README.md's table is stale

Every leaf of values.yaml (a scalar, a list, or an empty mapping) is one row: its dotted
key, its default (as YAML's JSON form) and the comment lines right above it, which it must
have. tests/test_helm.py runs the check, so the README cannot drift from values.yaml.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

CHART = Path(__file__).resolve().parent / "analyzer-widgets"
START = "<!-- values-table:start (made by deploy/helm/values_table.py; do not edit) -->"
END = "<!-- values-table:end -->"


def leaf_descriptions(text: str) -> dict[str, str]:
    """Dotted key of each leaf -> the comment lines directly above it (joined)."""
    out: dict[str, str] = {}
    path: list[tuple[int, str]] = []
    comments: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            comments = []
            continue
        if line.startswith("#"):
            comments.append(line.lstrip("#").strip())
            continue
        indent = len(raw) - len(raw.lstrip())
        key, _, rest = line.partition(":")
        while path and path[-1][0] >= indent:
            path.pop()
        dotted = ".".join([k for _, k in path] + [key])
        if rest.strip():  # a leaf: `key: value`
            if not comments:
                raise ValueError(f"values.yaml: {dotted} has no comment above it to describe it")
            out[dotted] = " ".join(comments)
        else:  # a mapping: its comment describes the group, not its first leaf
            path.append((indent, key))
        comments = []
    return out


def leaves(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted key -> default, for every leaf of the loaded values."""
    out: dict[str, Any] = {}
    for k, v in values.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(leaves(v, key + "."))
        else:
            out[key] = v
    return out


def table(chart: Path = CHART) -> str:
    text = (chart / "values.yaml").read_text()
    described = leaf_descriptions(text)
    defaults = leaves(yaml.safe_load(text))
    if set(described) != set(defaults):
        raise ValueError(f"values.yaml: leaves not parsed alike: {sorted(set(described) ^ set(defaults))}")
    rows = ["| Value | Default | What it sets |", "|---|---|---|"]
    for key, default in defaults.items():
        desc = described[key].replace("|", "\\|")
        rows.append(f"| `{key}` | `{json.dumps(default)}` | {desc} |")
    return "\n".join(rows)


def readme_with_table(readme: str, chart: Path = CHART) -> str:
    head, sep, rest = readme.partition(START)
    _, sep2, tail = rest.partition(END)
    if not sep or not sep2:
        raise ValueError(f"README.md: no {START} ... {END} markers")
    return f"{head}{START}\n{table(chart)}\n{END}{tail}"


def main(argv: list[str]) -> int:
    readme = CHART / "README.md"
    old = readme.read_text()
    new = readme_with_table(old)
    if "--check" in argv:
        if new != old:
            print(f"{readme}: the values table is stale; run python {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    readme.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
