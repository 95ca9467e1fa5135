"""The simulated meter's state and physics: what its registers, clock and load profile say.

Pure code (no sockets, no gurux): every value is a closed-form function of time, so a test can
compute the exact expected reading for any instant, and two runs agree to the watt-hour.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from edge.dlms.sim_firmware import SimFirmware
from edge.switching import SwitchingClock, SwitchPoint

# Energy counts from here; any fixed instant works, this one keeps uint32 Wh far from wrapping.
ENERGY_EPOCH = datetime(2024, 1, 1, tzinfo=UTC)
DAY_S = 86_400.0
PROFILE_PERIOD = timedelta(minutes=15)

# Mean and daily swing of the household's import power, and its steady export (W).
IMPORT_MEAN_W = 400.0
IMPORT_SWING_W = 200.0
EXPORT_MEAN_W = 120.0
# Share of energy counted on tariff 1 (night/low); the rest is tariff 2.
TARIFF1_SHARE = 0.4
EXPORT_TARIFF1_SHARE = 0.5

ENERGY_OBIS = ("1.0.1.8.1.255", "1.0.1.8.2.255", "1.0.2.8.1.255", "1.0.2.8.2.255")
# Total import and export (the sum of the tariff registers), as every IDIS/DSMR meter has.
TOTAL_ENERGY_OBIS = ("1.0.1.8.0.255", "1.0.2.8.0.255")
POWER_OBIS = "1.0.1.7.0.255"
EXPORT_POWER_OBIS = "1.0.2.7.0.255"
# Instantaneous values per phase L1, L2, L3: voltage (0.1 V), current (0.01 A), import power (W).
PHASE_VOLTAGE_OBIS = ("1.0.32.7.0.255", "1.0.52.7.0.255", "1.0.72.7.0.255")
PHASE_CURRENT_OBIS = ("1.0.31.7.0.255", "1.0.51.7.0.255", "1.0.71.7.0.255")
PHASE_POWER_OBIS = ("1.0.21.7.0.255", "1.0.41.7.0.255", "1.0.61.7.0.255")
VOLTAGE_OBIS = PHASE_VOLTAGE_OBIS[0]
# The household's load per phase, and each phase's voltage offset (0.1 V).
PHASE_SHARE = (0.5, 0.3, 0.2)
PHASE_VOLTAGE_OFFSET = (0, -15, 12)

# Every register of the meter: OBIS -> (scaler exponent, unit), as its COSEM register says.
REGISTERS: dict[str, tuple[int, str]] = {
    **{obis: (0, "Wh") for obis in (*ENERGY_OBIS, *TOTAL_ENERGY_OBIS)},
    POWER_OBIS: (0, "W"), EXPORT_POWER_OBIS: (0, "W"),
    **{obis: (0, "W") for obis in PHASE_POWER_OBIS},
    **{obis: (-1, "V") for obis in PHASE_VOLTAGE_OBIS},
    **{obis: (-2, "A") for obis in PHASE_CURRENT_OBIS},
}
DAILY_PERIOD = timedelta(days=1)

# The disconnector control log's codes for a remote disconnection and reconnection.
DISCONNECT_EVENT_REMOTE_OFF = 47
DISCONNECT_EVENT_REMOTE_ON = 48

# COSEM clock status bits (IEC 62056-62, clock attribute 2 status byte).
CLOCK_STATUS_OK = 0x00
CLOCK_STATUS_INVALID = 0x01
CLOCK_STATUS_DOUBTFUL = 0x02


def _import_wh(t_s: float) -> float:
    # Integral of IMPORT_MEAN + SWING*sin(2*pi*t/DAY) over [0, t], in Wh.
    omega = 2 * math.pi / DAY_S
    return (IMPORT_MEAN_W * t_s + IMPORT_SWING_W * (1 - math.cos(omega * t_s)) / omega) / 3600.0


def _export_wh(t_s: float) -> float:
    return EXPORT_MEAN_W * t_s / 3600.0


def floor_to_period(moment: datetime, period: timedelta = PROFILE_PERIOD) -> datetime:
    """The start of the profile period holding ``moment`` (periods aligned on ENERGY_EPOCH)."""
    steps = (moment - ENERGY_EPOCH) // period
    return ENERGY_EPOCH + steps * period


@dataclass(frozen=True)
class ProfileRow:
    """One load-profile capture: the meter's clock at capture and the four energy registers (Wh)."""

    time: datetime
    energy_wh: tuple[int, int, int, int]


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class MeterModel:
    """A meter whose values advance deterministically with (possibly simulated) time."""

    time_source: Callable[[], datetime] = _utcnow
    serial: str = "GW0000000001"
    # Meter clock = true time + offset + drift_ppm * (true time - drift_epoch).
    clock_offset: timedelta = timedelta(0)
    drift_ppm: float = 0.0
    clock_status: int = CLOCK_STATUS_OK
    history_days: int = 10
    energy_base_wh: int = 1_000_000
    output_state: bool = True
    drift_epoch: datetime = field(default_factory=_utcnow)
    # Alarm register (0.0.97.98.0.255) bit field, and the standard event log: (meter time, code).
    alarm_bits: int = 0
    events: list[tuple[datetime, int]] = field(default_factory=list)
    # Alarm register 2 (0.0.97.98.1.255) and the alarm filter (0.0.97.98.10.255): which bits of
    # alarm register 1 the meter would push.
    alarm_bits_2: int = 0
    alarm_filter: int = 0xFFFFFFFF
    # The other logs: fraud detection (0.0.99.98.1.255), disconnector control (0.0.99.98.2.255),
    # both (meter time, event code), and long power failures (1.0.99.97.0.255): (end, seconds).
    fraud_events: list[tuple[datetime, int]] = field(default_factory=list)
    disconnect_events: list[tuple[datetime, int]] = field(default_factory=list)
    power_failures: list[tuple[datetime, int]] = field(default_factory=list)
    # Running firmware and the image transfer in progress (COSEM class 18).
    firmware: SimFirmware = field(default_factory=SimFirmware)
    # The disconnector's weekly schedule (two single action schedules, class 22), kept and run here.
    relay_schedule: SwitchingClock = field(default_factory=SwitchingClock)
    # The meter's own invocation counter for ciphered APDUs: kept across associations, as a
    # meter keeps it in non-volatile memory, so no two APDUs share an IV under one key.
    invocation_counter: int = 1
    # Voltage sags and swells: (true time, "sag"|"swell", phase); see edge/dlms/pq_model.py.
    power_quality_events: list[tuple[datetime, str, str]] = field(default_factory=list)
    # Where the push setups (COSEM class 40) send: "host:port" (TCP) or a serial device path (HDLC).
    push_destination: str | None = None
    # Called with the new output state when the disconnector switches (the pusher reports it).
    on_output_change: Callable[[bool], None] | None = None

    # --- time ---------------------------------------------------------------------------
    def true_now(self) -> datetime:
        return self.time_source()

    def meter_time_at(self, true_time: datetime) -> datetime:
        drift = timedelta(seconds=(true_time - self.drift_epoch).total_seconds() * self.drift_ppm / 1e6)
        return true_time + self.clock_offset + drift

    def meter_now(self) -> datetime:
        """What the meter's clock says right now."""
        return self.meter_time_at(self.true_now())

    def set_meter_time(self, value: datetime) -> None:
        """Set the meter's clock (COSEM clock write): drift restarts from here."""
        now = self.true_now()
        self.drift_epoch = now
        self.clock_offset = value - now

    # --- registers ----------------------------------------------------------------------
    def energy_at(self, obis: str, true_time: datetime) -> int:
        """A cumulative energy register (Wh) at a true instant."""
        t_s = (true_time - ENERGY_EPOCH).total_seconds()
        base = self.energy_base_wh
        if obis == "1.0.1.8.1.255":
            return base + int(TARIFF1_SHARE * _import_wh(t_s))
        if obis == "1.0.1.8.2.255":
            return base + int((1 - TARIFF1_SHARE) * _import_wh(t_s))
        if obis == "1.0.2.8.1.255":
            return base // 10 + int(EXPORT_TARIFF1_SHARE * _export_wh(t_s))
        if obis == "1.0.2.8.2.255":
            return base // 10 + int((1 - EXPORT_TARIFF1_SHARE) * _export_wh(t_s))
        raise KeyError(obis)

    def total_energy_at(self, obis: str, true_time: datetime) -> int:
        """Total import (1.8.0) or export (2.8.0): the sum of its two tariff registers."""
        tariffs = ENERGY_OBIS[:2] if obis == TOTAL_ENERGY_OBIS[0] else ENERGY_OBIS[2:]
        return sum(self.energy_at(tariff, true_time) for tariff in tariffs)

    def phase_voltage_at(self, phase: int, true_time: datetime) -> int:
        """Phase voltage in 0.1 V (phase 0, 1, 2 for L1, L2, L3)."""
        return self.voltage_at(true_time) + PHASE_VOLTAGE_OFFSET[phase]

    def phase_power_at(self, phase: int, true_time: datetime) -> int:
        """Active import power of one phase (W); the three add up to power_at within rounding."""
        return int(self.power_at(true_time) * PHASE_SHARE[phase])

    def phase_current_at(self, phase: int, true_time: datetime) -> int:
        """Phase current in 0.01 A: the phase's power over its voltage."""
        return round(self.phase_power_at(phase, true_time) * 1000 / self.phase_voltage_at(phase, true_time))

    def power_at(self, true_time: datetime) -> int:
        """Active import power (W); zero while the breaker is open."""
        if not self.output_state:
            return 0
        t_s = (true_time - ENERGY_EPOCH).total_seconds()
        return int(IMPORT_MEAN_W + IMPORT_SWING_W * math.sin(2 * math.pi * t_s / DAY_S))

    def voltage_at(self, true_time: datetime) -> int:
        """L1 voltage in 0.1 V (the register's scaler is -1)."""
        t_s = (true_time - ENERGY_EPOCH).total_seconds()
        return int(2300 + 20 * math.sin(2 * math.pi * t_s / 3600.0))

    def register_value(self, obis: str) -> int:
        """A register's raw value now (scaled as REGISTERS says)."""
        self.settle_relay()
        now = self.true_now()
        if obis in ENERGY_OBIS:
            return self.energy_at(obis, now)
        if obis in TOTAL_ENERGY_OBIS:
            return self.total_energy_at(obis, now)
        if obis == POWER_OBIS:
            return self.power_at(now)
        if obis == EXPORT_POWER_OBIS:
            return int(EXPORT_MEAN_W)
        for table, value in ((PHASE_VOLTAGE_OBIS, self.phase_voltage_at), (PHASE_CURRENT_OBIS, self.phase_current_at),
                             (PHASE_POWER_OBIS, self.phase_power_at)):
            if obis in table:
                return value(table.index(obis), now)
        raise KeyError(obis)

    # --- load profile -------------------------------------------------------------------
    def profile_rows(self, start: datetime | None = None, end: datetime | None = None, *,
                     period: timedelta = PROFILE_PERIOD) -> list[ProfileRow]:
        """Captures (in meter time) with start <= time <= end, limited to the stored history.

        ``period``: 15 minutes for load profile 1, a day (DAILY_PERIOD) for load profile 2.
        """
        newest = floor_to_period(self.meter_now(), period)
        oldest = newest - timedelta(days=self.history_days) + period
        first = oldest if start is None else max(oldest, _ceil_to_period(start, period))
        last = newest if end is None else min(newest, floor_to_period(end, period))
        rows: list[ProfileRow] = []
        moment = first
        offset = self.meter_now() - self.true_now()
        while moment <= last:
            true_time = moment - offset
            rows.append(ProfileRow(time=moment, energy_wh=tuple(self.energy_at(o, true_time) for o in ENERGY_OBIS)))  # type: ignore[arg-type]
            moment += period
        return rows

    # --- alarms and events --------------------------------------------------------------
    def raise_alarm(self, bit: int) -> None:
        """Set one bit of the alarm register."""
        if not 0 <= bit < 32:
            raise ValueError(f"alarm bit out of range: {bit}")
        self.alarm_bits |= 1 << bit

    def log_event(self, code: int, at: datetime | None = None) -> None:
        """Append a standard event (``at`` in meter time, default now), keeping the log in time order."""
        if not 0 <= code < 256:
            raise ValueError(f"event code out of uint8 range: {code}")
        self.events.append(((at or self.meter_now()).astimezone(UTC), code))
        self.events.sort()

    def event_rows(self, start: datetime | None = None, end: datetime | None = None) -> list[tuple[datetime, int]]:
        """Event log entries with start <= time <= end."""
        return [(at, code) for at, code in self.events
                if (start is None or at >= start) and (end is None or at <= end)]

    def record_power_failure(self, end: datetime, seconds: int) -> None:
        """A long power failure that ended at ``end`` (meter time) after ``seconds``."""
        if seconds < 0:
            raise ValueError("a power failure cannot last less than nothing")
        self.power_failures.append((end.astimezone(UTC), seconds))
        self.power_failures.sort()

    # --- disconnect control -------------------------------------------------------------
    def disconnect(self) -> None:
        self._switch(False)
        self.disconnect_events.append((self.meter_now().astimezone(UTC), DISCONNECT_EVENT_REMOTE_OFF))

    def reconnect(self) -> None:
        self._switch(True)
        self.disconnect_events.append((self.meter_now().astimezone(UTC), DISCONNECT_EVENT_REMOTE_ON))

    def _switch(self, closed: bool) -> None:
        changed = closed != self.output_state
        self.output_state = closed
        if changed and self.on_output_change is not None:
            self.on_output_change(closed)

    # --- the disconnector's schedule ----------------------------------------------------
    def store_relay_moments(self, moments: list[tuple[int, int]], *, closed: bool) -> None:
        """Replace the moments (weekday, minute, meter time) the disconnector closes at, or opens at."""
        self.settle_relay()
        kept = [p for p in self.relay_schedule.points if p.closed is not closed]
        self.relay_schedule.store(kept + [SwitchPoint(w, m, 1, closed) for w, m in moments], self.meter_now())

    def settle_relay(self) -> None:
        """Switch as the schedule says for every moment that came due since last asked (meter time)."""
        states = self.relay_schedule.settle(self.meter_now())
        if 1 in states:
            self._switch(states[1])


def _ceil_to_period(moment: datetime, period: timedelta = PROFILE_PERIOD) -> datetime:
    floor = floor_to_period(moment, period)
    return floor if floor == moment else floor + period
