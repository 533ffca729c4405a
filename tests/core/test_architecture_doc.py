"""docs/architecture.md draws the layers with the domains the code has."""

from __future__ import annotations

import re
from pathlib import Path

from tests.core import boundaries

ROOT = Path(__file__).resolve().parents[2]


def _diagram_domains() -> list[str]:
    doc = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    diagram = re.search(r"```mermaid\n(.*?)```", doc, re.S)
    assert diagram, "docs/architecture.md has no Mermaid diagram"
    block = re.search(r'subgraph domains\[.*?\]\n(.*?)\n\s*end\n', diagram.group(1), re.S)
    assert block, "the diagram has no domains subgraph"
    return sorted(name for name in re.split(r"[;\s]+", block.group(1)) if name)


def _table_domains() -> list[str]:
    doc = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    section = doc.split("## Domains", 1)[1].split("\n## ", 1)[0]
    return sorted(re.findall(r"^\| `(\w+)` \|", section, re.M))


def test_the_layer_diagram_names_every_domain_and_no_other() -> None:
    assert _diagram_domains() == boundaries.Tree(ROOT / "src").domains()


def test_the_domain_table_names_every_domain_and_no_other() -> None:
    assert _table_domains() == boundaries.Tree(ROOT / "src").domains()
