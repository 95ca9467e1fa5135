"""The concentrator's polled meters: DLMS adapters and Modbus sources built from its config.

Builds one :class:`~edge.polling.MeterPoller` over every DLMS and Modbus meter, knows each
meter's interval period (for completeness and backfill), which meters keep a load profile
(for backfill), and the command handlers of each meter (for the command executor).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from broker.backoff import Backoff
from broker.sealing import KEY_ENV, SealingError
from devices.profiles.loader import load_profile
from edge.commands.executor import CommandHandler
from edge.commands.meter_handlers import CompletenessQuery, dlms_handlers, modbus_handlers
from edge.commands.key_change import attach_key_store
from edge import config_lean
from edge.config import key_ring
from edge.dlms import DlmsMeterAdapter, InvocationCounterStore
from edge.dlms.key_store import DlmsKeyStore
from edge.polling import MeterPoller, RecoveredHook, Sink

if TYPE_CHECKING:  # imported by the first Modbus meter: a concentrator without one loads no pymodbus
    from devices.profiles.lean import MeterProfile
    from edge.config_lean import DlmsMeterConfig, PollingSettings
    from edge.modbus import ModbusConnections, ModbusMeterSource, RegisterMap

log = logging.getLogger(__name__)


def _by_name(meter: Any, plain: type[config_lean.Lean]) -> dict[str, Any]:
    """A meter entry's fields (the lean config's, or the pydantic model's a caller built) by name,
    nested settings as dicts, for the plain config without ``protocol``."""
    def value(item: Any) -> Any:
        if isinstance(item, config_lean.Lean):
            return {f.name: value(getattr(item, f.name)) for f in item.fields}
        if hasattr(item, "model_fields"):  # a pydantic model
            return {name: value(getattr(item, name)) for name in type(item).model_fields}
        return item
    return {f.name: value(getattr(meter, f.name)) for f in plain.fields}


class PolledConfig(Protocol):
    """What a meter set reads from its owner's config (a concentrator's, or an external adapter's)."""

    @property
    def meters(self) -> Sequence[object]: ...

    @property
    def polling(self) -> PollingSettings: ...

    @property
    def invocation_counters(self) -> Path: ...


def _key_store(config: object) -> DlmsKeyStore | None:
    """The sealed store of DLMS keys changed through the platform: a concentrator's, with a sealing key.
    A store on disk with no key to open it is refused: its meters no longer take the config's keys."""
    path = getattr(config, "dlms_keys", None)
    ring = key_ring(config) if path is not None else None
    if ring is None:
        if path is not None and Path(path).exists():
            raise SealingError(f"{path} holds DLMS keys changed through the platform, sealed, but there is no "
                               f"sealing key to open them (secrets_key_file or {KEY_ENV})")
        return None
    return DlmsKeyStore(path, ring)


