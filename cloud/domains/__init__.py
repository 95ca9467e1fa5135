"""Functional domains: per domain a pure translator and a web router, and the generic consumer."""
