"""catalog: denormalised category path on products

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23 21:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("products", schema=None) as batch_op:
        batch_op.add_column(sa.Column("category_path", JSON, nullable=False, server_default="[]"))
    connection = op.get_bind()
    parents = dict(connection.execute(sa.text("SELECT id, parent_id FROM categories")).all())
    products = sa.table("products", sa.column("category_id", sa.Integer),
                        sa.column("category_path", sa.JSON))
    for category_id in parents:
        path, node = [], category_id
        while node is not None and node not in path:
            path.append(node)
            node = parents.get(node)
        connection.execute(products.update().where(products.c.category_id == category_id)
                           .values(category_path=path))
    with op.batch_alter_table("products", schema=None) as batch_op:
        batch_op.alter_column("category_path", server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("products", schema=None) as batch_op:
        batch_op.drop_column("category_path")
