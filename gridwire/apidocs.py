"""The MQTT API as an AsyncAPI 2.6 document, generated from the topic tree and the pydantic
schemas, so ``docs/asyncapi.yaml`` cannot drift from the code (a test compares them)."""

from __future__ import annotations

from typing import Any

import yaml
from pydantic import BaseModel

from broker.schemas import (
    CommandResponse,
    ConcentratorStatus,
    DeliveryAck,
    DeviceEvent,
    GenericCommand,
    LightStatus,
    MeterReading,
    MeterReadingBatch,
)

CORRELATED = {"correlationId": {"location": "$message.header#/correlationData"}}


def _schema(model: type[BaseModel]) -> dict[str, Any]:
    return model.model_json_schema(by_alias=True, ref_template="#/components/schemas/{model}")


def _channel(description: str, *, params: dict[str, str], publisher: str, message: str,
             subscriber: str, bindings: dict[str, Any] | None = None) -> dict[str, Any]:
    channel: dict[str, Any] = {
        "description": description,
        "parameters": {name: {"description": text, "schema": {"type": "string"}} for name, text in params.items()},
        # AsyncAPI 2: "publish" is what the application (here: whoever the summary names) sends.
        "publish": {"summary": f"{publisher} publishes", "message": {"$ref": f"#/components/messages/{message}"}},
        "subscribe": {"summary": f"{subscriber} subscribes", "message": {"$ref": f"#/components/messages/{message}"}},
    }
    if bindings:
        channel["bindings"] = {"mqtt": bindings}
    return channel


def _generic_commands() -> str:
    """The generic command names the core sends, each with the device function it is authorised as."""
    from cloud.core.functions import FUNCTION_OF

    listed = "; ".join(f"`{name}` ({function})" for name, function in sorted(FUNCTION_OF.items()))
    return f"`name` is one of the generic commands (with the device function the core authorises): {listed}."


