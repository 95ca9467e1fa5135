"""The public lighting domain: switch and dim street lights, read their status."""
