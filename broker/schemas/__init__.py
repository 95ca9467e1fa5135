"""Message schemas of the MQTT API (pydantic models; camelCase on the wire, as OMDP has it)."""

from broker.schemas.command import CommandError, CommandResponse, CommandStatus, GenericCommand
from broker.schemas.dead_letter import DeadLetter
from broker.schemas.delivery import SEQ_PROPERTY, DeliveryAck, Refusal, parse_seq_list, seq_list
from broker.schemas.event import DeviceEvent, DeviceEventType, EventSource
from broker.schemas.light import LightStatus, RelayState
from broker.schemas.meter_reading import (
    ClockState,
    MeterIndividual,
    MeterReading,
    MeterReadingBatch,
    OperationalPropertyRef,
    PhysicalMeterType,
    PropertyValue,
    ReadingInterval,
    ValueStatistics,
    parse_meter_message,
    parse_reading_batch,
)
from broker.schemas.status import (ConcentratorStatus, LiveBatchState, LocalIntakeState, MeterHealth, OfflinePeriod,
                                   OutboxState)
from broker.schemas.timesync import EXCHANGE_EXPIRY_SECONDS, DriftReport, TimeRequest, TimeResponse

__all__ = [
    "EXCHANGE_EXPIRY_SECONDS", "SEQ_PROPERTY", "ClockState", "CommandError", "CommandResponse", "CommandStatus",
    "ConcentratorStatus", "DeadLetter", "DeliveryAck", "Refusal", "DeviceEvent", "DeviceEventType", "DriftReport",
    "EventSource", "GenericCommand", "LightStatus", "LiveBatchState", "LocalIntakeState", "MeterHealth",
    "MeterIndividual", "MeterReading", "MeterReadingBatch", "OfflinePeriod", "OperationalPropertyRef", "OutboxState",
    "PhysicalMeterType", "PropertyValue", "ReadingInterval", "RelayState", "TimeRequest", "TimeResponse",
    "ValueStatistics", "parse_meter_message", "parse_reading_batch", "parse_seq_list", "seq_list",
]
