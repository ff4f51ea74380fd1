"""Prompt template versions, bots and bot LLM configurations.

Revision ID: 0007
Revises: 0005_usage_billing
Create Date: 2026-11-22

Also records which bot configuration produced each usage record. "One active" is
enforced by the database with partial unique indexes, so no code path (and no race
between processes) can leave two versions or two configs active.
"""

from alembic import op

revision = "0007"
down_revision = "0005_usage_billing"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
        CREATE TABLE prompt_templates (
            key               text NOT NULL,
            version           integer NOT NULL CHECK (version > 0),
            system            text NOT NULL DEFAULT '',
            structured        jsonb,
            user_template     text NOT NULL DEFAULT '',
            temperature       real,
            max_output_tokens integer,
            model             text NOT NULL DEFAULT '',
            description       text NOT NULL DEFAULT '',
            active            boolean NOT NULL DEFAULT false,
            created_at        timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (key, version)
        )
    """)
    op.execute("CREATE UNIQUE INDEX prompt_templates_one_active ON prompt_templates (key) "
               "WHERE active")
    op.execute("""
        CREATE TABLE bots (
            slug       text PRIMARY KEY,
            name       text NOT NULL,
            status     text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
            metadata   jsonb NOT NULL DEFAULT '{}',
            created_at timestamptz NOT NULL DEFAULT now()
        )
    """)
    op.execute("""
        CREATE TABLE bot_configs (
            id                bigserial PRIMARY KEY,
            bot               text NOT NULL REFERENCES bots (slug),
            provider          text NOT NULL,
            model             text NOT NULL,
            temperature       real,
            top_p             real,
            top_k             integer,
            max_output_tokens integer,
            prompt_key        text NOT NULL DEFAULT '',
            prompt_version    integer NOT NULL DEFAULT 0,
            metadata          jsonb NOT NULL DEFAULT '{}',
            active            boolean NOT NULL DEFAULT false,
            created_at        timestamptz NOT NULL DEFAULT now()
        )
    """)
    op.execute("CREATE UNIQUE INDEX bot_configs_one_active ON bot_configs (bot) WHERE active")
    op.execute("ALTER TABLE usage_records ADD COLUMN bot_config_id text NOT NULL DEFAULT ''")


def downgrade() -> None:
    op.execute("ALTER TABLE usage_records DROP COLUMN bot_config_id")
    op.execute("DROP TABLE bot_configs")
    op.execute("DROP TABLE bots")
    op.execute("DROP TABLE prompt_templates")
