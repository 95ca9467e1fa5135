"""Alembic migrations of the registry schema (run them with :func:`cloud.registry.migrate.migrate`)."""
