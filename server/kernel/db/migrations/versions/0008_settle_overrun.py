"""Ledger: a settle may post beyond its hold, up to what the wallet can pay; usage records
say what could not be collected.

Revision ID: 0008_settle_overrun
Revises: 0006_budgets
Create Date: 2026-12-05

Loads ``ledger_apply_v2.sql`` (see the change note at its top); the downgrade restores v1.
"""

from alembic import op

from server.billing import sql

revision = "0008_settle_overrun"
down_revision = "0006_budgets"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(sql.load("ledger_apply_v2.sql"))
    op.execute("ALTER TABLE usage_records "
               "ADD COLUMN uncollected_micros bigint NOT NULL DEFAULT 0")


def downgrade() -> None:
    op.execute("ALTER TABLE usage_records DROP COLUMN uncollected_micros")
    op.execute(sql.load("ledger_apply_v1.sql").replace(
        "CREATE FUNCTION ledger_apply(", "CREATE OR REPLACE FUNCTION ledger_apply(", 1))
