"""Firmware in the cloud: the catalogue of verified images, rollout campaigns in the registry and
their runner, and the process that serves chunks.

The shared parts (signing, the filesystem image repository, wave planning, the campaign state
machine, the chunk server and the downloader) are in ``firmware_ota/``; the signed manifest and
the chunk messages in ``broker/schemas/firmware.py``.
"""
