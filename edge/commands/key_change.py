"""The ``change_keys`` command: a DLMS meter's new keys, set in two phases and confirmed.

The platform sends the new keys wrapped with the meter's master key (``keys``: name -> hex)
under a ``changeId``. Under the meter's lock the handler:

1. unwraps them (the master key is in the concentrator's config) and keeps them as *pending* in
   the sealed key store, before the meter hears of them;
2. if the meter already takes them (a change cut short and sent again), goes to 4;
3. hands them to the meter (global_key_transfer, in an association with the active keys);
4. associates with them: that is the confirmation. They become *active* in the store and in the
   adapter, and the answer names the change, which the platform then makes active too.

Killed anywhere in between, nothing is lost: the pending keys are on disk, the meter holds the
old or the new ones, and the next association (a poll, or this command sent again) tries the
active keys then the pending ones (:meth:`edge.dlms.DlmsMeterAdapter.session`). A meter that
takes neither is a DEVICE_ERROR that leaves the pending keys in place.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any

from edge.commands.errors import CommandFailed, ErrorCode, InvalidParameters
from edge.commands.executor import CommandHandler
from broker.lean.base import Lean, Secret
from edge.config_lean import SecurityMode
from edge.dlms.key_store import DlmsKeyStore
from edge.dlms.security_setup import KEY_TYPES, unwrap
from edge.polling import MeterPoller

if TYPE_CHECKING:
    from edge.config_lean import DlmsMeterConfig

log = logging.getLogger(__name__)

_CHANGE_ID = re.compile(r"^[0-9a-f]{16}$")
_WRAPPED = re.compile(r"^[0-9a-fA-F]{48}$")


def with_keys(config: DlmsMeterConfig, keys: dict[str, str]) -> DlmsMeterConfig:
    """``config`` with ``keys`` (name -> hex) in place of its own."""
    if isinstance(config, Lean):  # the concentrator's (edge.config_lean)
        return config.replace(**{name: Secret(value) for name, value in keys.items()})
    from pydantic import SecretStr  # a caller's pydantic DlmsMeterConfig

    return config.model_copy(update={name: SecretStr(value) for name, value in keys.items()})


def attach_key_store(adapter: Any, store: DlmsKeyStore) -> None:
    """Give an adapter the keys a change left active, and the pending ones to try when refused."""
    meter_id = adapter.meter_id
    _, active = store.active(meter_id)
    if active:
        adapter.config = with_keys(adapter.config, active)

    def pending() -> DlmsMeterConfig | None:
        _, keys = store.pending(meter_id)
        return with_keys(adapter.config, keys) if keys else None

    def confirmed() -> None:
        change = store.promote(meter_id)
        log.warning("meter %s: key change %s confirmed on contact", meter_id, change)

    adapter.pending_keys = pending
    adapter.on_pending_confirmed = confirmed


def _parse(params: dict[str, Any]) -> tuple[str, dict[str, bytes]]:
    change_id, keys = params.get("changeId"), params.get("keys")
    if not isinstance(change_id, str) or not _CHANGE_ID.fullmatch(change_id):
        raise InvalidParameters("change_keys needs 'changeId' (16 hex digits)")
    if not isinstance(keys, dict) or not keys or set(keys) - set(KEY_TYPES):
        raise InvalidParameters(f"change_keys needs 'keys', a map of {', '.join(KEY_TYPES)} to wrapped keys")
    if not all(isinstance(v, str) and _WRAPPED.fullmatch(v) for v in keys.values()):
        raise InvalidParameters("a wrapped key is 48 hex digits (an AES-128 key wrapped with the master key)")
    return change_id, {name: bytes.fromhex(value) for name, value in keys.items()}


def key_change_handler(*, adapter: Any, poller: MeterPoller, store: DlmsKeyStore | None,
                       meter_errors: Any) -> CommandHandler:
    meter_id = adapter.meter_id

    async def change_keys(params: dict[str, Any]) -> dict[str, Any]:
        change_id, wrapped = _parse(params)
        config: DlmsMeterConfig = adapter.config
        if config.security is not SecurityMode.HLS_GMAC:
            raise InvalidParameters(f"meter {meter_id} uses {config.security}: only HLS keys can be changed")
        if store is None:
            raise CommandFailed(ErrorCode.DEVICE_ERROR, "the concentrator has no sealing key (secrets_key_file or "
                                                        "GRIDWIRE_SECRETS_KEY): it cannot keep new keys")
        if config.master_key is None:
            raise CommandFailed(ErrorCode.DEVICE_ERROR, f"meter {meter_id} has no master_key in the concentrator's "
                                                        "config: new keys cannot be unwrapped")
        master = config.key_bytes("master_key")
        try:
            new = {name: unwrap(master, blob).hex() for name, blob in wrapped.items()}
        except ValueError:
            raise InvalidParameters(f"the new keys are not wrapped with meter {meter_id}'s master key") from None
        answer = {"changeId": change_id, "keys": sorted(new), "confirmed": True}
        async with meter_errors(), poller.exclusive(meter_id):
            if store.active(meter_id)[0] == change_id:
                return answer  # confirmed before (a redelivered command): nothing to do
            store.begin(meter_id, change_id, new)
            target = with_keys(adapter.config, new)
            if not await adapter.accepts(target):
                if not await adapter.accepts(adapter.config):
                    raise CommandFailed(ErrorCode.DEVICE_ERROR, f"meter {meter_id} accepts neither its active keys nor "
                                                                f"those of change {change_id}; both are kept")
                await adapter.transfer_keys(wrapped)
                log.info("meter %s: new keys of change %s handed over; confirming", meter_id, change_id)
                if not await adapter.accepts(target):
                    store.drop_pending(meter_id)
                    raise CommandFailed(ErrorCode.DEVICE_ERROR,
                                        f"meter {meter_id} kept its keys: it did not take change {change_id}")
            store.promote(meter_id)
            adapter.config = target
        log.info("meter %s: key change %s confirmed", meter_id, change_id)
        return answer

    return change_keys
