"""The audit trail: one append-only row per recorded change (server/audit).

Revision ID: 0009_audit
Revises: 0008_settle_overrun
Create Date: 2026-12-08

Append-only is enforced by the database, not only by the code that writes: a trigger
refuses UPDATE and DELETE, so a bug (or a hand-typed statement) cannot rewrite history.
Listing is newest first by id, per tenant or across tenants, hence the two indexes.
"""

from alembic import op

revision = "0009_audit"
down_revision = "0008_settle_overrun"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
        CREATE TABLE audit_events (
            id         bigserial PRIMARY KEY,
            at         timestamptz NOT NULL DEFAULT clock_timestamp(),
            tenant     text NOT NULL,
            service    text NOT NULL,
            kind       text NOT NULL,
            method     text NOT NULL,
            object_id  text NOT NULL DEFAULT '',
            before     jsonb,
            after      jsonb,
            request    jsonb,
            trace_id   text NOT NULL DEFAULT ''
        )
    """)
    op.execute("CREATE INDEX audit_events_tenant ON audit_events (tenant, id DESC)")
    op.execute("CREATE INDEX audit_events_at ON audit_events (at)")
    op.execute("""
        CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'audit_events is append-only';
        END $$
    """)
    op.execute("""
        CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
        FOR EACH ROW EXECUTE FUNCTION audit_events_append_only()
    """)


def downgrade() -> None:
    op.execute("DROP TABLE audit_events")
    op.execute("DROP FUNCTION audit_events_append_only()")
