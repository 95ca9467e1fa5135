"""Routers of the cloud API, one module per area."""
