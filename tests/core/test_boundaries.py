"""The layer rules (tests/core/boundaries.py) hold for Mercato and catch a planted breach."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.core import boundaries

SRC = Path(__file__).resolve().parents[2] / "src"


def test_mercato_keeps_its_layer_rules() -> None:
    assert boundaries.check(SRC) == []


def test_every_allowance_is_still_needed() -> None:
    tree = boundaries.Tree(SRC)
    used = {
        (tree.domain_of(i.module), tree.domain_of(tree.resolve(i.target)))
        for i in tree.imports()
        if tree.resolve(i.target).endswith(".models")
    }
    assert set(boundaries.MODEL_ALLOWANCES) <= used


@pytest.fixture
def copy_of_src(tmp_path: Path) -> Path:
    shutil.copytree(SRC / "mercato", tmp_path / "mercato", ignore=shutil.ignore_patterns("*.pyc"))
    return tmp_path


def _plant(root: Path, module: str, code: str) -> None:
    path = root / "mercato" / module
    path.write_text(path.read_text(encoding="utf-8") + "\n" + code + "\n", encoding="utf-8")


@pytest.mark.parametrize(
    ("module", "code", "expected"),
    [
        (
            "catalog/service.py",
            "from mercato.orders.models import Order",
            "domain catalog imports mercato.orders.models, orders's tables",
        ),
        (
            "orders/service.py",
            "from mercato.flows import checkout",
            "domain orders imports the flows layer",
        ),
        (
            "orders/service.py",
            "from mercato.carts import api as carts_api",
            "domain orders imports the adapter mercato.carts.api",
        ),
        (
            "catalog/service.py",
            "def _late() -> None:\n    from mercato.pricing import service  # noqa",
            "imports mercato.pricing.service inside a function",
        ),
        (
            "locations/service.py",
            "from mercato.orders import service as orders_service",
            "import cycle between domains",
        ),
        (
            "catalog/service.py",
            "from mercato.events import record_event  # noqa",
            "publishes an untyped event",
        ),
    ],
    ids=["foreign-models", "flows", "adapter", "function-import", "cycle", "untyped-event"],
)
def test_a_planted_breach_is_caught(
    copy_of_src: Path, module: str, code: str, expected: str
) -> None:
    before = set(boundaries.check(copy_of_src))
    _plant(copy_of_src, module, code)
    new = set(boundaries.check(copy_of_src)) - before
    assert any(expected in p for p in new), new
