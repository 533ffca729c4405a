"""What every cart route works with, as one FastAPI dependency: :class:`CartRequest`.

The routes differ only in which parts they declare (a cart token, the answer's language),
so there is one alias per combination, each declaring exactly the parameters its routes
document. Dependencies run in the same order for all of them: the transaction, the channel
(``X-Channel-Key``), the customer (bearer token). Routes that take an ``Idempotency-Key``
declare it themselves, after the cart request: the key is part of the route's own contract.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Annotated

from fastapi import Depends, Header, Path, Query
from sqlalchemy.orm import Session

from mercato.carts import service
from mercato.carts.models import Cart
from mercato.channels.context import ChannelContext
from mercato.channels.deps import ChannelCtx
from mercato.customers.deps import CustomerId
from mercato.deps import DbSession

Token = Annotated[str, Path(max_length=80, description="The cart token from POST /carts")]
LocaleQuery = Annotated[str | None, Query(max_length=20)]
AcceptLanguage = Annotated[str | None, Header(include_in_schema=False)]


@dataclass(frozen=True)
class CartRequest:
    """A shopper's call to a cart route.

    ``locale`` and ``accept_language`` are as sent (routes that answer with amounts take
    them); ``token`` is empty where the path names no cart.
    """

    session: Session
    channel: ChannelContext
    customer_id: int | None
    locale: str | None = None
    accept_language: str | None = None
    token: str = ""

    def cart(self) -> Cart:
        """The cart of the path's token, if this customer (or a guest) may use it."""
        return service.get_cart(self.session, self.token, self.customer_id)


def _shopper(session: DbSession, channel: ChannelCtx, customer_id: CustomerId) -> CartRequest:
    return CartRequest(session, channel, customer_id)


_Shopper = Annotated[CartRequest, Depends(_shopper)]


def shopper_request(
    shopper: _Shopper, locale: LocaleQuery = None, accept_language: AcceptLanguage = None
) -> CartRequest:
    """A call that names no cart, answered in the shopper's language."""
    return replace(shopper, locale=locale, accept_language=accept_language)


def hold_request(token: Token, shopper: _Shopper) -> CartRequest:
    """A call about the cart's hold: a token, no language (the answer has no amounts)."""
    return replace(shopper, token=token)


HoldRequest = Annotated[CartRequest, Depends(hold_request)]


def token_request(
    cart: HoldRequest, locale: LocaleQuery = None, accept_language: AcceptLanguage = None
) -> CartRequest:
    """A call about the cart of the path's token, answered in the shopper's language."""
    return replace(cart, locale=locale, accept_language=accept_language)


ShopperRequest = Annotated[CartRequest, Depends(shopper_request)]
TokenRequest = Annotated[CartRequest, Depends(token_request)]


# Path parameters after the token. Declared as dependencies so that, taken after a
# CartRequest, the document lists the path's parameters in path order (a route's own
# parameters come before those of its dependencies).


def _line_id(line_id: int) -> int:
    return line_id


def _code(code: Annotated[str, Path(max_length=64)]) -> str:
    return code


LineId = Annotated[int, Depends(_line_id)]
CodeInPath = Annotated[str, Depends(_code)]
