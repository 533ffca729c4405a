"""Find and replace a person's identifiers in free-form copies anywhere in the database.

Domains erase the personal fields they know by customer id; copies of the same values
also travel into free-form places nobody keys by customer: event payloads in the outbox,
webhook bodies, audit entries, notes typed by staff. The sweep searches every text and
JSON column of every table for the person's emails, phone numbers and full names and
replaces each occurrence with the erasure reference, so a new domain that keeps a copy is
covered without registering anything.

Encrypted columns cannot be searched in SQL; those are the domains' own erasers' work,
except for tables listed in ``DECRYPTING_SWEEP`` (short-lived copies with no customer
key), which are read and decrypted in batches.

The sweep scans whole tables: an erasure is a rare, deliberate request, and a complete
answer matters more than its duration.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    String,
    Table,
    Text,
    and_,
    cast,
    func,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.orm import Session

from mercato.crypto import EncryptedJSON, EncryptedString
from mercato.personal_data import Identifiers

# The shortest column that can hold an email or an E.164 phone number.
MIN_LENGTH = 6
# Tables whose encrypted columns are decrypted and searched row by row: short-lived copies
# with no customer key, and free text staff type (notes, reasons, the audit log's record of
# what they changed), which may quote the person on anyone's order, return or stock move.
DECRYPTING_SWEEP = (
    "idempotency_keys",
    "order_notes",
    "order_transitions",
    "audit_log",
    "stock_movements",
    "returns",
    "return_lines",
    "return_transitions",
    "loyalty_entries",
    "payment_refunds",
    "store_credit_transactions",
    "gift_cards",
    "gift_card_transactions",
    "consent_records",
    "privacy_requests",
)
BATCH = 500


def needles(identifiers: Identifiers) -> list[str]:
    """Lower-case strings to look for, including the forms JSON encoding gives them."""
    found: set[str] = set()
    for value in (*identifiers.emails, *identifiers.names):
        found.add(value.lower())
    for phone in identifiers.phones:
        found.add(phone.lower())
        digits = "".join(ch for ch in phone if ch.isdigit())
        if len(digits) >= 8:
            found.add(digits)
    escaped = {json.dumps(n)[1:-1] for n in found}
    return sorted(found | escaped, key=len, reverse=True)


def pattern(identifiers: Identifiers) -> re.Pattern[str] | None:
    terms = needles(identifiers)
    if not terms:
        return None
    return re.compile("|".join(re.escape(t) for t in terms), re.IGNORECASE)


def replace(value: Any, finder: re.Pattern[str], reference: str) -> Any:
    """``value`` with every match replaced, walking JSON documents."""
    if isinstance(value, str):
        return finder.sub(reference, value)
    if isinstance(value, list):
        return [replace(v, finder, reference) for v in value]
    if isinstance(value, dict):
        return {k: replace(v, finder, reference) for k, v in value.items()}
    return value


def _encrypted(column: Column[Any]) -> bool:
    return isinstance(column.type, EncryptedString | EncryptedJSON)


def _searchable(column: Column[Any]) -> bool:
    if _encrypted(column) or column.primary_key:
        return False
    if isinstance(column.type, JSON):
        return True
    if isinstance(column.type, String):
        length = column.type.length
        return length is None or length >= MIN_LENGTH
    return False


def sweep_plaintext(
    session: Session, tables: Iterable[Table], identifiers: Identifiers, reference: str
) -> dict[str, int]:
    """Replace the identifiers in every searchable column; rows changed per table."""
    finder = pattern(identifiers)
    if finder is None:
        return {}
    terms = needles(identifiers)
    changed: dict[str, int] = {}
    for table in tables:
        columns = [c for c in table.columns if _searchable(c)]
        key = list(table.primary_key.columns)
        if not columns or not key:
            continue
        matches = or_(
            *(
                func.lower(cast(c, Text)).contains(t, autoescape=True)
                for c in columns
                for t in terms
            )
        )
        rows = session.execute(select(*key, *columns).where(matches)).mappings().all()
        for row in rows:
            values = {
                c.name: replace(row[c.name], finder, reference)
                for c in columns
                if row[c.name] is not None
            }
            values = {name: v for name, v in values.items() if v != row[name]}
            if values:
                session.execute(
                    update(table).where(and_(*(k == row[k.name] for k in key))).values(values)
                )
        if rows:
            changed[table.name] = len(rows)
    return changed


def sweep_encrypted(
    session: Session, table: Table, identifiers: Identifiers, reference: str
) -> int:
    """Decrypt ``table``'s encrypted columns batch by batch and rewrite rows that match.

    Only rows with something encrypted are read (most stock movements and transitions
    carry no text), in key order from where the last batch ended."""
    finder = pattern(identifiers)
    columns = [c for c in table.columns if _encrypted(c)]
    key = list(table.primary_key.columns)
    if finder is None or not columns or not key:
        return 0
    changed = 0
    last: tuple[Any, ...] | None = None
    while True:
        query = select(*key, *columns).where(or_(*(c.is_not(None) for c in columns)))
        if last is not None:
            query = query.where(_after(key, last))
        rows = session.execute(query.order_by(*key).limit(BATCH)).mappings().all()
        if not rows:
            return changed
        last = tuple(rows[-1][k.name] for k in key)
        for row in rows:
            values = {
                c.name: replace(row[c.name], finder, reference)
                for c in columns
                if row[c.name] is not None
            }
            values = {name: v for name, v in values.items() if v != row[name]}
            if values:
                session.execute(
                    update(table).where(and_(*(k == row[k.name] for k in key))).values(values)
                )
                changed += 1


def _after(key: list[Column[Any]], last: tuple[Any, ...]) -> Any:
    if len(key) == 1:
        return key[0] > last[0]
    return tuple_(*key) > tuple_(*last)
