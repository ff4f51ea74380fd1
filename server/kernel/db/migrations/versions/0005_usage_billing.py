"""Usage records say what was charged: wallet, session, cost, ledger transaction, prompt.

Revision ID: 0005_usage_billing
Revises: 0002_ledger
Create Date: 2026-11-22

``IF NOT EXISTS`` because other branches (prompt templates) may add the prompt columns
too; whichever runs first creates them with the same types.
"""

from alembic import op

revision = "0005_usage_billing"
down_revision = "0002_ledger"
branch_labels = None
depends_on = None

COLUMNS = {
    "wallet_id": "text NOT NULL DEFAULT ''",
    "session_id": "text NOT NULL DEFAULT ''",
    "cost_micros": "bigint NOT NULL DEFAULT 0",
    "currency_code": "text NOT NULL DEFAULT ''",
    "transaction_id": "bigint",
    "prompt_key": "text NOT NULL DEFAULT ''",
    "prompt_version": "integer NOT NULL DEFAULT 0",
}


def upgrade() -> None:
    for name, spec in COLUMNS.items():
        op.execute(f"ALTER TABLE usage_records ADD COLUMN IF NOT EXISTS {name} {spec}")
    op.execute("CREATE INDEX IF NOT EXISTS usage_records_wallet "
               "ON usage_records (wallet_id, created_at)")


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS usage_records_wallet")
    for name in COLUMNS:
        op.execute(f"ALTER TABLE usage_records DROP COLUMN IF EXISTS {name}")
