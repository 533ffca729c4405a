"""Payments, refunds, gift cards and store credit."""

from mercato.manifest import Manifest, Subscription
from mercato.merges import CustomerMerged, CustomerMergeUndone
from mercato.payments import customer_links, store_api
from mercato.payments.api import api
from mercato.personal_data import DOMAINS

MANIFEST = Manifest(
    "payments",
    routers=[api, store_api.api],
    subscriptions=[
        Subscription(CustomerMerged, customer_links.on_merged),
        Subscription(CustomerMergeUndone, customer_links.on_merge_undone),
    ],
    contributions=[DOMAINS("payments", customer_links.PRIVACY)],
)
