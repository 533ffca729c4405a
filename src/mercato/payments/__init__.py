"""Payments: tenders of a checkout, provider calls, captures, voids, refunds, gift cards and
store credit.

Every amount is stored in the currency's minor unit (an integer: cents, yen), so the
conditional UPDATEs that guard balances and capture/refund limits compare exact integers
on SQLite and PostgreSQL alike; the service speaks ``Decimal`` to its callers.
"""
