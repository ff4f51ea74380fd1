"""Named routes stored in the database (override the config's; changed without a deploy).

Revision ID: 0004
Revises: 0001
Create Date: 2026-11-22
"""

from alembic import op

revision = "0004"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
        CREATE TABLE routes (
            name        text PRIMARY KEY,
            spec        jsonb NOT NULL,
            updated_at  timestamptz NOT NULL DEFAULT now(),
            updated_by  text NOT NULL DEFAULT ''
        )
    """)


def downgrade() -> None:
    op.execute("DROP TABLE routes")
