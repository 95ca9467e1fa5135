"""Reading checks a deployment adds to the ingest consumer (``IngestConsumer(checks=...)``)."""

from __future__ import annotations

from collections.abc import Callable

from broker.schemas import MeterReading
from cloud.catalogue import Catalogue, default_catalogue


def catalogue_check(catalogue: Catalogue | None = None) -> Callable[[MeterReading], str | None]:
    """A check that dead-letters readings the OMDP catalogue does not allow (unknown property,
    unit not allowed, text for a number, property of another meter class); default: the
    catalogue shipped with Gridwire."""
    chosen = catalogue or default_catalogue()

    def check(reading: MeterReading) -> str | None:
        problem = chosen.check(reading)
        return f"not in the OMDP catalogue: {problem}" if problem else None

    # Lets the consumer's fast path apply the same rule without building models.
    check.value_check = chosen.allows  # type: ignore[attr-defined]
    return check
