"""Storage behind one small interface: PostgreSQL (production) and SQLite (embedded default)."""
