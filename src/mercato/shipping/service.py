"""Shipping use cases: carrier configuration, quotes, labels, tracking and duty estimates.

Other domains call:

* :func:`quote` / :func:`get_option` (the cart): shipping options for a destination,
  sorted by price, each with a stable ``option_id`` the cart stores and re-validates;
* :func:`create_label`, :func:`void_label`, :func:`track`, :func:`record_tracking_event`
  (fulfilment): labels from the carrier integrations and the parcel's history; every
  tracking event publishes ``shipment.tracking_updated`` through the outbox;
* :func:`estimate_duties` (cart, checkout): import duty and tax of a cross-border parcel.

This module is the domain's public face: callers import it and nothing behind it. The use
cases live beside it, one module per part of the domain:

* :mod:`~mercato.shipping.carrier_setup`: carriers and their services;
* :mod:`~mercato.shipping.zones` and :mod:`~mercato.shipping.rate_tables`: what a service
  costs where;
* :mod:`~mercato.shipping.routes`: which carriers serve a route (quotes, labels, fulfilment);
* :mod:`~mercato.shipping.quotes`: shipping options with delivery estimates;
* :mod:`~mercato.shipping.labels`, :mod:`~mercato.shipping.label_records` and
  :mod:`~mercato.shipping.tracking`: labels and the parcel's history;
* :mod:`~mercato.shipping.customs_config` and :mod:`~mercato.shipping.duties`: customs rules
  and the duty estimate (its arithmetic is :mod:`~mercato.shipping.customs`);
* ``_carrier_context`` loads what a carrier integration (:mod:`~mercato.shipping.carriers`)
  needs, ``_checks`` holds the input checks they share.
"""

from __future__ import annotations

from mercato.shipping._checks import MAX_RATE, PPM
from mercato.shipping.carrier_setup import (
    carrier_by_code,
    carrier_countries,
    create_carrier,
    create_service,
    get_carrier,
    get_service,
    list_carriers,
    list_services,
    update_carrier,
    update_service,
)
from mercato.shipping.customs_config import (
    CustomsView,
    DutyRateView,
    customs_views,
    delete_customs,
    get_customs,
    list_customs,
    list_exchange_rates,
    put_customs,
    put_exchange_rate,
)
from mercato.shipping.duties import estimate_duties
from mercato.shipping.label_records import (
    forget_label_contents,
    get_label,
    label_by_tracking_number,
    list_labels,
    tracking_events,
)
from mercato.shipping.labels import create_label, void_label
from mercato.shipping.quotes import (
    MAX_PARCELS,
    ShippingOption,
    add_business_days,
    get_option,
    quote,
)
from mercato.shipping.rate_tables import (
    RateTableView,
    create_rate_table,
    delete_rate_table,
    get_rate_table,
    list_rate_tables,
    rate_table_views,
    replace_rate_table,
)
from mercato.shipping.routes import serves_route, service_level
from mercato.shipping.tracking import (
    MAX_EVENT_CLOCK_SKEW,
    WebhookResult,
    receive_webhook,
    record_tracking_event,
    track,
)
from mercato.shipping.zones import (
    create_zone,
    delete_zone,
    get_zone,
    list_zones,
    update_zone,
    zone_members,
)

__all__ = [
    "MAX_EVENT_CLOCK_SKEW",
    "MAX_PARCELS",
    "MAX_RATE",
    "PPM",
    "CustomsView",
    "DutyRateView",
    "RateTableView",
    "ShippingOption",
    "WebhookResult",
    "add_business_days",
    "carrier_by_code",
    "carrier_countries",
    "create_carrier",
    "create_label",
    "create_rate_table",
    "create_service",
    "create_zone",
    "customs_views",
    "delete_customs",
    "delete_rate_table",
    "delete_zone",
    "estimate_duties",
    "forget_label_contents",
    "get_carrier",
    "get_customs",
    "get_label",
    "get_option",
    "get_rate_table",
    "get_service",
    "get_zone",
    "label_by_tracking_number",
    "list_carriers",
    "list_customs",
    "list_exchange_rates",
    "list_labels",
    "list_rate_tables",
    "list_services",
    "list_zones",
    "put_customs",
    "put_exchange_rate",
    "quote",
    "rate_table_views",
    "receive_webhook",
    "record_tracking_event",
    "replace_rate_table",
    "serves_route",
    "service_level",
    "track",
    "tracking_events",
    "update_carrier",
    "update_service",
    "update_zone",
    "void_label",
    "zone_members",
]
