"""Weighted full-text vectors: the chunk's tsvector is written by ingestion, not generated.

Revision ID: 0010_weighted_lexical
Revises: 0003 (the retrieval branch)
Create Date: 2026-12-06

Ingestion now labels the parts of a chunk's text (context A, identifier parts B,
cross-references C, body D; see server/rag/lexical.py) so BM25 can weigh them; a
generated column cannot, because the parts are found in Python. Dropping the expression
keeps every stored value (a row written without one, as bulk loads do, gets an empty
vector: found by vector search only): rows written before read as unlabelled body text (label D), so
old namespaces keep working and improve as their documents are re-ingested.
"""

from alembic import op

revision = "0010_weighted_lexical"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE rag_chunks ALTER COLUMN tsv DROP EXPRESSION")
    op.execute("ALTER TABLE rag_chunks ALTER COLUMN tsv SET DEFAULT ''::tsvector")
    op.execute("UPDATE rag_chunks SET tsv = ''::tsvector WHERE tsv IS NULL")
    op.execute("ALTER TABLE rag_chunks ALTER COLUMN tsv SET NOT NULL")


def downgrade() -> None:
    op.execute("DROP INDEX rag_chunks_tsv")
    op.execute("ALTER TABLE rag_chunks DROP COLUMN tsv")
    op.execute("""
        ALTER TABLE rag_chunks ADD COLUMN tsv tsvector GENERATED ALWAYS AS (
            to_tsvector('english', content) || to_tsvector('english',
                regexp_replace(content, '[._:/-]+', ' ', 'g'))) STORED
    """)
    op.execute("CREATE INDEX rag_chunks_tsv ON rag_chunks USING gin (tsv)")
