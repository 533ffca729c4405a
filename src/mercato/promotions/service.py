"""Promotions use cases: definitions, codes, cart evaluation and atomic redemption.

The domain's public face: other domains, the router and the tests call these names. The
discount arithmetic lives in :mod:`mercato.promotions.engine`; the use cases live in the
sibling modules:

* ``definitions``: API models -> engine objects -> stored JSON;
* ``references``: the ids a promotion names in other domains;
* ``admin``: promotions as staff read, create and change them;
* ``limits``: what each promotion used, and the counters that enforce its limits;
* ``codes``: single, bulk and one-time personal codes;
* ``evaluation``: which promotions and codes a cart may use, and what they give;
* ``redemptions``: checkout counting its promotions and codes against their limits.

Limits are enforced where concurrency cannot break them: every counter changes through one
conditional UPDATE (``... WHERE uses < max_uses``, ``... WHERE spent + :amount <= limit``)
or one conditional upsert, in the checkout's own transaction. Reading a counter in Python
and writing it back is never done.

Counters and limit changes. ``promotion_codes.uses`` is always kept. The promotion's
``uses``, its budgets' ``spent_minor`` and the per-customer usage rows are kept only while
their limit is set (so an unlimited automatic promotion is not one hot row every checkout
writes). When staff change a limit the promotion row is locked ``FOR UPDATE`` and the
counters are recounted from the redemption rows; reservations and releases take a
``FOR KEY SHARE`` lock on the same rows first, which never blocks another checkout but
makes a recount wait for them (and them for it), so no redemption is missed.
"""

from __future__ import annotations

from mercato.promotions.admin import (
    create_promotion,
    get_promotion,
    list_promotions,
    update_promotion,
)
from mercato.promotions.codes import (
    CODE_ALPHABET,
    PERSONAL_CODE_LENGTH,
    GeneratedCodes,
    code_by_value,
    create_code,
    disable_code,
    generate_codes,
    get_code,
    issue_personal_code,
    issue_personal_offer,
    list_codes,
    normalise_code,
)
from mercato.promotions.definitions import (
    MAX_AMOUNT,
    action_from_json,
    action_json,
    build_action,
    build_conditions,
    conditions_from_json,
    conditions_json,
    engine_promotion,
)
from mercato.promotions.evaluation import (
    CartEvaluationContext,
    CartLineInput,
    cart_lines,
    check_cart,
    evaluate,
)
from mercato.promotions.limits import (
    ACTIVE_REDEMPTION,
    ACTIVE_STATUSES,
    Usage,
    budgets_of,
    usage_of,
)
from mercato.promotions.redemptions import (
    MAX_REFERENCE_LENGTH,
    PromotionUnavailable,
    confirm_redemptions,
    list_redemptions,
    release_redemptions,
    reserve_redemptions,
)

__all__ = [
    "ACTIVE_REDEMPTION",
    "ACTIVE_STATUSES",
    "CODE_ALPHABET",
    "MAX_AMOUNT",
    "MAX_REFERENCE_LENGTH",
    "PERSONAL_CODE_LENGTH",
    "CartEvaluationContext",
    "CartLineInput",
    "GeneratedCodes",
    "PromotionUnavailable",
    "Usage",
    "action_from_json",
    "action_json",
    "budgets_of",
    "build_action",
    "build_conditions",
    "cart_lines",
    "check_cart",
    "code_by_value",
    "conditions_from_json",
    "conditions_json",
    "confirm_redemptions",
    "create_code",
    "create_promotion",
    "disable_code",
    "engine_promotion",
    "evaluate",
    "generate_codes",
    "get_code",
    "get_promotion",
    "issue_personal_code",
    "issue_personal_offer",
    "list_codes",
    "list_promotions",
    "list_redemptions",
    "normalise_code",
    "release_redemptions",
    "reserve_redemptions",
    "update_promotion",
    "usage_of",
]
