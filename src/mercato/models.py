"""Loads every package's tables so that ``Base.metadata`` is complete (migrations, tests).

The infrastructure's own tables (the outbox, merge moves, idempotency records) come with
their modules; each domain's live in its ``models`` module, found the same way the
bootstrap finds manifests, so a new domain needs no entry here.
"""

import importlib

from mercato import bootstrap, events, idempotency, merges  # noqa: F401

for _package in bootstrap.packages():
    try:
        importlib.import_module(f"mercato.{_package}.models")
    except ModuleNotFoundError as exc:
        if exc.name != f"mercato.{_package}.models":
            raise
