"""Storage: the database URL (embedded or external), the async engine, migrations."""
