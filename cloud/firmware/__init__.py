"""Firmware in the cloud: the image store and catalogue, rollout campaigns and their runner, and
the chunk server that hands images to concentrators.

The signed manifest and the chunk messages are in ``broker/schemas/firmware.py`` and signature
checks in ``broker/firmware_signing.py`` (the concentrator needs both); the concentrator's
downloader is ``edge/ota/downloader.py``.
"""
