"""DLMS key change: the security setup object's global_key_transfer (class 64, method 2).

New keys travel wrapped with the meter's master key (the KEK; AES key wrap, RFC 3394, as the
Green Book asks), so neither the concentrator's request nor the platform's command carries a
key in clear. The meter takes them for its next association: the association that transferred
them still ends under the old keys.

The client side builds the ACTION request from keys already wrapped (gurux's own
``globalKeyTransfer`` would wrap them again); the meter side unwraps with ``cryptography``
(gurux's unwrap fails on Python 3 indices) and hands the new keys to the simulator.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from edge.dlms import gurux_fixes

gurux_fixes.apply()

from gurux_dlms.enums.DataType import DataType  # noqa: E402
from gurux_dlms.enums.ErrorCode import ErrorCode  # noqa: E402
from gurux_dlms.GXByteBuffer import GXByteBuffer  # noqa: E402
from gurux_dlms.internal._GXCommon import _GXCommon  # noqa: E402
from gurux_dlms.objects.GXDLMSSecuritySetup import GXDLMSSecuritySetup  # noqa: E402

logger = logging.getLogger(__name__)

SECURITY_SETUP_OBIS = "0.0.43.0.0.255"
# GlobalKeyType: the global unicast encryption key is the block cipher key.
KEY_TYPES = {"block_cipher_key": 0, "authentication_key": 2}
_NAMES = {number: name for name, number in KEY_TYPES.items()}


def wrap(master_key: bytes, key: bytes) -> bytes:
    """``key`` wrapped with the master key (24 bytes for an AES-128 key)."""
    # cryptography loads with a key change, not with the concentrator (docs/FIRMWARE.md, "Memory").
    from cryptography.hazmat.primitives.keywrap import aes_key_wrap

    return aes_key_wrap(master_key, key)


def unwrap(master_key: bytes, wrapped: bytes) -> bytes:
    """The key inside ``wrapped``; ValueError if another master key wrapped it."""
    from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap

    try:
        return aes_key_unwrap(master_key, wrapped)
    except InvalidUnwrap:
        raise ValueError("not wrapped with this master key") from None


def key_transfer_request(client: Any, wrapped: dict[str, bytes]) -> Any:
    """The frames of a global_key_transfer ACTION carrying ``wrapped`` keys by name."""
    data = GXByteBuffer()
    data.setUInt8(DataType.ARRAY)
    data.setUInt8(len(wrapped))
    for name, blob in wrapped.items():
        data.setUInt8(DataType.STRUCTURE)
        data.setUInt8(2)
        _GXCommon.setData(None, data, DataType.ENUM, KEY_TYPES[name])
        _GXCommon.setData(None, data, DataType.OCTET_STRING, bytearray(blob))
    return client.method(GXDLMSSecuritySetup(SECURITY_SETUP_OBIS), 2, data.array(), DataType.ARRAY)


class ModelSecuritySetup(GXDLMSSecuritySetup):
    """The simulated meter's security setup: global_key_transfer unwraps with its master key and
    hands the new keys (by name) to ``on_keys``, which applies them from the next association."""

    def __init__(self, *, master_key: bytes, system_title: bytes,
                 on_keys: Callable[[dict[str, bytes]], None]) -> None:
        super().__init__(SECURITY_SETUP_OBIS)
        self._master_key = master_key
        self._on_keys = on_keys
        self.serverSystemTitle = bytearray(system_title)

    def invoke(self, settings: Any, e: Any) -> Any:
        if e.index != 2:
            e.error = ErrorCode.READ_WRITE_DENIED
            return None
        keys: dict[str, bytes] = {}
        try:
            for key_type, blob in e.parameters:
                name = _NAMES.get(int(key_type))
                if name is None:
                    raise ValueError(f"key type {key_type} is not transferable")
                key = unwrap(self._master_key, bytes(blob))
                if len(key) != 16:
                    raise ValueError("a key of security suite 0 is 16 bytes")
                keys[name] = key
        except (ValueError, TypeError) as exc:
            logger.info("refused a key transfer: %s", exc)
            e.error = ErrorCode.READ_WRITE_DENIED
            return None
        self._on_keys(keys)
        return None

    def applyKeys(self, settings: Any, e: Any) -> None:  # noqa: N802 - gurux's name
        # gurux would switch this association to the new keys after its reply (and unwrap with its
        # broken decrypt); the meter takes them from its next association instead.
        return None
