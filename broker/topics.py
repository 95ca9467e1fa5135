"""The Gridwire topic tree: builders, validators and the one parser of incoming topics.

Every topic the platform publishes or subscribes to is built here, so the tree in
``docs/ARCHITECTURE.md`` and the ACLs generated in :mod:`broker.mosquitto_conf` have a single
source: every subscription filter and every ACL line is a constant or a function here.

Layout (each layer its own subtree, so ACLs can fence them)::

    smartMeterMessage/{meter}/{topic}                              adapter -> concentrator (local, OMDP)
    adapter/{adapter}/ack                                          concentrator -> adapter: readings kept (local)
    concentrator/{cid}/smartMeterMessage/{meter}/{topic}           concentrator -> cloud (OMDP)
    concentrator/{cid}/batch/meterReading                          concentrator -> cloud: live readings of
                                                                   its meters, batched (``live_batch``)
    concentrator/{cid}/status                                      birth / death (retained, LWT)
    concentrator/{cid}/command                                     core -> concentrator generic commands
    concentrator/{cid}/response                                    concentrator -> core command results
    concentrator/{cid}/ack                                         cloud -> concentrator: readings and events stored
    concentrator/{cid}/event/{device}                              concentrator -> cloud: a device's events
    concentrator/{cid}/live/{meter}                                a P1 meter's latest reading (retained, QoS 0)
    concentrator/{cid}/time/request | time/response | time/drift   NTP-style time exchange, meter drift
    concentrator/{cid}/firmware/{...}                              OTA (reserved)
    device/{device}/command | response | status                    MQTT-native devices
    domain/{domain}/request/{org} | response/{org}                 functional requests and results
    core/request/{org} | core/response/{org}                       generic commands routed by the core
    app/{org}/{domain}/{kind}                                      notifications for an organisation's apps
    app/{org}/metering/reading/{meter}                             stored readings of the org's meters (fan-out)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache

from broker.errors import Invalid

MAX_TOPIC_BYTES = 65535
# Validations are cached: the same few thousand topics are built and published again and again.
_CACHED = 8192
# MQTT forbids NUL and says topics should not hold control characters (U+0001-U+001F,
# U+007F-U+009F): they garble logs and ACL files, and no Gridwire identifier needs them.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# A topic level we build from an identifier: no wildcards, no separators, no control characters.
_LEVEL_RE = re.compile(r"^[^/+#\x00-\x1f\x7f-\x9f]+$")

SMART_METER_MESSAGE = "smartMeterMessage"
CONCENTRATOR = "concentrator"


class TopicError(Invalid):
    """A topic or topic filter that MQTT or the Gridwire tree does not allow."""


class ReadingTopic(StrEnum):
    """The OMDP ``specificTopic`` values the platform uses for meter data."""

    METER_READING = "meterReading"
    # Readings recovered from a meter's own load profile after an outage.
    HISTORICAL = "historicalMeterReading"


@lru_cache(maxsize=_CACHED)
def validate_level(value: str, *, what: str = "topic level") -> str:
    """Return ``value`` if it can stand as one level of a published topic, else raise TopicError."""
    if not isinstance(value, str) or not value:
        raise TopicError(f"{what} must be a non-empty string")
    if not _LEVEL_RE.match(value):
        raise TopicError(f"{what} {value!r} may not contain '/', '+', '#' or a control character")
    if value.startswith("$"):
        raise TopicError(f"{what} {value!r} may not start with '$'")
    _check_utf8(value, what=what)
    return value


@lru_cache(maxsize=_CACHED)
def validate_publish_topic(topic: str) -> str:
    """Return ``topic`` if a client may publish to it (no wildcards, UTF-8, length), else raise."""
    if not topic:
        raise TopicError("topic must not be empty")
    if "+" in topic or "#" in topic:
        raise TopicError(f"wildcards are not allowed in a publish topic: {topic!r}")
    if _CONTROL.search(topic):
        raise TopicError(f"topic may not contain a control character: {topic[:200]!r}")
    _check_utf8(topic, what="topic")
    return topic


@lru_cache(maxsize=_CACHED)
@lru_cache(maxsize=1024)
def _filter_levels(topic_filter: str) -> tuple[str, ...]:
    return tuple(topic_filter.split("/"))


def matches(topic_filter: str, topic: str) -> bool:
    """Whether ``topic`` matches ``topic_filter`` (MQTT's rules, as paho's ``topic_matches_sub``:
    ``+`` one level, ``#`` this level and all below, neither at the first level of a ``$`` topic),
    without building a matcher per call as paho does: a message on a topic of its own (a device's
    status, a device's answer) is matched against every subscription of the session."""
    wanted = _filter_levels(topic_filter)
    levels = topic.split("/")
    normal = not topic.startswith("$")
    for i, part in enumerate(wanted):
        if part == "#":
            return normal or i > 0
        if i == len(levels):
            return False
        if part == "+":
            if not normal and i == 0:
                return False
        elif part != levels[i]:
            return False
    return len(levels) == len(wanted)


def validate_filter(topic_filter: str) -> str:
    """Return ``topic_filter`` if MQTT allows it as a subscription filter, else raise TopicError."""
    if not topic_filter:
        raise TopicError("topic filter must not be empty")
    if _CONTROL.search(topic_filter):
        raise TopicError(f"topic filter may not contain a control character: {topic_filter[:200]!r}")
    _check_utf8(topic_filter, what="topic filter")
    levels = topic_filter.split("/")
    if levels[0] == "$share":
        if len(levels) < 3 or not levels[1] or "+" in levels[1] or "#" in levels[1]:
            raise TopicError(f"malformed shared subscription: {topic_filter!r}")
        levels = levels[2:]
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            raise TopicError(f"'#' must be a whole last level: {topic_filter!r}")
        if "+" in level and level != "+":
            raise TopicError(f"'+' must be a whole level: {topic_filter!r}")
    return topic_filter


def _check_utf8(value: str, *, what: str) -> None:
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise TopicError(f"{what} is not valid UTF-8") from exc
    if size > MAX_TOPIC_BYTES:
        raise TopicError(f"{what} is {size} bytes, more than MQTT's {MAX_TOPIC_BYTES}")


# --- builders -----------------------------------------------------------------------------


def _concentrator(cid: str) -> str:
    return f"{CONCENTRATOR}/{validate_level(cid, what='concentrator id')}"


def _one_of(value: str, allowed: tuple[str, ...], *, what: str) -> None:
    if value not in allowed:
        raise TopicError(f"{what} must be {', '.join(allowed[:-1])} or {allowed[-1]}, not {value!r}")


def local_meter_message(meter: str, topic: str) -> str:
    """Adapter -> concentrator topic, exactly as OMDP names it."""
    return f"{SMART_METER_MESSAGE}/{validate_level(meter, what='meter id')}/{validate_level(topic)}"


def adapter_ack(adapter: str) -> str:
    """Where a concentrator tells an external adapter which of its readings it keeps or refuses
    (on the concentrator's local listener only; the adapter names it as its Response Topic)."""
    return f"adapter/{validate_level(adapter, what='adapter id')}/ack"


def concentrator_meter_message(cid: str, meter: str, topic: str) -> str:
    """Concentrator -> cloud topic for meter data, exactly as OMDP names it."""
    return f"{_concentrator(cid)}/{local_meter_message(meter, topic)}"


def concentrator_reading_batch(cid: str) -> str:
    """Concentrator -> cloud topic for a batch of live readings of any of its meters (the
    concentrator's ``live_batch`` option): one message per flush window instead of one per
    reading. Each reading keeps its own outbox sequence number (``gw-seq`` holds them all, in
    order) and names its meter in ``meterIndividual``; the per-meter OMDP topic is not used for
    them (docs/ARCHITECTURE.md, "Live batches", says how OMDP subscribers get them per meter)."""
    return f"{_concentrator(cid)}/batch/{ReadingTopic.METER_READING}"


def forward_local(cid: str, local_topic: str) -> str:
    """The cloud topic a concentrator forwards a local adapter topic to, unmodified below the prefix."""
    parsed = parse(local_topic)
    if parsed.kind != "local_meter_message":
        raise TopicError(f"not an adapter topic: {local_topic!r}")
    return f"{_concentrator(cid)}/{local_topic}"


def concentrator_status(cid: str) -> str:
    return f"{_concentrator(cid)}/status"


def concentrator_command(cid: str) -> str:
    return f"{_concentrator(cid)}/command"


def concentrator_response(cid: str) -> str:
    return f"{_concentrator(cid)}/response"


def concentrator_ack(cid: str) -> str:
    """Where the cloud confirms which of a concentrator's messages are stored (end-to-end ack)."""
    return f"{_concentrator(cid)}/ack"


def concentrator_event(cid: str, device: str) -> str:
    """Where a concentrator forwards one device's events (power failure, tamper, alarms)."""
    return f"{_concentrator(cid)}/event/{validate_level(device, what='device id')}"


def concentrator_live(cid: str, meter: str) -> str:
    """Where a concentrator keeps a meter's latest reading, retained (not through the outbox)."""
    return f"{_concentrator(cid)}/live/{validate_level(meter, what='meter id')}"


def concentrator_time(cid: str, direction: str) -> str:
    _one_of(direction, ("request", "response", "drift"), what="time direction")
    return f"{_concentrator(cid)}/time/{direction}"


def concentrator_firmware(cid: str, *rest: str) -> str:
    tail = "/".join(validate_level(level) for level in rest)
    base = f"{_concentrator(cid)}/firmware"
    return f"{base}/{tail}" if tail else base


def device_topic(device: str, kind: str) -> str:
    _one_of(kind, ("command", "response", "status"), what="device topic kind")
    return f"device/{validate_level(device, what='device id')}/{kind}"


def domain_topic(domain: str, direction: str, org: str) -> str:
    _one_of(direction, ("request", "response"), what="domain direction")
    return f"domain/{validate_level(domain, what='domain')}/{direction}/{validate_level(org, what='organisation')}"


def core_topic(direction: str, org: str) -> str:
    _one_of(direction, ("request", "response"), what="core direction")
    return f"core/{direction}/{validate_level(org, what='organisation')}"


def app_topic(org: str, domain: str, kind: str) -> str:
    return (
        f"app/{validate_level(org, what='organisation')}/{validate_level(domain, what='domain')}"
        f"/{validate_level(kind)}"
    )


# The domain and kind of the readings the fan-out republishes to an organisation's apps.
METERING_DOMAIN = "metering"
READING_KIND = "reading"


def app_reading(org: str, meter: str) -> str:
    """Where an organisation's apps receive the stored readings of one meter they may read."""
    return (f"app/{validate_level(org, what='organisation')}/{METERING_DOMAIN}/{READING_KIND}"
            f"/{validate_level(meter, what='meter id')}")


def app_readings(org: str) -> str:
    """Every meter's readings for one organisation's apps (a subscription filter)."""
    return f"app/{validate_level(org, what='organisation')}/{METERING_DOMAIN}/{READING_KIND}/+"


def shared(group: str, topic_filter: str) -> str:
    """An MQTT 5 shared-subscription filter: members of ``group`` split the messages."""
    return validate_filter(f"$share/{validate_level(group, what='share group')}/{topic_filter}")


# --- filters: every subscription and every ACL line is one of these ----------------------

# What the cloud's consumer groups subscribe to.
ALL_METER_MESSAGES = f"{CONCENTRATOR}/+/{SMART_METER_MESSAGE}/+/+"
# Every concentrator's batches of live readings (``concentrator_reading_batch``).
ALL_READING_BATCHES = f"{CONCENTRATOR}/+/batch/{ReadingTopic.METER_READING}"
ALL_CONCENTRATOR_STATUS = f"{CONCENTRATOR}/+/status"
ALL_CONCENTRATOR_RESPONSES = f"{CONCENTRATOR}/+/response"
ALL_CONCENTRATOR_ACKS = f"{CONCENTRATOR}/+/ack"
ALL_DEVICE_EVENTS = f"{CONCENTRATOR}/+/event/+"
ALL_LIVE_READINGS = f"{CONCENTRATOR}/+/live/+"
ALL_TIME_REQUESTS = f"{CONCENTRATOR}/+/time/request"
ALL_DRIFT_REPORTS = f"{CONCENTRATOR}/+/time/drift"
ALL_FIRMWARE_REQUESTS = f"{CONCENTRATOR}/+/firmware/request"
ALL_LOCAL_METER_MESSAGES = f"{SMART_METER_MESSAGE}/+/+"
ALL_ADAPTER_ACKS = "adapter/+/ack"
ALL_CORE_REQUESTS = "core/request/+"
ALL_CORE_RESPONSES = "core/response/+"
ALL_DEVICE_COMMANDS = "device/+/command"
ALL_DEVICE_RESPONSES = "device/+/response"
ALL_DEVICE_STATUS = "device/+/status"
# Everything, and the broker's own statistics (cloud services' ACL).
EVERYTHING = "#"
BROKER_STATISTICS = "$SYS/#"


def domain_requests(domain: str) -> str:
    """Every organisation's functional requests to one domain (that domain's consumer group)."""
    return f"domain/{validate_level(domain, what='domain')}/request/+"


def organisation_domains(direction: str, org: str) -> str:
    """One organisation's requests to, or results from, every domain (its apps' ACL)."""
    _one_of(direction, ("request", "response"), what="domain direction")
    return f"domain/+/{direction}/{validate_level(org, what='organisation')}"


def app_subtree(org: str) -> str:
    """Every notification for one organisation's apps."""
    return f"app/{validate_level(org, what='organisation')}/#"


def meter_messages(meter: str) -> str:
    """Every local message of one meter (an external adapter's ACL: its meters only)."""
    return f"{SMART_METER_MESSAGE}/{validate_level(meter, what='meter id')}/+"


def device_subtree(device: str) -> str:
    """Everything of one MQTT-native device."""
    return f"device/{validate_level(device, what='device id')}/#"


def concentrator_subtree(cid: str) -> str:
    """Everything of one concentrator; ``%u`` (Mosquitto's username pattern) is allowed as id."""
    return f"{_concentrator(cid)}/#"


# --- the parser ------------------------------------------------------------------------------

_PARSER = re.compile(
    r"""^(?:
      concentrator/(?P<cm_cid>[^/]+)/smartMeterMessage/(?P<cm_meter>[^/]+)/(?P<cm_topic>[^/]+)
    | concentrator/(?P<cb_cid>[^/]+)/batch/(?P<cb_topic>meterReading)
    | smartMeterMessage/(?P<lm_meter>[^/]+)/(?P<lm_topic>[^/]+)
    | adapter/(?P<aa_adapter>[^/]+)/ack
    | concentrator/(?P<cs_cid>[^/]+)/(?P<cs_kind>status|command|response|ack)
    | concentrator/(?P<ce_cid>[^/]+)/event/(?P<ce_device>[^/]+)
    | concentrator/(?P<cl_cid>[^/]+)/live/(?P<cl_meter>[^/]+)
    | concentrator/(?P<ct_cid>[^/]+)/time/(?P<ct_dir>request|response|drift)
    | concentrator/(?P<cf_cid>[^/]+)/firmware(?P<cf_rest>(?:/[^/]+)*)
    | device/(?P<dv_device>[^/]+)/(?P<dv_kind>command|response|status)
    | domain/(?P<dm_domain>[^/]+)/(?P<dm_dir>request|response)/(?P<dm_org>[^/]+)
    | core/(?P<co_dir>request|response)/(?P<co_org>[^/]+)
    | app/(?P<ap_org>[^/]+)/(?P<ap_domain>[^/]+)/(?P<ap_kind>[^/]+)
    | app/(?P<ar_org>[^/]+)/metering/reading/(?P<ar_meter>[^/]+)
    )$""",
    re.VERBOSE,
)


@dataclass(frozen=True, slots=True)
class ParsedTopic:
    """What a Gridwire topic names. Fields a kind does not use are None."""

    kind: str
    concentrator: str | None = None
    meter: str | None = None
    topic: str | None = None
    device: str | None = None
    domain: str | None = None
    organisation: str | None = None
    direction: str | None = None
    rest: tuple[str, ...] = ()


def parse(topic: str) -> ParsedTopic:
    """Parse a concrete topic of the Gridwire tree; raise TopicError for anything else."""
    m = _PARSER.match(topic)
    if m is None:
        raise TopicError(f"not a Gridwire topic: {topic[:200]!r}")
    g = m.groupdict()
    if g["cm_cid"] is not None:
        return ParsedTopic("meter_message", concentrator=g["cm_cid"], meter=g["cm_meter"], topic=g["cm_topic"])
    if g["cb_cid"] is not None:
        return ParsedTopic("reading_batch", concentrator=g["cb_cid"], topic=g["cb_topic"])
    if g["lm_meter"] is not None:
        return ParsedTopic("local_meter_message", meter=g["lm_meter"], topic=g["lm_topic"])
    if g["aa_adapter"] is not None:
        return ParsedTopic("adapter_ack", device=g["aa_adapter"])
    if g["cs_cid"] is not None:
        return ParsedTopic(f"concentrator_{g['cs_kind']}", concentrator=g["cs_cid"])
    if g["ce_cid"] is not None:
        return ParsedTopic("concentrator_event", concentrator=g["ce_cid"], device=g["ce_device"])
    if g["cl_cid"] is not None:
        return ParsedTopic("concentrator_live", concentrator=g["cl_cid"], meter=g["cl_meter"])
    if g["ct_cid"] is not None:
        return ParsedTopic("concentrator_time", concentrator=g["ct_cid"], direction=g["ct_dir"])
    if g["cf_cid"] is not None:
        rest = tuple(level for level in g["cf_rest"].split("/") if level)
        return ParsedTopic("concentrator_firmware", concentrator=g["cf_cid"], rest=rest)
    if g["dv_device"] is not None:
        return ParsedTopic(f"device_{g['dv_kind']}", device=g["dv_device"])
    if g["dm_domain"] is not None:
        return ParsedTopic("domain", domain=g["dm_domain"], direction=g["dm_dir"], organisation=g["dm_org"])
    if g["co_dir"] is not None:
        return ParsedTopic("core", direction=g["co_dir"], organisation=g["co_org"])
    if g["ar_org"] is not None:
        return ParsedTopic("app_reading", organisation=g["ar_org"], domain=METERING_DOMAIN, topic=READING_KIND,
                           meter=g["ar_meter"])
    return ParsedTopic("app", organisation=g["ap_org"], domain=g["ap_domain"], topic=g["ap_kind"])
