"""How a return is shown: the same shape for staff, shoppers and stored settle answers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

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