def asyncapi() -> dict[str, Any]:
    """The AsyncAPI document as a dict."""
    from broker.schemas.firmware import ChunkRequest
    from broker.schemas.timesync import DriftReport, TimeRequest, TimeResponse
    from cloud.monitoring.events import MonitoringEvent

    cid = {"cid": "concentrator id (its broker username)"}
    meter = {"meter": "MeterIndividualId"}
    models: list[type[BaseModel]] = [MeterReading, MeterReadingBatch, DeliveryAck, ConcentratorStatus,
                                     GenericCommand, CommandResponse, TimeRequest, TimeResponse, DriftReport, ChunkRequest,
                                     DeviceEvent, MonitoringEvent, LightStatus]
    schemas: dict[str, Any] = {}
    for model in models:
        schema = _schema(model)
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    messages = {
        "MeterReadings": {"name": "MeterReadings", "contentType": "application/json",
                          "summary": "One OMDP MeterReading, or a batch {meterReadings: [...]}",
                          "headers": {"type": "object", "properties": {"gw-seq": {
                              "type": "string", "description": "MQTT 5 user property: the concentrator's outbox "
                                                               "sequence number, echoed in DeliveryAck"}}},
                          "payload": {"oneOf": [{"$ref": "#/components/schemas/MeterReading"},
                                                {"$ref": "#/components/schemas/MeterReadingBatch"}]}},
        "LiveBatch": {"name": "LiveBatch", "contentType": "application/json",
                      "summary": "Live readings of any of the concentrator's meters, {meterReadings: [...]}, each "
                                 "reading as it would travel alone (its meter in meterIndividual)",
                      "headers": {"type": "object", "properties": {"gw-seq": {
                          "type": "string", "pattern": "^[0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*$",
                          "description": "MQTT 5 user property: the outbox sequence numbers of the readings, in "
                                         "their order, as ranges (\"41-57,60\"); each is confirmed, or refused with "
                                         "a reason code, on its own in DeliveryAck"}}},
                      "payload": {"$ref": "#/components/schemas/MeterReadingBatch"}},
        "DeviceEvent": {"name": "DeviceEvent", "contentType": "application/json",
                        "summary": "One event of one device (power failure, tamper, disconnector, alarm bit, failed "
                                   "firmware); its id derives from device, type, time and cause, so a repeat is the "
                                   "same event",
                        "headers": {"type": "object", "properties": {"gw-seq": {
                            "type": "string", "description": "MQTT 5 user property: the concentrator's outbox "
                                                             "sequence number, echoed in DeliveryAck"}}},
                        "payload": {"$ref": "#/components/schemas/DeviceEvent"}},
        "MonitoringEvent": {"name": "MonitoringEvent", "contentType": "application/json",
                            "summary": "An event for an organisation that subscribed to its type (PUT /v1/events/"
                                       "subscriptions/{eventType}) and may receive the device's events; correlation "
                                       "data = the event id bytes",
                            "correlationId": CORRELATED["correlationId"],
                            "payload": {"$ref": "#/components/schemas/MonitoringEvent"}},
        "AppMeterReading": {"name": "AppMeterReading", "contentType": "application/json",
                            "summary": "One stored OMDP MeterReading of a meter the organisation may read; "
                                       "historical: true for one recovered from the meter's load profile",
                            "headers": {"type": "object", "properties": {"historical": {
                                "type": "string", "enum": ["true"],
                                "description": "MQTT 5 user property, on a recovered (backfilled) reading only"}}},
                            "payload": {"$ref": "#/components/schemas/MeterReading"}},
        "DeliveryAck": {"name": "DeliveryAck", "contentType": "application/json",
                        "payload": {"$ref": "#/components/schemas/DeliveryAck"}},
        "AdapterReadings": {"name": "AdapterReadings", "contentType": "application/json",
                            "summary": "One OMDP MeterReading, or a batch, from an external SmartMeterAdapter; its "
                                       "account may publish only for the meters of its adapter config (else the "
                                       "broker answers 0x87)",
                            "headers": {"type": "object", "properties": {
                                "gw-seq": {"type": "string", "description": "MQTT 5 user property: the adapter's "
                                                                            "outbox sequence number, echoed in "
                                                                            "DeliveryAck"},
                                "responseTopic": {"type": "string", "description": "MQTT 5 Response Topic: "
                                                                                   "adapter/{adapter}/ack"}}},
                            "payload": {"oneOf": [{"$ref": "#/components/schemas/MeterReading"},
                                                  {"$ref": "#/components/schemas/MeterReadingBatch"}]}},
        "ReferenceAdapterReading": {
            "name": "ReferenceAdapterReading", "contentType": "application/json",
            "summary": "The OMDP reference SmartMeterAdapter's flat reading (no gw-seq, no Response Topic): read "
                       "into a MeterReading by the concentrator (broker/lean/omdp_reference.py, its id derived "
                       "from meter and time), refused with 0x99 and the reason when it cannot be",
            "payload": {"type": "object", "required": ["readingTime", "meterId", "propertyValues"], "properties": {
                "readingTime": {"type": ["string", "number"],
                                "description": "ISO 8601 with an offset or Z, or epoch seconds or milliseconds"},
                "meterId": {"type": "string", "description": "the topic's meter"},
                "propertyValues": {"type": "array", "minItems": 1, "maxItems": 512, "items": {
                    "type": "object", "required": ["propertyName"], "properties": {
                        "propertyName": {"type": "string", "description": "short OBIS code: 1.8.1, 1-0:1.8.1, "
                                                                          "1-0:1.8.1*255 or 1.0.1.8.1.255"},
                        "numericalValue": {"type": ["string", "number"]},
                        "textValue": {"type": "string"},
                        "unit": {"type": "string"}}}}}}},
        "ConcentratorStatus": {"name": "ConcentratorStatus", "contentType": "application/json",
                               "summary": "Retained; ONLINE at every connection, OFFLINE as the MQTT will",
                               "payload": {"$ref": "#/components/schemas/ConcentratorStatus"}},
        "LightStatus": {"name": "LightStatus", "contentType": "application/json",
                        "summary": "Retained; after every change, and with birth true at every connection",
                        "payload": {"$ref": "#/components/schemas/LightStatus"}},
        "GenericCommand": {"name": "GenericCommand", "contentType": "application/json",
                           "summary": "Correlation data = command id bytes; response topic; message expiry = TTL",
                           "description": _generic_commands(),
                           "correlationId": CORRELATED["correlationId"],
                           "payload": {"$ref": "#/components/schemas/GenericCommand"}},
        "CommandResponse": {"name": "CommandResponse", "contentType": "application/json",
                            "correlationId": CORRELATED["correlationId"],
                            "payload": {"$ref": "#/components/schemas/CommandResponse"}},
        "TimeRequest": {"name": "TimeRequest", "contentType": "application/json",
                        "payload": {"$ref": "#/components/schemas/TimeRequest"}},
        "TimeResponse": {"name": "TimeResponse", "contentType": "application/json",
                         "payload": {"$ref": "#/components/schemas/TimeResponse"}},
        "DriftReport": {"name": "DriftReport", "contentType": "application/json",
                        "summary": "A meter clock measured against the concentrator's synchronised time",
                        "payload": {"$ref": "#/components/schemas/DriftReport"}},
        "FirmwareChunkRequest": {"name": "FirmwareChunkRequest", "contentType": "application/json",
                                 "summary": "length <= 65536, count <= 64 chunks, each answered as its own message; "
                                            "MQTT 5 correlation data identifies the request",
                                 "correlationId": CORRELATED["correlationId"],
                                 "payload": {"$ref": "#/components/schemas/ChunkRequest"}},
        "FirmwareChunk": {"name": "FirmwareChunk", "contentType": "application/octet-stream",
                          "summary": "The image bytes [offset, offset + length), or an empty payload with user "
                                     "properties error and reason",
                          "correlationId": CORRELATED["correlationId"],
                          "headers": {"type": "object", "properties": {
                              "firmwareId": {"type": "string", "description": "MQTT 5 user property"},
                              "offset": {"type": "string", "description": "MQTT 5 user property (decimal)"},
                              "error": {"type": "string", "enum": ["UNKNOWN_FIRMWARE", "OUT_OF_RANGE", "BAD_REQUEST"],
                                        "description": "MQTT 5 user property, on a refused request only"},
                              "reason": {"type": "string", "description": "MQTT 5 user property: why refused"}}},
                          "payload": {"type": "string", "format": "binary"}},
    }
    qos1 = {"qos": 1, "bindingVersion": "0.2.0"}
    local = {"servers": ["local"]}
    channels = {
        "smartMeterMessage/{meter}/meterReading": {**local, **_channel(
            "Live readings from an external SmartMeterAdapter (another device) on the concentrator's local "
            "listener; the concentrator keeps them in its outbox, then confirms on adapter/{adapter}/ack and "
            "forwards them as concentrator/{cid}/smartMeterMessage/{meter}/meterReading",
            params=meter, publisher="adapter (gridwire adapter run, account fenced to its meters)",
            message="AdapterReadings", subscriber="concentrator (smartMeterMessage/+/+)", bindings=qos1)},
        "smartMeterMessage/{meter}/historicalMeterReading": {**local, **_channel(
            "Readings an external adapter recovered from its meter's load profile (historical: true)",
            params=meter, publisher="adapter", message="AdapterReadings", subscriber="concentrator",
            bindings=qos1)},
        "smartMeterMessage/{meter}/readings": {**local, **_channel(
            "Live readings from the OMDP reference SmartMeterAdapter, in its own flat shape; the concentrator "
            "keeps them in its outbox and forwards them as concentrator/{cid}/smartMeterMessage/{meter}/meterReading "
            "(a Gridwire MeterReading also taken here)",
            params=meter, publisher="OMDP reference adapter (account fenced to its meters)",
            message="ReferenceAdapterReading", subscriber="concentrator", bindings=qos1)},
        "adapter/{adapter}/ack": {**local, **_channel(
            "The concentrator confirms the adapter's sequence numbers once its outbox holds the readings (the "
            "adapter may delete them), and names those refused for good with an MQTT 5 reason code (0x99 payload "
            "format invalid, 0x90 topic name invalid, 0x87 not authorised)",
            params={"adapter": "adapter id (its broker username)"}, publisher="concentrator",
            message="DeliveryAck", subscriber="adapter", bindings=qos1)},
        "concentrator/{cid}/smartMeterMessage/{meter}/meterReading": _channel(
            "Live readings (OMDP topic, forwarded unmodified from the adapter's smartMeterMessage/{meter}/...); "
            "with the concentrator's live_batch option on they go on concentrator/{cid}/batch/meterReading instead",
            params={**cid, **meter}, publisher="concentrator", message="MeterReadings",
            subscriber=("ingest ($share/ingest/concentrator/+/smartMeterMessage/+/+); fanout ($share/fanout/...); "
                        "processing ($share/processing/...)"),
            bindings=qos1),
        "concentrator/{cid}/batch/meterReading": _channel(
            "Live readings in batches, instead of one message each on concentrator/{cid}/smartMeterMessage/{meter}/"
            "meterReading, when the concentrator's live_batch option is on (off by default): what its outbox holds "
            "of live readings, sent once per window (0.25 s) or per max_readings (500). Each reading is confirmed "
            "on concentrator/{cid}/ack under its own sequence number once stored, or refused with 0x99 (not a "
            "MeterReading, a gw-seq that does not name each reading) or 0x87 (not this concentrator's meter) and "
            "dead-lettered, without holding back the others. Nobody outside the cloud reads it: apps get each "
            "reading on app/{org}/metering/reading/{meter}, as from the per-meter topic",
            params=cid, publisher="concentrator (live_batch on)", message="LiveBatch",
            subscriber=("ingest ($share/ingest/concentrator/+/batch/meterReading); fanout ($share/fanout/...); "
                        "processing ($share/processing/...)"),
            bindings=qos1),
        "concentrator/{cid}/smartMeterMessage/{meter}/historicalMeterReading": _channel(
            "Readings recovered from the meter's load profile after an outage (historical: true)",
            params={**cid, **meter}, publisher="concentrator", message="MeterReadings",
            subscriber="ingest; processing (replaces its estimates with these)", bindings=qos1),
        "concentrator/{cid}/ack": _channel(
            "End-to-end confirmation: these outbox sequence numbers are stored; the concentrator may delete them",
            params=cid, publisher="ingest, events", message="DeliveryAck",
            subscriber="concentrator; fanout (every one, not shared: a reading is republished once confirmed)",
            bindings=qos1),
        "concentrator/{cid}/event/{device}": _channel(
            "A device's events, forwarded from the concentrator's durable outbox (DLMS pushes, the P1 power failure "
            "log, failed firmware transfers) and confirmed on concentrator/{cid}/ack once stored",
            params={**cid, "device": "device (meter) id"}, publisher="concentrator", message="DeviceEvent",
            subscriber="events, in the domain process ($share/events/concentrator/+/event/+)", bindings=qos1),
        "concentrator/{cid}/live/{meter}": _channel(
            "A P1 meter's latest reading, retained at QoS 0 and not through the outbox (superseded seconds later); "
            "what reaches the outbox is one aggregated reading per interval, or every telegram in batches",
            params={**cid, **meter}, publisher="concentrator", message="MeterReadings",
            subscriber="whoever wants a meter's present values (cloud services)",
            bindings={"qos": 0, "retain": True, "bindingVersion": "0.2.0"}),
        "app/{org}/monitoring/{eventType}": _channel(
            "Events for an organisation's apps: those it subscribed to, of devices it holds RECEIVE_EVENTS on "
            "(MONITORING or OWNER); the same events go to its webhook when it chose that channel",
            params={"org": "organisation id", "eventType": "the event's type"},
            publisher="events (domain process), monitor", message="MonitoringEvent",
            subscriber="the organisation's apps (app.{org})", bindings=qos1),
        "app/{org}/metering/reading/{meter}": _channel(
            "Each reading, once ingest stored it, for every organisation that may read the meter (READ_METER_DATA: "
            "OWNER, AD_HOC or MONITORING), one reading per message; message expiry = GRIDWIRE_FANOUT_MESSAGE_EXPIRY; "
            "retained (the last live reading) for organisations in GRIDWIRE_FANOUT_RETAINED; only the properties "
            "GRIDWIRE_FANOUT_PROPERTIES lists for the organisation, if it lists any. A revoked authorisation stops "
            "the stream within GRIDWIRE_FANOUT_ACCESS_REFRESH_SECONDS. docs/APPS.md",
            params={"org": "organisation id", **meter}, publisher="fanout ($share/fanout/concentrator/+/"
            "smartMeterMessage/+/+ and concentrator/+/batch/meterReading, each reading after ingest's "
            "DeliveryAck)", message="AppMeterReading",
            subscriber="the organisation's apps (app.{org}: app/{org}/# only)", bindings=qos1),
        "concentrator/{cid}/status": _channel(
            "Concentrator liveness and meter health (retained)", params=cid, publisher="concentrator",
            message="ConcentratorStatus", subscriber="monitoring ($share/monitoring/concentrator/+/status)",
            bindings={**qos1, "retain": True}),
        "concentrator/{cid}/command": _channel(
            "Generic commands for devices behind the concentrator", params=cid, publisher="core",
            message="GenericCommand", subscriber="concentrator", bindings=qos1),
        "concentrator/{cid}/response": _channel(
            "Command results, correlated", params=cid, publisher="concentrator", message="CommandResponse",
            subscriber="core ($share/core/concentrator/+/response)", bindings=qos1),
        "device/{device}/command": _channel(
            "Generic commands for an MQTT-native device", params={"device": "device id"}, publisher="core",
            message="GenericCommand", subscriber="device", bindings=qos1),
        "device/{device}/response": _channel(
            "Command results from an MQTT-native device", params={"device": "device id"}, publisher="device",
            message="CommandResponse", subscriber="core ($share/core/device/+/response)", bindings=qos1),
        "device/{device}/status": _channel(
            "An MQTT-native light's state and the version of the schedule it keeps itself; a light born holding "
            "another version than the one set for it is sent that one again", params={"device": "device id"},
            publisher="device", message="LightStatus",
            subscriber="light schedule keeper, in the domain process ($share/device-schedules/device/+/status)",
            bindings={**qos1, "retain": True}),
        "concentrator/{cid}/time/request": _channel(
            "NTP-style time request (t1)", params=cid, publisher="concentrator", message="TimeRequest",
            subscriber="time service ($share/timesync/concentrator/+/time/request)", bindings=qos1),
        "concentrator/{cid}/firmware/request": _channel(
            "A concentrator asks for a chunk of a firmware image (update_firmware downloads)", params=cid,
            publisher="concentrator", message="FirmwareChunkRequest",
            subscriber="firmware server ($share/firmware/concentrator/+/firmware/request)", bindings=qos1),
        "concentrator/{cid}/firmware/chunk": _channel(
            "The chunk, or why not, answered on the asking concentrator's subtree", params=cid,
            publisher="firmware server", message="FirmwareChunk", subscriber="concentrator", bindings=qos1),
        "concentrator/{cid}/time/response": _channel(
            "Time response (t1, t2, t3)", params=cid, publisher="time service", message="TimeResponse",
            subscriber="concentrator", bindings=qos1),
        "concentrator/{cid}/time/drift": _channel(
            "Every meter clock measurement (drift, and whether the clock was set), kept per meter and served "
            "at GET /v1/devices/{id}/clockDrift", params=cid, publisher="concentrator", message="DriftReport",
            subscriber="time service ($share/timesync/concentrator/+/time/drift)", bindings=qos1),
    }
    return {
        "asyncapi": "2.6.0",
        "info": {"title": "Gridwire MQTT API", "version": "0.1.0",
                 "description": "Topics and payloads between Gridwire's layers. Built from broker/topics.py and "
                                "broker/schemas/ by `gridwire docs asyncapi`; do not edit by hand. Domain, core "
                                "and app topics (domain/{domain}/request|response/{org}, core/request|response/"
                                "{org}, app/{org}/{domain}/{kind}) carry the functional requests and results "
                                "described in docs/ARCHITECTURE.md."},
        "servers": {"broker": {"url": "mqtt://localhost:1883", "protocol": "mqtt", "protocolVersion": "5",
                               "description": "Mosquitto with the generated config: password auth, ACLs per role"},
                    "local": {"url": "mqtt://localhost:1884", "protocol": "mqtt", "protocolVersion": "5",
                              "description": "A concentrator's local listener for SmartMeterAdapters on other "
                                             "devices (gridwire concentrator local-broker): plain on loopback, "
                                             "TLS only on the network"}},
        "channels": channels,
        "components": {"messages": messages, "schemas": schemas},
    }


def asyncapi_yaml() -> str:
    return yaml.safe_dump(asyncapi(), sort_keys=False, width=120)


def openapi_json() -> str:
    """The web API's OpenAPI document, from the assembled platform app (no server is started)."""
    import json

    from cloud.api.process import create_platform_app
    from cloud.settings import ApiSettings

    app = create_platform_app(ApiSettings(jwt_secret="openapi-generation-only-not-a-secret"))
    return json.dumps(app.openapi(), indent=1, sort_keys=True) + "\n"
