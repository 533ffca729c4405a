"""Consent, the messages outbox and personal offers."""

from mercato.customers import timeline
from mercato.events import Dispatcher
from mercato.manifest import Manifest, Subscription
from mercato.marketing import customer_links, events
from mercato.marketing.api import api
from mercato.merges import CustomerMerged, CustomerMergeUndone, follow_merges
from mercato.personal_data import DOMAINS


def _attach(dispatcher: Dispatcher) -> None:
    events.register(dispatcher)  # the configured message senders


MANIFEST = Manifest(
    "marketing",
    routers=[api],
    subscriptions=[
        *follow_merges("marketing", customer_links.MERGED_MODELS),
        Subscription(CustomerMerged, customer_links.claims_merged),
        Subscription(CustomerMergeUndone, customer_links.claims_merge_undone),
    ],
    contributions=[
        timeline.SOURCES("emails", customer_links.email_entries),
        timeline.SOURCES("consents", customer_links.consent_entries),
        DOMAINS("marketing", customer_links.PRIVACY),
    ],
    attach=_attach,
)
