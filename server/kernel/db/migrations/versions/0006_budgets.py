"""Budgets: daily and monthly token or spend limits per wallet or per end user.

Revision ID: 0006_budgets
Revises: 0005_usage_billing
Create Date: 2026-11-22
"""

from alembic import op

revision = "0006_budgets"
down_revision = "0005_usage_billing"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
        CREATE TABLE billing_budgets (
            wallet_id   text NOT NULL,
            end_user_id text NOT NULL DEFAULT '',
            period      text NOT NULL CHECK (period IN ('day', 'month')),
            metric      text NOT NULL CHECK (metric IN ('tokens', 'spend')),
            limit_value bigint NOT NULL CHECK (limit_value > 0),
            created_at  timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (wallet_id, end_user_id, period, metric)
        )
    """)
    op.execute("""
        CREATE TABLE billing_budget_usage (
            wallet_id    text NOT NULL,
            end_user_id  text NOT NULL DEFAULT '',
            period       text NOT NULL,
            period_start timestamptz NOT NULL,
            tokens       bigint NOT NULL DEFAULT 0,
            spend        bigint NOT NULL DEFAULT 0,
            PRIMARY KEY (wallet_id, end_user_id, period, period_start)
        )
    """)


def downgrade() -> None:
    op.execute("DROP TABLE billing_budget_usage")
    op.execute("DROP TABLE billing_budgets")
