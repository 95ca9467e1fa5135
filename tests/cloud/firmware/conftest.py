"""The firmware keys, images and signed manifests of ``tests/firmware_ota`` serve the cloud's
firmware tests too."""

from tests.firmware_ota.conftest import image, keypair, signed, trusted

__all__ = ["image", "keypair", "signed", "trusted"]
