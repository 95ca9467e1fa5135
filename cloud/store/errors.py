"""The store's exceptions: one to retry on, one to set the data aside on."""

from __future__ import annotations


class StoreError(Exception):
    """Base of everything the time-series store raises."""


class StoreUnavailable(StoreError):
    """The store could not be reached or did not do the work (connection, timeout, 5xx,
    missing database, refused credentials). Nothing is wrong with the data: retry later."""


class StoreRejected(StoreError):
    """The store refused the request itself (4xx for the data or statement). Retrying the
    same request will fail again; ``reading_ids`` names the readings at fault when known."""

    def __init__(self, message: str, *, reading_ids: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.reading_ids = reading_ids
