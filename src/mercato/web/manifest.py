"""The back office's routers: one per screen module."""

from mercato.manifest import Manifest
from mercato.web import (
    account,
    catalog,
    customers,
    fulfilment,
    fulfilment_actions,
    home,
    inventory,
    jobs,
    orders,
    promotions,
    settings,
    support,
)

MANIFEST = Manifest(
    "web",
    routers=[
        account.router,
        home.router,
        orders.router,
        fulfilment.router,
        fulfilment_actions.router,
        inventory.router,
        catalog.router,
        customers.router,
        support.router,
        promotions.router,
        settings.router,
        jobs.router,
    ],
)
