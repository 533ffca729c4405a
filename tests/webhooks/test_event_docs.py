"""docs/webhooks.md lists exactly the event catalog, and every event type is sound."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from mercato import bootstrap
from mercato.event_types import DomainEvent
from mercato.webhooks import catalog_docs

DOC = Path(__file__).resolve().parents[2] / "docs" / "webhooks.md"


def test_the_webhook_documentation_lists_the_catalog() -> None:
    documented = catalog_docs.documented_table(DOC.read_text(encoding="utf-8"))
    assert documented == catalog_docs.event_table(), (
        "docs/webhooks.md differs from the event catalog: "
        "run `mercato webhooks event-docs --write docs/webhooks.md`"
    )


CATALOG = sorted(bootstrap.event_catalog().items())


@pytest.mark.parametrize(("name", "cls"), CATALOG, ids=[name for name, _ in CATALOG])
def test_every_event_type_is_frozen_described_and_named_for_its_entity(
    name: str, cls: type[DomainEvent]
) -> None:
    assert dataclasses.is_dataclass(cls)
    params = cls.__dataclass_params__  # type: ignore[attr-defined]
    assert params.frozen
    assert name == cls.TYPE and "." in name
    assert cls.VERSION >= 1
    assert cls.AGGREGATE
    assert (cls.__doc__ or "").strip(), f"{name} needs a docstring: it is its documentation"
    assert cls.__module__.endswith(".event_types") or cls.__module__ == "mercato.merges"
