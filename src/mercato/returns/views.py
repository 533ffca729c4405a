"""How a return is shown: the same shape for staff, shoppers and stored settle answers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mercato.auth.permissions import Permission
from mercato.auth.principal import Principal
from mercato.returns.models import Return, ReturnLine, ReturnSettlement, ReturnTransition
from mercato.returns.schemas import ReturnLineOut, ReturnOut, SettlementOut, TransitionOut


def return_out(
    ret: Return,
    lines: Sequence[ReturnLine],
    transitions: Sequence[ReturnTransition] = (),
    attempts: Sequence[ReturnSettlement] = (),
) -> ReturnOut:
    out = ReturnOut.model_validate(ret)
    out.lines = [ReturnLineOut.model_validate(x) for x in lines]
    out.timeline = [TransitionOut.model_validate(t) for t in transitions]
    out.settlements = [SettlementOut.model_validate(a) for a in attempts]
    return out.in_currency()


def return_json(
    ret: Return,
    lines: Sequence[ReturnLine],
    transitions: Sequence[ReturnTransition] = (),
    attempts: Sequence[ReturnSettlement] = (),
) -> dict[str, Any]:
    """JSON-ready (amounts as strings, never floats)."""
    return return_out(ret, lines, transitions, attempts).model_dump(mode="json")


def shown_to(reader: Principal | None, out: ReturnOut) -> ReturnOut:
    """The return as ``reader`` may see it (None: the shopper's own return).

    Readers without customers:pii (analysts, integrations) get it without the notes the
    customer and staff wrote, nor the reasons staff typed at each step: free text that
    may quote the person."""
    if reader is None or reader.has(Permission.CUSTOMERS_PII):
        return out
    return out.model_copy(
        update={
            "note": None,
            "lines": [x.model_copy(update={"note": None}) for x in out.lines],
            "timeline": [
                t.model_copy(update={"reason": None}) if t.actor_type == "staff" else t
                for t in out.timeline
            ],
        }
    )
