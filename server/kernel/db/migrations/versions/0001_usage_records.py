"""pgvector extension and usage records.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS vector")
    op.execute("""
        CREATE TABLE usage_records (
            id              bigserial PRIMARY KEY,
            created_at      timestamptz NOT NULL DEFAULT now(),
            trace_id        text NOT NULL,
            method          text NOT NULL,
            service         text NOT NULL,
            end_user_id     text NOT NULL DEFAULT '',
            requested_model text NOT NULL DEFAULT '',
            provider        text NOT NULL DEFAULT '',
            model           text NOT NULL DEFAULT '',
            region          text NOT NULL DEFAULT '',
            status          text NOT NULL,
            input_tokens    bigint NOT NULL DEFAULT 0,
            output_tokens   bigint NOT NULL DEFAULT 0,
            cached_input_tokens bigint NOT NULL DEFAULT 0,
            cache_write_tokens  bigint NOT NULL DEFAULT 0,
            latency_ms      double precision NOT NULL,
            attempts        jsonb NOT NULL DEFAULT '[]',
            metadata        jsonb NOT NULL DEFAULT '{}'
        )
    """)
    op.execute("CREATE INDEX usage_records_created_at ON usage_records (created_at)")
    op.execute("CREATE INDEX usage_records_service_user ON usage_records (service, end_user_id, created_at)")


def downgrade() -> None:
    op.execute("DROP TABLE usage_records")
