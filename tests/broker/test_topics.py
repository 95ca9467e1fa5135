"""The topic tree: builders and the one parser agree; validators refuse what MQTT forbids."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker import topics
from broker.topics import TopicError

level = st.text(st.characters(blacklist_characters="/+#\x00", blacklist_categories=("Cs",)),
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
    assert topics.parse(topics.concentrator_firmware(cid, "image", "v1")).rest == ("image", "v1")


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
