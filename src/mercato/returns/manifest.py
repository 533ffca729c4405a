"""Return authorisations, policies, receiving, refunds and exchanges."""

from mercato.customers import timeline
from mercato.manifest import Manifest, Subscription
from mercato.merges import follow_merges
from mercato.personal_data import DOMAINS
from mercato.returns import customer_links, service
from mercato.returns.api import api, store_api
from mercato.returns.models import Return

MANIFEST = Manifest(
    "returns",
    routers=[api, store_api],
    subscriptions=[
        # The return window counts from when the order reached its customer.
        *(Subscription(type_, service.record_fulfilment) for type_ in service.FULFILMENT_EVENTS),
        *follow_merges("returns", [Return]),
    ],
    contributions=[
        timeline.SOURCES("returns", customer_links.timeline_entries),
        DOMAINS("returns", customer_links.PRIVACY),
    ],
)
