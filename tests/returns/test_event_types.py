"""Every return status publishes its own ``return.<status>`` event."""

from __future__ import annotations

from mercato.returns.event_types import STATUS_EVENTS
from mercato.returns.state import ReturnStatus


def test_every_return_status_has_its_event() -> None:
    assert set(STATUS_EVENTS) == set(ReturnStatus)
    for status, cls in STATUS_EVENTS.items():
        assert f"return.{status.value}" == cls.TYPE
