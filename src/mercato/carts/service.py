"""One cart across channels: lines, codes, delivery and totals.

The domain's public face: other domains, the router and the tests call these names. The
use cases live in the sibling modules:

* ``access``: finding a cart, and the rules every change follows;
* ``holds``: the shopper's hold of the cart's stock;
* ``editing``: opening a cart, its lines, addresses, currency and codes;
* ``ownership``: a customer's open cart, and a guest's cart joining it after login;
* ``checkout_state``: claiming a cart for checkout and finishing it;
* ``computation``: every figure of the cart (with ``totals`` and ``import_charges``);
* ``tax_setting``: the tax provider carts are taxed with.

A cart keeps its currency, its price list and its tax country whichever channel opens it,
so its prices and totals are the same in the web store, the app or the call centre; only
the language of names and the formatting of amounts follow the channel and locale. A
channel that cannot sell a line (assortment, currency, shipping country, stock) marks the
line with its reasons instead of dropping it.

A shopper may hold the cart's stock for a while (``hold_stock``): one reservation per
variant and location, referencing the cart, expiring by itself. Changing the lines lets
the hold go (the shopper holds again); checkout turns it into the order's own holds in the
same transaction, so the units the shopper held cannot be taken by anyone in between.

Totals are computed in this order, every amount in the currency's minor unit:
line subtotals -> shipping quote (on the pre-discount subtotal) -> promotions (item,
order and shipping discounts, allocated to lines) -> taxes on the discounted lines and
shipping -> grand total. With tax-inclusive prices the grand total is lines + shipping;
with tax-exclusive prices (or where tax is added at checkout) taxes are added on top.
"""

from __future__ import annotations

from mercato.carts.access import CartClosed, get_cart, lines_of, shopper
from mercato.carts.checkout_state import (
    claim_by_token,
    claim_for_checkout,
    finish_checkout,
    pending_order_of,
    token_of,
)
from mercato.carts.computation import (
    SHIPPING_LINE,
    TAX_PENDING_ISSUE,
    CartComputation,
    CodeStatus,
    LineComputation,
    ShippingChoice,
    compute,
    view_problem,
)
from mercato.carts.editing import (
    CART_TOKEN_PREFIX,
    HARD_CODE_REASONS,
    MAX_LINES,
    add_line,
    apply_code,
    create_cart,
    remove_code,
    update_cart,
    update_line,
)
from mercato.carts.holds import (
    HOLD_REFERENCE,
    MAX_HELD_UNITS_PER_LINE,
    held_units,
    held_until,
    hold_stock,
    is_held,
    let_hold_go,
    release_stock,
)
from mercato.carts.ownership import attach_customer, open_cart_of, owner_of
from mercato.carts.tax_setting import (
    configure_tax_provider,
    load_tax_provider,
    set_tax_provider,
    tax_provider,
)

__all__ = [
    "CART_TOKEN_PREFIX",
    "HARD_CODE_REASONS",
    "HOLD_REFERENCE",
    "MAX_HELD_UNITS_PER_LINE",
    "MAX_LINES",
    "SHIPPING_LINE",
    "TAX_PENDING_ISSUE",
    "CartClosed",
    "CartComputation",
    "CodeStatus",
    "LineComputation",
    "ShippingChoice",
    "add_line",
    "apply_code",
    "attach_customer",
    "claim_by_token",
    "claim_for_checkout",
    "compute",
    "configure_tax_provider",
    "create_cart",
    "finish_checkout",
    "get_cart",
    "held_units",
    "held_until",
    "hold_stock",
    "is_held",
    "let_hold_go",
    "lines_of",
    "load_tax_provider",
    "open_cart_of",
    "owner_of",
    "pending_order_of",
    "release_stock",
    "remove_code",
    "set_tax_provider",
    "shopper",
    "tax_provider",
    "token_of",
    "update_cart",
    "update_line",
    "view_problem",
]
