"""Promotions, codes and redemptions."""

from mercato.manifest import Manifest, Subscription
from mercato.merges import CustomerMerged, CustomerMergeUndone
from mercato.personal_data import DOMAINS
from mercato.promotions import customer_links
from mercato.promotions.api import api

MANIFEST = Manifest(
    "promotions",
    routers=[api],
    subscriptions=[
        Subscription(CustomerMerged, customer_links.on_merged),
        Subscription(CustomerMergeUndone, customer_links.on_merge_undone),
    ],
    contributions=[DOMAINS("promotions", customer_links.PRIVACY)],
)
