"""Cases, messages across contact channels, SLAs and ratings."""

from mercato.customers import timeline
from mercato.manifest import Job, Manifest
from mercato.merges import follow_merges
from mercato.personal_data import DOMAINS
from mercato.support import customer_links, service
from mercato.support.api import api, store_api
from mercato.support.models import SupportCase

SLA_CHECK_SECONDS = 60.0

MANIFEST = Manifest(
    "support",
    routers=[api, store_api],
    subscriptions=follow_merges("support", [SupportCase]),
    jobs=[
        Job(
            "support-sla-breaches",
            SLA_CHECK_SECONDS,
            run=lambda session: service.mark_sla_breaches(session),
        )
    ],
    contributions=[
        timeline.SOURCES("support", customer_links.timeline_entries),
        DOMAINS("support", customer_links.PRIVACY),
    ],
)
