"""Firmware updates of the meters behind a concentrator: the ``update_firmware`` command."""

from edge.ota.agent import FirmwareAgent, OtaError

__all__ = ["FirmwareAgent", "OtaError"]
