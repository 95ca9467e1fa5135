"""The MQTT contract for the edge without pydantic: the messages the concentrator builds and parses.

The contract's definition is broker/schemas (pydantic models: the cloud's API, OpenAPI and
docs/asyncapi.yaml come from them). These classes restate the messages the concentrator uses on
its run path with the same fields, wire names, checks and JSON, so a concentrator need not load
pydantic (issue 15: its memory). tests/broker/test_lean_contract.py holds the two to one
contract: the same fields, and for generated documents the same accept/reject and the same JSON.
Plain values (the id namespaces, ``gw-seq`` lists, the enums) are defined here once and imported
by broker/schemas.
"""

from broker.lean.base import ContractError
from broker.lean.command import CommandError, CommandResponse, CommandStatus, GenericCommand
from broker.lean.delivery import SEQ_PROPERTY, DeliveryAck, Refusal, parse_seq_list, seq_list
from broker.lean.event import DeviceEvent, DeviceEventType, EventSource
from broker.lean.reading import (ClockState, MeterIndividual, MeterReading, MeterReadingBatch, OperationalPropertyRef,
                                 PhysicalMeterType, PropertyValue, ReadingInterval, ValueStatistics,
                                 parse_meter_message, parse_reading_batch)
from broker.lean.status import (ConcentratorStatus, LiveBatchState, LocalIntakeState, MeterHealth, OfflinePeriod,
                                OutboxState)

__all__ = [
    "SEQ_PROPERTY", "ClockState", "CommandError", "CommandResponse", "CommandStatus", "ConcentratorStatus",
    "ContractError", "DeliveryAck", "DeviceEvent", "DeviceEventType", "EventSource", "GenericCommand",
    "LiveBatchState", "LocalIntakeState", "MeterHealth", "MeterIndividual", "MeterReading", "MeterReadingBatch",
    "OfflinePeriod", "OperationalPropertyRef", "OutboxState", "PhysicalMeterType", "PropertyValue",
    "ReadingInterval", "Refusal", "ValueStatistics", "parse_meter_message", "parse_reading_batch",
    "parse_seq_list", "seq_list",
]
