"""The cloud's database schema: Alembic migrations of every table, and running them.

One database holds the registry, commands, functional requests, schedules, monitoring, clock
drift, firmware campaigns and the webhook outbox, so the migrations sit above every package
that owns a table (``env.py`` imports their models for the metadata). Run them with
:func:`migrate` (``gridwire registry migrate``, or the API at start).
"""

from cloud.migrations.migrate import alembic_config, current_revision, head_revision, migrate

__all__ = ["alembic_config", "current_revision", "head_revision", "migrate"]
