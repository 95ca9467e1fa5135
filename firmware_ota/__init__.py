"""Firmware over the air, the parts both ends share: signing, the image repository, campaign
planning and its state machine, and the chunk transfer protocol (the cloud's chunk server and the
concentrator's downloader).

It sits above ``broker/`` (the signed manifest and the chunk messages cross the broker, so they
are in ``broker/schemas/firmware.py``) and below ``edge/`` and ``cloud/``, and imports neither:
the cloud's database-backed half (catalogue, campaign store, runner, API) is ``cloud/firmware/``,
the concentrator's agent that drives DLMS image transfer is ``edge/ota/``.
"""
