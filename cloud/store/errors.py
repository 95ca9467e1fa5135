"""The store's errors: one to retry on (Unavailable), one to set the data aside on (Invalid)."""

from __future__ import annotations

from broker.errors import GridwireError, Invalid, Unavailable


class StoreError(GridwireError):
    """Base of everything the time-series store raises."""


class StoreUnavailable(StoreError, Unavailable):
    """The store could not be reached or did not do the work (connection, timeout, 5xx,
    missing database, refused credentials). Nothing is wrong with the data: retry later."""

    def public_detail(self) -> str:
        # The message names the store's address; the web API's callers are told only this.
        return "the time-series store is unavailable; retry later"


class StoreRejected(StoreError, Invalid):
    """The store refused the request itself (4xx for the data or statement). Retrying the
    same request will fail again; ``reading_ids`` names the readings at fault when known."""

    def __init__(self, message: str, *, reading_ids: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.reading_ids = reading_ids

    def public_detail(self) -> str:
        return f"the store refused the request: {self}"
