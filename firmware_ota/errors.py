"""Firmware OTA's not-found: one form for a firmware or a campaign id that does not exist.

Every error firmware OTA raises is a kind of the error family (:mod:`broker.errors`); the
others are defined beside the code that raises them (signing, store, campaigns, transfer,
downloader).
"""

from __future__ import annotations

from broker.errors import NotFound


class OtaNotFound(NotFound):
    """A firmware or campaign id that does not exist; the message is ``not found: <id>``."""

    def __init__(self, key: str) -> None:
        super().__init__(f"not found: {key}")
        self.key = key


class FirmwareNotFound(OtaNotFound):
    """No firmware with that id (in the catalogue or the store)."""


class CampaignNotFound(OtaNotFound):
    """No campaign with that id, or none the caller may see."""


__all__ = ["CampaignNotFound", "FirmwareNotFound", "OtaNotFound"]
