"""Import duty and tax of a cart whose parcel crosses a customs border.

Shown in the cart and at checkout so that the shopper is not surprised at the door. The
channel decides who pays them (``channels.import_duties``):

* ``ddp`` (delivered duty paid): the shopper pays the estimate with the order; it is part
  of the grand total and the order keeps it (``Order.import_charges``);
* ``dap`` (delivered at place): the carrier collects them on delivery; the cart shows the
  estimate as due on delivery, outside the grand total.

The estimate is the shipping domain's customs estimate (``shipping.estimate_duties``) on
the goods' net value (without the sales tax charged at checkout: an export is not taxed
where it leaves) and the shipping charge, with each variant's HS code and country of
origin from the catalogue. When it cannot be made (no customs rules or exchange rate for
the destination), the cart says so and nothing is prepaid: the charges are due on
delivery whatever the channel's setting.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from mercato.catalog.service import VariantInfo
from mercato.channels.context import ChannelContext
from mercato.errors import Problem
from mercato.money import ZERO
from mercato.shipping import customs
from mercato.shipping import service as shipping

DDP = "ddp"


@dataclass(frozen=True)
class ImportCharges:
    origin_country: str
    destination_country: str
    currency: str
    duty: Decimal
    import_tax: Decimal
    total: Decimal
    # ddp and estimated: in the grand total, paid with the order; else due on delivery.
    prepaid: bool
    estimated: bool
    de_minimis_applied: bool = False
    note: str | None = None

    @property
    def paid_with_order(self) -> Decimal:
        return self.total if self.prepaid else ZERO

    def as_json(self) -> dict[str, Any]:
        return {
            "origin_country": self.origin_country,
            "destination_country": self.destination_country,
            "currency": self.currency,
            "duty": str(self.duty),
            "import_tax": str(self.import_tax),
            "total": str(self.total),
            "prepaid": self.prepaid,
            "estimated": self.estimated,
            "de_minimis_applied": self.de_minimis_applied,
            "note": self.note,
        }


@dataclass(frozen=True)
class GoodsLine:
    variant_id: int
    net_value: Decimal  # what the shopper pays for the line, without sales tax


def estimate(
    session: Session,
    channel: ChannelContext,
    origin: str | None,
    destination: str,
    lines: Sequence[GoodsLine],
    infos: Mapping[int, VariantInfo],
    shipping_amount: Decimal,
    currency: str,
) -> ImportCharges | None:
    """The charges of a parcel from ``origin`` to ``destination``; None when it stays
    inside one customs territory (or nothing ships)."""
    if origin is None or not lines or not customs.crosses_customs_border(origin, destination):
        return None
    items = [
        (
            info.hs_code if info else None,
            (info.country_of_origin if info else None) or origin,
            line.net_value,
            currency,
        )
        for line, info in ((x, infos.get(x.variant_id)) for x in lines)
    ]
    try:
        found = shipping.estimate_duties(session, destination, origin, items, shipping_amount)
    except Problem as exc:
        return ImportCharges(
            origin, destination, currency, ZERO, ZERO, ZERO, False, False,
            note=f"not estimated ({exc.detail}): due on delivery",
        )  # fmt: skip
    return ImportCharges(
        origin_country=origin,
        destination_country=destination,
        currency=found.currency,
        duty=found.duty,
        import_tax=found.import_tax,
        total=found.total,
        prepaid=channel.import_duties == DDP,
        estimated=True,
        de_minimis_applied=found.de_minimis_applied,
        note=None if channel.import_duties == DDP else "due on delivery, to the carrier",
    )
