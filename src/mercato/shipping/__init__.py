"""Shipping: carriers and their services, zones and rate tables, quotes with delivery
estimates, labels, tracking (API and signed carrier webhooks) and customs duty estimates.

Shipments themselves (which order lines travel in which parcel) belong to fulfilment;
this domain provides the carrier services it and the cart call.
"""
