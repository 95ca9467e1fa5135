"""Processing of stored readings: validation, estimation and consumption aggregates (docs/PROCESSING.md)."""
