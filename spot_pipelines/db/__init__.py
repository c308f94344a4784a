"""The app database: SQLAlchemy models, engines and Alembic migrations."""
