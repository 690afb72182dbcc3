"""The documentation cannot rot silently: every relative link in README.md and docs/ reaches an existing file and
heading, and the configuration reference names every Config field and, for each, functions that exist."""

from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path

from src.core.config import Config

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")
USED_IN = re.compile(r"\[`([\w/.]+\.py)`\]\(\.\./([\w/.]+\.py)\): ((?:`\w+`(?:, )?)+)")


def anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.DOTALL)  # no headings inside code blocks
    return {anchor(line.lstrip("#")) for line in text.splitlines() if line.startswith("#")}


def test_every_relative_link_reaches_a_file_and_heading():
    broken = []
    for page in PAGES:
        for target in LINK.findall(page.read_text()):
            if target.startswith(("http://", "https://", "mailto:")):
                continue
            path, _, fragment = target.partition("#")
            linked = (page.parent / path).resolve() if path else page
            if not linked.exists():
                broken.append(f"{page.relative_to(REPO)}: {target} (no such file)")
            elif fragment and linked.suffix == ".md" and fragment not in anchors(linked):
                broken.append(f"{page.relative_to(REPO)}: {target} (no such heading)")
    assert not broken, "\n".join(broken)


def test_the_anchor_rule_matches_githubs():
    assert anchor("Pack the data once (`python -m src.pack`)") == "pack-the-data-once-python--m-srcpack"
    assert anchor("Measured: the demo") == "measured-the-demo"


def defined_names(path: Path) -> set[str]:
    return {n.name for n in ast.parse(path.read_text()).body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}


def test_configuration_reference_covers_every_field_and_names_real_functions():
    rows = [line for line in (REPO / "docs" / "configuration.md").read_text().splitlines() if line.startswith("| `")]
    documented, wrong = set(), []
    for row in rows:
        cells = row.split(" | ")
        fields = re.findall(r"`(\w+)`", cells[0])
        documented |= set(fields)
        used_in = USED_IN.findall(cells[-1])
        if not used_in:
            wrong.append(f"{fields}: no 'used in' entry")
        for shown, path, names in used_in:
            assert shown == path, row
            for name in re.findall(r"`(\w+)`", names):
                if not (REPO / path).is_file() or name not in defined_names(REPO / path):
                    wrong.append(f"{fields}: {path} defines no {name}")
    assert documented == {f.name for f in dataclasses.fields(Config)}
    assert not wrong, "\n".join(wrong)
