"""The generated ACL file: its lines are the topic tree's filters, and each role may touch what
the builders make for it and nothing of anyone else's. (The broker enforcing it, with 0x87, is
covered against a real Mosquitto in test_session.py, test_tls.py and the provisioning tests.)"""

from __future__ import annotations

import pytest
from paho.mqtt.client import topic_matches_sub

from broker import topics
from broker.errors import Invalid
from broker.mosquitto_conf import USERNAME_PATTERN, Account, render_acl, role_grants

CLOUD = Account(username="gridwire-cloud", password="x", role="cloud")
CONC = Account(username="conc-1", password="x", role="concentrator")
APP = Account(username="app.org-a", password="x", role="app")
DEVICE = Account(username="light-1", password="x", role="device")
FLEET = Account(username="fleet-lights", password="x", role="fleet")
ACCOUNTS = [CLOUD, CONC, APP, DEVICE, FLEET]


def parse_acl(text: str) -> tuple[dict[str, list[tuple[str, str]]], list[tuple[str, str]]]:
    """The ACL file as Mosquitto reads it: grants per user, and the patterns for everyone."""
    users: dict[str, list[tuple[str, str]]] = {}
    patterns: list[tuple[str, str]] = []
    current: str | None = None
    for line in text.splitlines():
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        if words[0] == "user":
            current = words[1]
            users[current] = []
        elif words[0] == "topic":
            assert current is not None
            users[current].append((words[1], words[2]))
        elif words[0] == "pattern":
            patterns.append((words[1], words[2]))
        else:
            pytest.fail(f"unexpected ACL line {line!r}")
    return users, patterns


def allowed(acl: str, username: str, access: str, topic: str) -> bool:
    users, patterns = parse_acl(acl)
    grants = users.get(username, []) + [(a, f.replace(USERNAME_PATTERN, username)) for a, f in patterns]
    return any(a in (access, "readwrite") and topic_matches_sub(f, topic) for a, f in grants)


def test_the_acl_lines_are_the_topic_trees_filters() -> None:
    users, patterns = parse_acl(render_acl(ACCOUNTS))
    assert users == {
        "gridwire-cloud": [("readwrite", topics.EVERYTHING), ("read", topics.BROKER_STATISTICS)],
        "app.org-a": [("read", topics.app_subtree("org-a")), ("write", topics.organisation_domains("request", "org-a")),
                      ("read", topics.organisation_domains("response", "org-a"))],
        "light-1": [("readwrite", topics.device_subtree("light-1"))],
        "fleet-lights": [("read", topics.ALL_DEVICE_COMMANDS), ("write", topics.ALL_DEVICE_RESPONSES),
                         ("write", topics.ALL_DEVICE_STATUS)],
    }
    assert patterns == [("readwrite", topics.concentrator_subtree(USERNAME_PATTERN))]
    assert users == {a.username: role_grants(a) for a in ACCOUNTS if role_grants(a)}


def test_a_concentrator_may_use_every_topic_built_for_it_and_nothing_of_another() -> None:
    acl = render_acl(ACCOUNTS)
    writes = [topics.concentrator_meter_message("conc-1", "m1", topics.ReadingTopic.METER_READING),
              topics.concentrator_meter_message("conc-1", "m1", topics.ReadingTopic.HISTORICAL),
              topics.concentrator_status("conc-1"), topics.concentrator_response("conc-1"),
              topics.concentrator_time("conc-1", "request"), topics.concentrator_time("conc-1", "drift"),
              topics.concentrator_firmware("conc-1", "request")]
    reads = [topics.concentrator_command("conc-1"), topics.concentrator_ack("conc-1"),
             topics.concentrator_time("conc-1", "response"), topics.concentrator_firmware("conc-1", "chunk")]
    assert all(allowed(acl, "conc-1", "write", t) for t in writes)
    assert all(allowed(acl, "conc-1", "read", t) for t in reads)
    others = [t.replace("conc-1", "conc-2") for t in writes + reads]
    assert not any(allowed(acl, "conc-1", access, t) for t in others for access in ("read", "write"))
    assert not allowed(acl, "conc-1", "write", topics.device_topic("light-1", "status"))


def test_an_organisations_apps_reach_their_own_requests_results_and_notifications_only() -> None:
    acl = render_acl(ACCOUNTS)
    assert allowed(acl, "app.org-a", "write", topics.domain_topic("publiclighting", "request", "org-a"))
    assert allowed(acl, "app.org-a", "read", topics.domain_topic("smartmetering", "response", "org-a"))
    assert allowed(acl, "app.org-a", "read", topics.app_topic("org-a", "publiclighting", "result"))
    assert not allowed(acl, "app.org-a", "write", topics.domain_topic("publiclighting", "request", "org-b"))
    assert not allowed(acl, "app.org-a", "read", topics.app_topic("org-b", "publiclighting", "result"))
    assert not allowed(acl, "app.org-a", "write", topics.domain_topic("publiclighting", "response", "org-a"))
    assert not allowed(acl, "app.org-a", "write", topics.core_topic("request", "org-a"))


def test_devices_and_fleets_are_fenced_to_device_topics() -> None:
    acl = render_acl(ACCOUNTS)
    assert allowed(acl, "light-1", "read", topics.device_topic("light-1", "command"))
    assert allowed(acl, "light-1", "write", topics.device_topic("light-1", "status"))
    assert not allowed(acl, "light-1", "read", topics.device_topic("light-2", "command"))
    assert allowed(acl, "fleet-lights", "read", topics.device_topic("light-7", "command"))
    assert allowed(acl, "fleet-lights", "write", topics.device_topic("light-7", "response"))
    assert not allowed(acl, "fleet-lights", "write", topics.device_topic("light-7", "command"))
    assert not allowed(acl, "fleet-lights", "write", topics.concentrator_status("conc-1"))


@pytest.mark.parametrize("account", [Account(username="app.org/#", password="x", role="app"),
                                     Account(username="light+1", password="x", role="device"),
                                     Account(username="x", password="x", role="superuser")])
def test_an_account_that_would_open_a_hole_in_the_acl_is_refused(account: Account) -> None:
    with pytest.raises(Invalid):
        render_acl([account])
