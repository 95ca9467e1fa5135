"""The topic tree: builders and the one parser agree; validators refuse what MQTT forbids."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paho.mqtt.client import topic_matches_sub as paho_matches

from broker import topics
from broker.topics import TopicError

# Cc: the control characters U+0000-U+001F and U+007F-U+009F, which the tree refuses.
level = st.text(st.characters(blacklist_characters="/+#", blacklist_categories=("Cs", "Cc")),
                min_size=1, max_size=40).filter(lambda s: not s.startswith("$"))


@given(cid=level, meter=level, specific=level)
def test_meter_message_round_trips(cid, meter, specific):
    parsed = topics.parse(topics.concentrator_meter_message(cid, meter, specific))
    assert (parsed.kind, parsed.concentrator, parsed.meter, parsed.topic) == ("meter_message", cid, meter, specific)


@given(cid=level, meter=level, specific=level)
def test_concentrator_forwards_local_topic_unmodified(cid, meter, specific):
    local = topics.local_meter_message(meter, specific)
    assert topics.parse(local).kind == "local_meter_message"
    forwarded = topics.forward_local(cid, local)
    assert forwarded == f"concentrator/{cid}/{local}"
    assert topics.parse(forwarded).meter == meter


@given(cid=level)
def test_concentrator_subtopics_round_trip(cid):
    assert topics.parse(topics.concentrator_status(cid)) == topics.ParsedTopic("concentrator_status", concentrator=cid)
    assert topics.parse(topics.concentrator_command(cid)).kind == "concentrator_command"
    assert topics.parse(topics.concentrator_response(cid)).concentrator == cid
    assert topics.parse(topics.concentrator_time(cid, "request")).direction == "request"
    assert topics.parse(topics.concentrator_event(cid, cid)) == topics.ParsedTopic(
        "concentrator_event", concentrator=cid, device=cid)
    assert topics.parse(topics.concentrator_live(cid, cid)) == topics.ParsedTopic(
        "concentrator_live", concentrator=cid, meter=cid)
    assert topics.parse(topics.concentrator_firmware(cid, "image", "v1")).rest == ("image", "v1")
    assert topics.parse(topics.concentrator_reading_batch(cid)) == topics.ParsedTopic(
        "reading_batch", concentrator=cid, topic="meterReading")


@given(org=level, domain=level, device=level, kind=level)
def test_upper_layers_round_trip(org, domain, device, kind):
    assert topics.parse(topics.domain_topic(domain, "request", org)) == topics.ParsedTopic(
        "domain", domain=domain, direction="request", organisation=org)
    assert topics.parse(topics.core_topic("response", org)).organisation == org
    assert topics.parse(topics.app_topic(org, domain, kind)).topic == kind
    assert topics.parse(topics.device_topic(device, "status")).device == device


@given(bad=st.sampled_from(["a/b", "+", "#", "x+y", "a#", "", "$SYS", "nul\x00"]))
def test_builders_refuse_levels_that_would_change_the_tree(bad):
    with pytest.raises(TopicError):
        topics.concentrator_meter_message("c1", bad, "meterReading")


@pytest.mark.parametrize("topic", ["a/+/b", "a/#", "#", "+"])
def test_publish_topics_may_not_hold_wildcards(topic):
    with pytest.raises(TopicError, match="wildcards"):
        topics.validate_publish_topic(topic)


@pytest.mark.parametrize("good", ["#", "a/+/b", "a/#", "$share/g/a/+", topics.ALL_METER_MESSAGES,
                                  topics.shared("ingest", topics.ALL_METER_MESSAGES)])
def test_valid_filters_pass(good):
    assert topics.validate_filter(good) == good


@pytest.mark.parametrize("bad", ["a/#/b", "a/b#", "a+/b", "$share//a", "$share/g", "$share/g+/a", ""])
def test_invalid_filters_are_refused(bad):
    with pytest.raises(TopicError):
        topics.validate_filter(bad)


def test_overlong_topic_is_refused():
    with pytest.raises(TopicError, match="bytes"):
        topics.validate_publish_topic("a" * 70000)


@given(st.text(max_size=80))
def test_parser_never_raises_anything_but_topic_error(text):
    try:
        topics.parse(text)
    except TopicError:
        pass


controls = st.sampled_from([chr(c) for c in [*range(0x00, 0x20), *range(0x7F, 0xA0)]])


@given(control=controls, at=st.integers(0, 3))
def test_control_characters_are_refused_in_levels_topics_and_filters(control, at):
    text = "conc-1"[:at] + control + "conc-1"[at:]
    with pytest.raises(TopicError, match="control character"):
        topics.validate_level(text)
    with pytest.raises(TopicError, match="control character"):
        topics.validate_publish_topic(f"concentrator/{text}/status")
    with pytest.raises(TopicError, match="control character"):
        topics.validate_filter(f"concentrator/{text}/+")


def test_validations_are_cached_and_refusals_are_not():
    topic = "concentrator/cache-probe/status"
    before = topics.validate_publish_topic.cache_info().hits
    for _ in range(3):
        assert topics.validate_publish_topic(topic) == topic
    assert topics.validate_publish_topic.cache_info().hits == before + 2
    for _ in range(2):  # a refused topic raises every time, not only the first
        with pytest.raises(TopicError):
            topics.validate_publish_topic("concentrator/cache\x07probe/status")


@pytest.mark.parametrize("topic_filter", [
    topics.ALL_METER_MESSAGES, topics.ALL_CONCENTRATOR_STATUS, topics.ALL_CONCENTRATOR_RESPONSES,
    topics.ALL_DEVICE_EVENTS, topics.ALL_LIVE_READINGS, topics.ALL_READING_BATCHES, topics.ALL_TIME_REQUESTS, topics.ALL_DRIFT_REPORTS, topics.ALL_FIRMWARE_REQUESTS, topics.ALL_LOCAL_METER_MESSAGES,
    topics.ALL_CORE_REQUESTS, topics.ALL_CORE_RESPONSES, topics.ALL_DEVICE_COMMANDS, topics.ALL_DEVICE_RESPONSES,
    topics.ALL_DEVICE_STATUS, topics.EVERYTHING, topics.BROKER_STATISTICS, topics.domain_requests("publiclighting"),
    topics.organisation_domains("request", "org-a"), topics.app_subtree("org-a"), topics.device_subtree("sl-1"),
    topics.concentrator_subtree("conc-1"),
])
def test_every_filter_is_valid(topic_filter):
    assert topics.validate_filter(topic_filter) == topic_filter


@given(cid=level, meter=level, org=level, domain=level, device=level)
def test_each_filter_matches_what_the_builders_build_for_it(cid, meter, org, domain, device):
    from paho.mqtt.client import topic_matches_sub as matches

    built = {
        topics.ALL_METER_MESSAGES: topics.concentrator_meter_message(cid, meter, "meterReading"),
        topics.ALL_CONCENTRATOR_STATUS: topics.concentrator_status(cid),
        topics.ALL_CONCENTRATOR_RESPONSES: topics.concentrator_response(cid),
        topics.ALL_DEVICE_EVENTS: topics.concentrator_event(cid, device),
        topics.ALL_LIVE_READINGS: topics.concentrator_live(cid, meter),
        topics.ALL_READING_BATCHES: topics.concentrator_reading_batch(cid),
        topics.ALL_TIME_REQUESTS: topics.concentrator_time(cid, "request"),
        topics.ALL_DRIFT_REPORTS: topics.concentrator_time(cid, "drift"),
        topics.ALL_FIRMWARE_REQUESTS: topics.concentrator_firmware(cid, "request"),
        topics.ALL_LOCAL_METER_MESSAGES: topics.local_meter_message(meter, "meterReading"),
        topics.ALL_CORE_REQUESTS: topics.core_topic("request", org),
        topics.ALL_CORE_RESPONSES: topics.core_topic("response", org),
        topics.ALL_DEVICE_COMMANDS: topics.device_topic(device, "command"),
        topics.ALL_DEVICE_RESPONSES: topics.device_topic(device, "response"),
        topics.ALL_DEVICE_STATUS: topics.device_topic(device, "status"),
        topics.domain_requests(domain): topics.domain_topic(domain, "request", org),
        topics.organisation_domains("response", org): topics.domain_topic(domain, "response", org),
        topics.app_subtree(org): topics.app_topic(org, domain, "result"),
        topics.device_subtree(device): topics.device_topic(device, "command"),
        topics.concentrator_subtree(cid): topics.concentrator_ack(cid),
    }
    for topic_filter, topic in built.items():
        assert matches(topic_filter, topic), (topic_filter, topic)
    # ... and none of them matches a topic of another kind.
    assert not matches(topics.ALL_CORE_REQUESTS, topics.core_topic("response", org))
    assert not matches(topics.ALL_DRIFT_REPORTS, topics.concentrator_time(cid, "request"))
    assert not matches(topics.ALL_DEVICE_EVENTS, topics.concentrator_meter_message(cid, meter, "meterReading"))
    assert not matches(topics.ALL_METER_MESSAGES, topics.concentrator_reading_batch(cid))
    assert not matches(topics.ALL_READING_BATCHES, topics.concentrator_meter_message(cid, meter, "meterReading"))


def test_an_apps_reading_topic_is_built_and_parsed_and_stays_in_its_organisations_subtree():
    topic = topics.app_reading("org-a", "meter-1")
    assert topic == "app/org-a/metering/reading/meter-1"
    parsed = topics.parse(topic)
    assert (parsed.kind, parsed.organisation, parsed.meter) == ("app_reading", "org-a", "meter-1")
    import paho.mqtt.client as paho

    assert paho.topic_matches_sub(topics.app_subtree("org-a"), topic)
    assert paho.topic_matches_sub(topics.app_readings("org-a"), topic)
    assert not paho.topic_matches_sub(topics.app_subtree("org-b"), topic)
    for bad in ("a/b", "+", "#"):
        with pytest.raises(topics.TopicError):
            topics.app_reading("org-a", bad)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(["a", "b", "", "$sys", "+", "#"]), min_size=1, max_size=4),
       st.lists(st.sampled_from(["a", "b", "", "$sys", "c"]), min_size=1, max_size=4))
def test_matches_agrees_with_paho(filter_levels: list[str], topic_levels: list[str]) -> None:
    """broker.topics.matches answers as paho's topic_matches_sub, for every filter shape ('#' last)."""
    if "#" in filter_levels[:-1]:
        return  # not a valid filter: '#' only last
    topic_filter, topic = "/".join(filter_levels), "/".join(topic_levels)
    assert topics.matches(topic_filter, topic) == paho_matches(topic_filter, topic), (topic_filter, topic)
