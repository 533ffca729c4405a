"""Promotions, codes and redemptions."""

from mercato.manifest import Manifest, Subscription
from mercato.personal_data import DOMAINS
from mercato.promotions import customer_links
from mercato.promotions.api import api

MANIFEST = Manifest(
    "promotions",
    routers=[api],
    subscriptions=[
        Subscription("customer.merged", customer_links.on_merged),
        Subscription("customer.merge_undone", customer_links.on_merge_undone),
    ],
    contributions=[DOMAINS("promotions", customer_links.PRIVACY)],
)
