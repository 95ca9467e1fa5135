"""The concentrator's updates of itself: A/B installs (``releases``), the supervisor that starts
and rolls back versions (``supervisor``), and the ``update_firmware`` handler for the
concentrator with the new version's health check (``agent``).

Nothing is imported here: the supervisor runs on the standard library alone (``releases`` and
``supervisor``), so importing it must not pull in the agent's dependencies."""
