"""Map a parsed P1 telegram to OMDP MeterReadings, as the adapter config says.

The electricity meter gives one MeterReading at the telegram's own timestamp (``0-0:1.0.0``).
Each configured M-Bus sub-meter (gas, water) gives its own MeterReading for its own
MeterIndividual, at the time that device measured its value (the second timestamp on the
``0-n:24.2.1`` line), because a gas meter reports every five minutes, not every second.
Reading ids come from ``MeterReading.derive_id(meter, time)``: the same value read twice has
the same id, which is what lets every store downstream write idempotently. The default
mappings (a config without ``operationalProperties``) are in ``devices/p1.py``.
"""

from __future__ import annotations

import logging
from datetime import datetime
from decimal import Decimal

from broker.lean import MeterReading, OperationalPropertyRef, PropertyValue
from devices.adapter_config import PropertyMapping, SmartMeterAdapterConfig, SubMeterConfig
from devices.p1 import DEFAULT_MBUS_PROPERTIES, DEFAULT_P1_PROPERTIES
from edge.p1.telegram import Quantity, Telegram, TelegramError, decode_hex_text

logger = logging.getLogger(__name__)


class MappingError(TelegramError):
    """A telegram that parsed but cannot become a MeterReading (e.g. it has no timestamp)."""


# DSMR 5 sends these as hex-encoded text.
_HEX_TEXT_CODES = ("96.1.1", "96.1.0", "96.13.0")


class P1Mapper:
    """Turns telegrams into MeterReadings for one adapter config (one mapper per meter stream)."""

    def __init__(self, config: SmartMeterAdapterConfig, *, repeat_sub_meters: bool = False) -> None:
        self.config = config
        # An M-Bus value repeats in every telegram until the device reports again (5 min for
        # gas); by default only a new one becomes a reading. The id would dedupe it anyway.
        self.repeat_sub_meters = repeat_sub_meters
        self._last_sub_time: dict[int, datetime] = {}
        self.properties = tuple(config.operational_properties or DEFAULT_P1_PROPERTIES)
        self._warned: set[tuple[str, str]] = set()
        # Built once: every reading of a meter carries the same MeterIndividual.
        self._individuals = {config.meter_individual_id: config.meter_individual()}
        self._individuals.update({s.meter_individual_id: s.meter_individual() for s in config.sub_meters})

    def readings(self, telegram: Telegram, *, received_at: datetime | None = None) -> list[MeterReading]:
        """The readings in ``telegram``: the main meter first, then each configured sub-meter.

        ``received_at`` stands in for a missing telegram timestamp; without either,
        MappingError is raised.
        """
        reading_time = telegram.timestamp or received_at
        if reading_time is None:
            raise MappingError("telegram has no timestamp (0-0:1.0.0)")
        out: list[MeterReading] = []
        main = self._reading(self.config.meter_individual_id, reading_time,
                             [self._value(telegram, m, m.source, reading_time) for m in self.properties])
        if main is not None:
            out.append(main)
        for sub in self.config.sub_meters:
            reading = self._sub_reading(telegram, sub)
            if reading is not None:
                out.append(reading)
        return out

    def _sub_reading(self, telegram: Telegram, sub: SubMeterConfig) -> MeterReading | None:
        mbus = telegram.mbus.get(sub.channel)
        if mbus is None:
            return None
        if not self.repeat_sub_meters:
            if self._last_sub_time.get(sub.channel) == mbus.timestamp:
                return None
            self._last_sub_time[sub.channel] = mbus.timestamp
        mappings = sub.operational_properties or DEFAULT_MBUS_PROPERTIES.get(sub.physical_meter_class, ())
        values = []
        for m in mappings:
            key = m.source if ":" in m.source else f"0-{sub.channel}:{m.source}"
            values.append(self._value(telegram, m, key, mbus.timestamp,
                                      mbus.quantity if key.endswith(("24.2.1", "24.2.3")) else None))
        return self._reading(sub.meter_individual_id, mbus.timestamp, values)

    def _reading(self, meter_id: str, reading_time: datetime,
                 values: list[PropertyValue | None]) -> MeterReading | None:
        present = [v for v in values if v is not None]
        if not present:
            self._warn_once(meter_id, "*", "no configured property found in the telegram for meter %s", meter_id)
            return None
        return MeterReading(
            meterReadingIdentifier=MeterReading.derive_id(meter_id, reading_time),
            readingTime=reading_time,
            propertyValues=present,
            meterIndividual=self._individuals[meter_id],
        )

    def _value(self, telegram: Telegram, m: PropertyMapping, key: str, when: datetime,
               quantity: Quantity | None = None) -> PropertyValue | None:
        ref = OperationalPropertyRef(propertyId=m.property_id, propertyDescription=m.description)
        if m.value_type == "text":
            raw = telegram.text(key)
            if raw is None:
                return None
            if key.endswith(_HEX_TEXT_CODES):
                raw = decode_hex_text(raw) or raw
            return PropertyValue(unit=m.unit, date=when, textValue=raw, operationalPropertyDefinition=ref)
        q = quantity or telegram.quantity(key)
        if q is None:
            return None
        if m.unit is not None and q.unit is not None and m.unit != q.unit and m.scale is None:
            self._warn_once(key, m.unit, "%s is in %s but the config wants %s and gives no scale; skipped",
                            key, q.unit, m.unit)
            return None
        value = q.value * Decimal(repr(m.scale)) if m.scale is not None else q.value
        return PropertyValue(unit=m.unit or q.unit, date=when, numericalValue=float(value),
                             operationalPropertyDefinition=ref)

    def _warn_once(self, key: str, detail: str, msg: str, *args: object) -> None:
        # Telegrams come every second: a config problem is worth one warning, not 86,400 a day.
        if (key, detail) not in self._warned:
            self._warned.add((key, detail))
            logger.warning(msg, *args)


def telegram_to_readings(telegram: Telegram, config: SmartMeterAdapterConfig,
                         *, received_at: datetime | None = None) -> list[MeterReading]:
    """One-shot form of :meth:`P1Mapper.readings`, sub-meter values always included."""
    return P1Mapper(config, repeat_sub_meters=True).readings(telegram, received_at=received_at)
