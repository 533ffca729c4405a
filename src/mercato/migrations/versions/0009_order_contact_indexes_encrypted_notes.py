"""orders: keyed hashes of the email and phone; notes and hold reasons encrypted; holds
on the notes timeline; the locations serving each order

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-23 23:50:00.000000
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Free text that was stored in clear before this revision: (table, columns). The column
# type stays TEXT; the values become Fernet tokens.
PLAINTEXT_BEFORE = (
    ("orders", ("note", "hold_reason")),
    ("order_notes", ("body",)),
)


def _rewrite(convert: Callable[[str], str]) -> None:
    connection = op.get_bind()
    for table, columns in PLAINTEXT_BEFORE:
        names = ", ".join(("id",) + columns)
        rows = connection.execute(sa.text(f"SELECT {names} FROM {table}")).mappings().all()
        for row in rows:
            values = {c: convert(row[c]) for c in columns if row[c] is not None}
            if not values:
                continue
            assignments = ", ".join(f"{c} = :{c}" for c in values)
            connection.execute(
                sa.text(f"UPDATE {table} SET {assignments} WHERE id = :key_id"),
                {**values, "key_id": row["id"]},
            )


def _encrypt_existing() -> None:
    from mercato.crypto import DecryptionError, keyring

    ring = keyring()

    def encrypt(value: str) -> str:
        try:
            ring.decrypt(value)
            return value  # already a token (a partially applied earlier run)
        except (DecryptionError, ValueError):
            return ring.encrypt(value)

    _rewrite(encrypt)


def _index_existing() -> None:
    """The keyed hashes of every order's email and phone (both encrypted since 0008)."""
    from mercato.orders.models import buyer_phone, contact_email
    from mercato.crypto import blind_index, keyring

    ring = keyring()
    connection = op.get_bind()
    rows = connection.execute(
        sa.text("SELECT id, email, shipping_address, billing_address FROM orders")
    ).mappings()
    for row in list(rows):
        email = None if row["email"] is None else contact_email(ring.decrypt(row["email"]))
        shipping, billing = (
            None if row[c] is None else json.loads(ring.decrypt(row[c]))
            for c in ("shipping_address", "billing_address")
        )
        phone = buyer_phone(shipping, billing)
        if email is None and phone is None:
            continue
        connection.execute(
            sa.text("UPDATE orders SET email_index = :e, phone_index = :p WHERE id = :id"),
            {
                "id": row["id"],
                "e": None if email is None else blind_index("email", email),
                "p": None if phone is None else blind_index("phone", phone),
            },
        )


def _decrypt_existing() -> None:
    from mercato.crypto import keyring

    ring = keyring()
    _rewrite(lambda value: ring.decrypt(value))


def _locations_existing() -> None:
    """Pickup stores of order lines and locations with fulfilment work for the order."""
    op.execute(
        "INSERT INTO order_locations (order_id, location_id) "
        "SELECT DISTINCT order_id, pickup_location_id FROM order_lines "
        "WHERE pickup_location_id IS NOT NULL "
        "UNION SELECT DISTINCT order_id, location_id FROM fulfillment_orders"
    )


def upgrade() -> None:
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.add_column(sa.Column('email_index', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('phone_index', sa.String(length=64), nullable=True))
        batch_op.create_index(batch_op.f('ix_orders_email_index'), ['email_index'], unique=False)
        batch_op.create_index(batch_op.f('ix_orders_phone_index'), ['phone_index'], unique=False)

    with op.batch_alter_table('order_notes', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('kind', sa.String(length=16), nullable=False, server_default='note')
        )

    op.create_table('order_locations',
    sa.Column('order_id', sa.BigInteger().with_variant(sa.INTEGER(), 'sqlite'), nullable=False),
    sa.Column('location_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['order_id'], ['orders.id'], name=op.f('fk_order_locations_order_id_orders'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('order_id', 'location_id', name=op.f('pk_order_locations'))
    )
    with op.batch_alter_table('order_locations', schema=None) as batch_op:
        batch_op.create_index('ix_order_locations_location', ['location_id', 'order_id'], unique=False)

    _encrypt_existing()
    _index_existing()
    _locations_existing()


def downgrade() -> None:
    _decrypt_existing()
    with op.batch_alter_table('order_locations', schema=None) as batch_op:
        batch_op.drop_index('ix_order_locations_location')
    op.drop_table('order_locations')
    with op.batch_alter_table('order_notes', schema=None) as batch_op:
        batch_op.drop_column('kind')
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_orders_phone_index'))
        batch_op.drop_index(batch_op.f('ix_orders_email_index'))
        batch_op.drop_column('phone_index')
        batch_op.drop_column('email_index')
