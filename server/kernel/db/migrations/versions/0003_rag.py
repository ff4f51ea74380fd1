"""Retrieval: namespaces, documents, chunks (pgvector + full-text), chunk ids on usage.

Vectors live in one untyped ``vector`` column so namespaces may use models of different
dimensions; each namespace gets its own partial HNSW index on
``(embedding::vector(dim))`` created by the store when the namespace is created (see
``server/rag/store.py``), which is what keeps namespace-filtered queries exact in recall
on pgvector versions without iterative index scans.

The full-text vector indexes the content twice: as Postgres parses it (so
``pyproject.toml`` or ``os.makedirs`` stay whole tokens) and with ``. _ : / -`` turned
into spaces (so ``makedirs`` or ``exist`` alone match ``os.makedirs`` / ``exist_ok``);
``server/rag/store.py`` builds queries the same two ways.

Revision ID: 0003
Revises: 0001
Create Date: 2026-11-22
"""

from alembic import op

revision = "0003"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS vector")
    op.execute("""
        CREATE TABLE rag_namespaces (
            name            text PRIMARY KEY,
            embedding_model text NOT NULL,
            dimension       integer NOT NULL CHECK (dimension > 0),
            index_name      text NOT NULL UNIQUE,
            created_at      timestamptz NOT NULL DEFAULT now()
        )
    """)
    op.execute("""
        CREATE TABLE rag_documents (
            namespace   text NOT NULL REFERENCES rag_namespaces (name) ON DELETE CASCADE,
            id          text NOT NULL,
            title       text NOT NULL DEFAULT '',
            source      text NOT NULL DEFAULT '',
            metadata    jsonb NOT NULL DEFAULT '{}',
            checksum    text NOT NULL,
            chunk_count integer NOT NULL,
            updated_at  timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (namespace, id)
        )
    """)
    op.execute("""
        CREATE TABLE rag_chunks (
            id              text PRIMARY KEY,
            namespace       text NOT NULL,
            document_id     text NOT NULL,
            position        integer NOT NULL,
            content         text NOT NULL,
            metadata        jsonb NOT NULL DEFAULT '{}',
            checksum        text NOT NULL,
            embedding_model text NOT NULL,
            embedding       vector NOT NULL,
            tsv             tsvector GENERATED ALWAYS AS (
                                to_tsvector('english', content) || to_tsvector('english',
                                    regexp_replace(content, '[._:/-]+', ' ', 'g'))) STORED,
            FOREIGN KEY (namespace, document_id)
                REFERENCES rag_documents (namespace, id) ON DELETE CASCADE
        )
    """)
    op.execute("CREATE INDEX rag_chunks_document ON rag_chunks (namespace, document_id, position)")
    op.execute("CREATE INDEX rag_chunks_tsv ON rag_chunks USING gin (tsv)")
    op.execute("CREATE INDEX rag_chunks_metadata ON rag_chunks USING gin (metadata jsonb_path_ops)")
    op.execute("ALTER TABLE usage_records ADD COLUMN chunk_ids text[] NOT NULL DEFAULT '{}'")


def downgrade() -> None:
    op.execute("ALTER TABLE usage_records DROP COLUMN chunk_ids")
    op.execute("DROP TABLE rag_chunks")
    op.execute("DROP TABLE rag_documents")
    op.execute("DROP TABLE rag_namespaces")
