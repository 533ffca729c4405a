"""Outgoing webhooks: Mercato's committed events, signed and POSTed to integrators.

The full guide for integrators and operators is ``docs/webhooks.md``; in short:

**Subscriptions** (``/v1/webhooks/subscriptions``; ``webhooks:write`` to change,
``events:read`` to read) name an ``http(s)`` URL without credentials on a public address
(``targets.py``: checked when saved and at every delivery), the event types
wanted (``order.placed``, the prefix ``order.*`` or ``*``), an active flag and a
description. The secret (``whsec_...``) is generated, shown once, and stored sealed
(Fernet under a key derived from ``MERCATO_SECRET_KEY``; see ``signing.py``).

**Envelope.** Every event, from any domain, is sent as the JSON body
``{"id", "type", "time", "version", "data"}`` with the headers ``Mercato-Event-Id``,
``Mercato-Event-Type``, ``Mercato-Timestamp`` and
``Mercato-Signature: t=<unix ts>,v1=<hex HMAC-SHA256 of "<ts>.<raw body>">`` keyed with
the subscription secret (two ``v1`` values while a rotated secret is in its grace period),
plus ``Mercato-Delivery-Id`` and ``Mercato-Attempt`` for support.

**Verifying** (receiver side; ``signing.verify`` does the same)::

    import hashlib, hmac, time

    def verify(secret: str, body: bytes, header: str, tolerance: int = 300) -> bool:
        fields = [item.split("=", 1) for item in header.split(",") if "=" in item]
        ts = next((v for k, v in fields if k == "t"), "")
        if not ts.isdigit() or abs(time.time() - int(ts)) > tolerance:
            return False  # missing, or older than 5 minutes: a replay
        mac = hmac.new(secret.encode(), ts.encode() + b"." + body, hashlib.sha256)
        return any(hmac.compare_digest(mac.hexdigest(), v) for k, v in fields if k == "v1")

The HMAC is computed over the raw body bytes as received, before parsing the JSON.

**Delivery.** The outbox dispatcher hands each committed event to ``events.register``'s
fan-out, which writes one delivery per matching active subscription in the transaction
that marks the event dispatched (so a crash loses nothing and a rolled-back change sends
nothing). The worker (``worker.py``) claims due deliveries with a conditional UPDATE lease,
POSTs them with no transaction open, and records the answer: ``2xx`` is delivered; any
other status, a timeout (5 s) or a connection error is retried with exponential back-off
and jitter (10 s, 20 s, 40 s ... capped at an hour); after 8 attempts the delivery is a
dead letter until re-sent through the API. Delivery is at least once and unordered:
receivers deduplicate on ``id`` and must not rely on arrival order.

**Event types** today: ``order.<status>`` and other ``order.*``, ``payment.*``,
``gift_card.issued``, ``store_credit.changed``, ``stock.changed``, ``stock.low``,
``transfer.*``, ``product.*``, ``category.*``, ``prices.changed``, ``promotion.*``,
``marketing.offer_issued``, ``fulfillment.*``, ``shipment.*``, ``return.<status>``,
``cart.created``, ``cart.merged``, ``customer.*``, ``consent.changed``,
``loyalty.tier_changed``, ``support.*``, ``location.*``, ``channel.*`` and
``webhook.test``; ``docs/webhooks.md`` lists each one.
"""