class MeterSet:
    """Every polled meter of one concentrator (or external adapter), with its poller."""

    def __init__(self, *, config: PolledConfig, sink: Sink, clock: Callable[[], datetime]) -> None:
        polling = config.polling
        self._clock = clock
        self._hook: RecoveredHook | None = None
        self.poller = MeterPoller(
            sink=sink, on_recovered=self._recovered, default_bus_limit=polling.bus_limit, jitter=polling.jitter,
            backoff=Backoff(initial=polling.retry_base_s, maximum=max(polling.retry_cap_s, polling.retry_base_s)),
            unhealthy_after=polling.unhealthy_after, wall_clock=lambda: clock().timestamp())
        self.dlms: dict[str, DlmsMeterAdapter] = {}
        self.modbus: dict[str, ModbusMeterSource] = {}
        # Seconds per interval slot, by meter: the load profile's period, else the poll interval.
        self.periods: dict[str, float] = {}
        self.connections: ModbusConnections | None = None
        self._counters: InvocationCounterStore | None = None
        # Keys changed through the platform, sealed: only with a sealing key (else key changes are refused).
        self.key_store: DlmsKeyStore | None = None
        # One loaded profile per name, shared by its meters (a frozen model): loading it per meter
        # cost about 10 KiB of objects each, 1 MiB for 100 meters (docs/FIRMWARE.md, "Memory").
        self._profiles: dict[str, MeterProfile] = {}
        maps: dict[str, RegisterMap] = {}
        for meter in config.meters:
            protocol = getattr(meter, "protocol", None)
            if protocol == "dlms":
                if self._counters is None:
                    self._counters = InvocationCounterStore(config.invocation_counters)
                    self.key_store = _key_store(config)
                self._add_dlms(meter)
            elif protocol == "modbus":
                if meter.register_map not in maps:
                    from devices.modbus import load_map
                    maps[meter.register_map] = load_map(meter.register_map)
                self._add_modbus(meter, maps[meter.register_map])

    def _add_dlms(self, meter: Any) -> None:
        plain = config_lean.DlmsMeterConfig.validate(_by_name(meter, config_lean.DlmsMeterConfig))
        if plain.profile not in self._profiles:
            self._profiles[plain.profile] = load_profile(plain.profile)
        adapter = DlmsMeterAdapter(config=plain, counters=self._counters, profile=self._profiles[plain.profile],
                                   time_source=self._clock)
        if self.key_store is not None:
            attach_key_store(adapter, self.key_store)
        spec = adapter.profile.load_profile
        self.dlms[meter.meter_id] = adapter
        self.periods[meter.meter_id] = spec.period_minutes * 60.0 if spec else meter.interval_s
        self.poller.add(adapter)

    def push_keys(self, meter_id: str) -> list[DlmsMeterConfig]:
        """The configs whose keys may open ``meter_id``'s ciphered pushes: its adapter's current
        keys (a key change's once active), then a change's pending ones (the meter may have taken them)."""
        adapter = self.dlms.get(meter_id)
        if adapter is None:
            return []
        pending = adapter.pending_keys() if adapter.pending_keys is not None else None
        return [adapter.config, *([pending] if pending is not None else [])]

    def _add_modbus(self, meter: Any, register_map: RegisterMap) -> None:
        from edge.modbus import ModbusAdapter, ModbusConnections, ModbusMeterSource

        if self.connections is None:
            self.connections = ModbusConnections()
        plain = config_lean.ModbusMeterConfig.validate(_by_name(meter, config_lean.ModbusMeterConfig))
        adapter = ModbusAdapter(register_map=register_map, meter_id=plain.meter_id,
                                client=self.connections.client_for(plain), unit_id=plain.unit_id, clock=self._clock)
        source = ModbusMeterSource(config=plain, adapter=adapter, clock=self._clock)
        self.modbus[plain.meter_id] = source
        self.periods[plain.meter_id] = plain.interval
        self.poller.add(source)

    # --- backfill ------------------------------------------------------------------------------

    @property
    def profile_sources(self) -> dict[str, DlmsMeterAdapter]:
        """Meters with a load profile to backfill from."""
        return {m: a for m, a in self.dlms.items() if a.profile.load_profile is not None}

    @property
    def profile_periods(self) -> dict[str, timedelta]:
        return {m: timedelta(seconds=self.periods[m]) for m in self.profile_sources}

    def on_recovered(self, hook: RecoveredHook) -> None:
        """Run ``hook(meter_id, down_since, now)`` when a meter answers again after failures."""
        self._hook = hook

    async def _recovered(self, meter_id: str, down_since: datetime, now: datetime) -> None:
        if self._hook is not None:
            await self._hook(meter_id, down_since, now)

    # --- commands -------------------------------------------------------------------------------

    def command_handlers(self, *, completeness: CompletenessQuery,
                         backfill: Callable[..., Any] | None = None) -> dict[str, dict[str, CommandHandler]]:
        """Command handlers per meter id."""
        out: dict[str, dict[str, CommandHandler]] = {}
        for meter_id, adapter in self.dlms.items():
            out[meter_id] = dlms_handlers(adapter=adapter, poller=self.poller, completeness=completeness,
                                          backfill=backfill if meter_id in self.profile_sources else None,
                                          clock=self._clock, key_store=self.key_store)
        for meter_id, source in self.modbus.items():
            out[meter_id] = modbus_handlers(source=source, poller=self.poller, completeness=completeness)
        return out

    def close(self) -> None:
        if self.connections is not None:
            self.connections.close()
