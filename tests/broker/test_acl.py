"""The broker roles: their ACL entries are the topic tree's filters, each kind of account may
touch what the builders make for it and nothing of anyone else's, and the dynamic security file
keeps what was made at run time. (The broker enforcing them, with 0x87, is covered against a
real Mosquitto in test_dynsec.py, test_tls.py and the provisioning tests.)"""

from __future__ import annotations

import json

import pytest
from paho.mqtt.client import topic_matches_sub

from broker import topics
from broker.accounts import Account, account_grants
from broker.dynsec import ADMIN_TOPICS, DEFAULT_ACCESS, account_role, render_dynsec, role_acls, write_dynsec
from broker.errors import Invalid

CLOUD = Account(username="gridwire-cloud", password="x", role="cloud")
API = Account(username="gridwire-api", password="x", role="api")
CONC = Account(username="conc-1", password=None, role="concentrator")
APP = Account(username="app.org-a", password="x", role="app")
APP_NAMED_LIKE_A_CONCENTRATOR = Account(username="conc-9", password="x", role="app", subject="org-a")
DEVICE = Account(username="light-1", password="x", role="device")
FLEET = Account(username="fleet-lights", password="x", role="fleet")
ACCOUNTS = [CLOUD, API, CONC, APP, APP_NAMED_LIKE_A_CONCENTRATOR, DEVICE, FLEET]


def allowed(account: Account, access: str, topic: str) -> bool:
    """What the role's dynsec ACLs allow (Mosquitto's default for anything else: deny)."""
    types = {"read": ("subscribePattern", "publishClientReceive"), "write": ("publishClientSend",)}[access]
    acls = role_acls(account)
    return all(any(a["acltype"] == t and a["allow"] and topic_matches_sub(a["topic"], topic) for a in acls)
               for t in types)


def test_every_role_is_made_of_the_topic_trees_filters() -> None:
    assert account_grants(CLOUD) == [("readwrite", topics.EVERYTHING), ("read", topics.BROKER_STATISTICS)]
    assert account_grants(APP) == [("read", topics.app_subtree("org-a")),
                                   ("write", topics.organisation_domains("request", "org-a")),
                                   ("read", topics.organisation_domains("response", "org-a"))]
    assert account_grants(DEVICE) == [("readwrite", topics.device_subtree("light-1"))]
    assert account_grants(CONC) == [("readwrite", topics.concentrator_subtree("conc-1"))]
    assert [account_role(a) for a in ACCOUNTS] == ["cloud", "api", "concentrator:conc-1", "app:org-a", "app:org-a",
                                                   "device:light-1", "fleet"]
    # Deny by default: a subscription outside the roles is refused (0x87), not just filtered.
    assert DEFAULT_ACCESS == {"publishClientSend": False, "publishClientReceive": False, "subscribe": False,
                              "unsubscribe": True}


def test_a_concentrator_may_use_every_topic_built_for_it_and_nothing_of_another() -> None:
    writes = [topics.concentrator_meter_message("conc-1", "m1", topics.ReadingTopic.METER_READING),
              topics.concentrator_meter_message("conc-1", "m1", topics.ReadingTopic.HISTORICAL),
              topics.concentrator_status("conc-1"), topics.concentrator_response("conc-1"),
              topics.concentrator_time("conc-1", "request"), topics.concentrator_time("conc-1", "drift"),
              topics.concentrator_firmware("conc-1", "request"), topics.concentrator_event("conc-1", "m1"),
              topics.concentrator_live("conc-1", "m1"), topics.concentrator_reading_batch("conc-1")]
    reads = [topics.concentrator_command("conc-1"), topics.concentrator_ack("conc-1"),
             topics.concentrator_time("conc-1", "response"), topics.concentrator_firmware("conc-1", "chunk")]
    assert all(allowed(CONC, "write", t) for t in writes)
    assert all(allowed(CONC, "read", t) for t in reads)
    others = [t.replace("conc-1", "conc-2") for t in writes + reads]
    assert not any(allowed(CONC, access, t) for t in others for access in ("read", "write"))
    assert not allowed(CONC, "write", topics.device_topic("light-1", "status"))


def test_an_organisations_apps_reach_their_own_requests_results_and_notifications_only() -> None:
    assert allowed(APP, "write", topics.domain_topic("publiclighting", "request", "org-a"))
    assert allowed(APP, "read", topics.domain_topic("smartmetering", "response", "org-a"))
    assert allowed(APP, "read", topics.app_topic("org-a", "publiclighting", "result"))
    assert not allowed(APP, "write", topics.domain_topic("publiclighting", "request", "org-b"))
    assert not allowed(APP, "read", topics.app_topic("org-b", "publiclighting", "result"))
    assert not allowed(APP, "write", topics.domain_topic("publiclighting", "response", "org-a"))
    assert not allowed(APP, "write", topics.core_topic("request", "org-a"))


def test_an_app_named_like_a_concentrator_gets_nothing_of_that_concentrator() -> None:
    """Roles are per kind of account: no pattern on the username fences (or opens) anything."""
    assert not allowed(APP_NAMED_LIKE_A_CONCENTRATOR, "write", topics.concentrator_status("conc-9"))
    assert not allowed(APP_NAMED_LIKE_A_CONCENTRATOR, "read", topics.concentrator_command("conc-9"))
    assert allowed(APP_NAMED_LIKE_A_CONCENTRATOR, "read", topics.app_topic("org-a", "smartmetering", "result"))


def test_devices_and_fleets_are_fenced_to_device_topics() -> None:
    assert allowed(DEVICE, "read", topics.device_topic("light-1", "command"))
    assert allowed(DEVICE, "write", topics.device_topic("light-1", "status"))
    assert not allowed(DEVICE, "read", topics.device_topic("light-2", "command"))
    assert allowed(FLEET, "read", topics.device_topic("light-7", "command"))
    assert allowed(FLEET, "write", topics.device_topic("light-7", "response"))
    assert not allowed(FLEET, "write", topics.device_topic("light-7", "command"))
    assert not allowed(FLEET, "write", topics.concentrator_status("conc-1"))


def test_only_the_api_may_administer_accounts() -> None:
    control = "$CONTROL/dynamic-security/v1"
    assert allowed(API, "write", control) and allowed(API, "read", f"{control}/response")
    assert not any(allowed(a, "write", control) for a in ACCOUNTS if a is not API)
    assert not any(a["topic"] == ADMIN_TOPICS for a in role_acls(CLOUD))


@pytest.mark.parametrize("account", [Account(username="app.org/#", password="x", role="app"),
                                     Account(username="light+1", password="x", role="device"),
                                     Account(username="conc/#", password=None, role="concentrator"),
                                     Account(username="x", password="x", role="superuser")])
def test_an_account_that_would_open_a_hole_is_refused(account: Account) -> None:
    with pytest.raises(Invalid):
        render_dynsec([account])


def test_the_file_keeps_accounts_made_at_run_time(tmp_path) -> None:
    path = tmp_path / "dynamic-security.json"
    write_dynsec(path, [CLOUD])
    data = json.loads(path.read_text())
    data["clients"].append({"username": "made-at-run-time", "roles": [{"rolename": "concentrator:made-at-run-time"}]})
    path.write_text(json.dumps(data))
    write_dynsec(path, [CLOUD, FLEET])
    names = [c["username"] for c in json.loads(path.read_text())["clients"]]
    assert names == ["gridwire-cloud", "made-at-run-time", "fleet-lights"]
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    # A certificate-only account has no password at all.
    assert "password" not in render_dynsec([CONC])["clients"][0]
