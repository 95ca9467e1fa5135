"""Broker accounts at run time on a real Mosquitto with the dynamic security plugin: every kind
of account is refused (MQTT 5 reason 0x87) outside its own subtree, subscriptions included,
and accounts made, disabled and deleted at run time take effect with no restart."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from broker.accounts import Account
from broker.dynsec import DynsecAccounts
from broker.session import ConnectError, MqttSession, NegativeAckError
from gridwire.services import LocalMosquitto
from tests.fixtures.mosquitto import API, APPS, CLOUD, CONCENTRATORS, DEVICES, FLEET, TlsMosquitto

NOT_AUTHORISED = 0x87
REFUSED_WITHIN = 3.0


def login(server: LocalMosquitto, account: Account, **options: object) -> MqttSession:
    return MqttSession(client_id=f"{account.username}-{uuid.uuid4().hex[:6]}", host=server.host, port=server.port,
                       username=account.username, password=account.password, session_expiry=0,
                       connect_timeout=REFUSED_WITHIN, **options)


async def _nothing(_message: object) -> None:
    return None


# (account, "pub" or "sub", topic or filter): each refused with 0x87 (PUBACK or SUBACK).
REFUSALS = [
    (APPS[0], "sub", "#"),
    (APPS[0], "sub", "app/org-b/#"),
    (APPS[0], "sub", "$share/g/app/org-b/#"),
    (APPS[0], "sub", "concentrator/+/status"),
    (APPS[0], "sub", "$share/g/concentrator/+/smartMeterMessage/+/+"),
    (APPS[0], "pub", "concentrator/app.org-a/status"),  # its own name as a concentrator id
    (APPS[0], "pub", "domain/publiclighting/request/org-b"),
    (APPS[0], "pub", "domain/publiclighting/response/org-a"),
    (APPS[0], "pub", "core/request/org-a"),
    (CONCENTRATORS[0], "sub", "#"),
    (CONCENTRATORS[0], "sub", "concentrator/conc-2/command"),
    (CONCENTRATORS[0], "pub", "concentrator/conc-2/status"),
    (CONCENTRATORS[0], "pub", "concentrator/conc-2/batch/meterReading"),  # another's live batch
    (CONCENTRATORS[0], "pub", "device/light-1/status"),
    (CONCENTRATORS[0], "pub", "domain/smartmetering/request/org-a"),
    (DEVICES[0], "sub", "#"),
    (DEVICES[0], "sub", "device/light-2/command"),
    (DEVICES[0], "pub", "device/light-2/status"),
    (FLEET, "pub", "device/light-7/command"),
    (FLEET, "pub", "concentrator/conc-1/status"),
    (FLEET, "sub", "app/org-a/#"),
    (CLOUD, "pub", "$CONTROL/dynamic-security/v1"),
    (CLOUD, "sub", "$CONTROL/dynamic-security/#"),
]


@pytest.mark.parametrize(("account", "action", "topic"), REFUSALS,
                         ids=[f"{a.username}-{act}-{t}" for a, act, t in REFUSALS])
async def test_outside_its_subtree_every_account_is_refused_with_0x87(shared_mosquitto, account, action, topic):
    async with login(shared_mosquitto, account) as session:
        with pytest.raises(NegativeAckError) as refused:
            if action == "pub":
                await session.publish(topic, b"refused")
            else:
                await session.subscribe(topic, _nothing)
        assert refused.value.reason_code == NOT_AUTHORISED


async def test_inside_its_subtree_each_kind_is_served(shared_mosquitto):
    async with login(shared_mosquitto, APPS[0]) as app:
        await app.subscribe("app/org-a/#", _nothing)
        await app.subscribe("$share/billing/app/org-a/#", _nothing)  # shared, like a scaled-out app
        await app.subscribe("domain/+/response/org-a", _nothing)
        await app.publish("domain/publiclighting/request/org-a", b"{}")
    async with login(shared_mosquitto, CONCENTRATORS[0]) as conc:
        await conc.subscribe("concentrator/conc-1/command", _nothing)
        await conc.publish("concentrator/conc-1/status", b"{}")
        await conc.publish("concentrator/conc-1/batch/meterReading", b"{}")  # its own live batch
    async with login(shared_mosquitto, FLEET) as fleet:
        await fleet.subscribe("$share/lights/device/+/command", _nothing)
    async with login(shared_mosquitto, DEVICES[0]) as device:
        await device.subscribe("device/light-1/command", _nothing)
        await device.publish("device/light-1/status", b"{}")


@pytest.fixture
async def accounts(shared_mosquitto) -> AsyncIterator[DynsecAccounts]:
    async with login(shared_mosquitto, API) as session:
        admin = DynsecAccounts(session)
        await admin.start()
        yield admin


async def test_an_app_account_made_disabled_and_deleted_at_run_time(shared_mosquitto, accounts):
    name = f"app.org-a.run-{uuid.uuid4().hex[:6]}"
    app = Account(username=name, password="first-pw", role="app", subject="org-a")
    await accounts.ensure(app)
    state = await accounts.get(name)
    assert state is not None and state.roles == ("app:org-a",) and not state.disabled
    async with login(shared_mosquitto, app) as session:
        await session.publish("domain/smartmetering/request/org-a", b"{}")
        with pytest.raises(NegativeAckError) as refused:
            await session.subscribe("app/org-b/#", _nothing)
        assert refused.value.reason_code == NOT_AUTHORISED
        await accounts.disable(name)  # disconnected at once
        assert (await accounts.get(name)).disabled
        await _until_disconnected(session)
    with pytest.raises(ConnectError):
        await _connect_once(shared_mosquitto, app)
    await accounts.ensure(Account(username=name, password="second-pw", role="app", subject="org-a"))
    with pytest.raises(ConnectError):  # the old password no longer works
        await _connect_once(shared_mosquitto, app)
    async with login(shared_mosquitto, Account(username=name, password="second-pw", role="app")) as session:
        await session.publish("domain/smartmetering/request/org-a", b"{}")
        await accounts.delete(name)
        await _until_disconnected(session)
    assert await accounts.get(name) is None
    await accounts.delete(name)  # nothing left to delete: harmless


async def test_a_certificate_with_no_account_connects_but_may_do_nothing(tls_mosquitto: TlsMosquitto, tmp_path):
    files = tls_mosquitto.ca.issue_client(tmp_path, "no-account-conc")
    from broker.session import TlsSettings

    tls = TlsSettings(ca_file=str(tls_mosquitto.ca.cert_file), cert_file=str(files.cert_file),
                      key_file=str(files.key_file))
    async with MqttSession(client_id="no-account", host="127.0.0.1", port=tls_mosquitto.tls_port, tls=tls,
                           session_expiry=0) as session:
        with pytest.raises(NegativeAckError) as published:
            await session.publish("concentrator/no-account-conc/status", b"{}")
        with pytest.raises(NegativeAckError) as subscribed:
            await session.subscribe("concentrator/no-account-conc/command", _nothing)
    assert (published.value.reason_code, subscribed.value.reason_code) == (NOT_AUTHORISED, NOT_AUTHORISED)


async def _connect_once(server: LocalMosquitto, account: Account) -> None:
    session = login(server, account)
    try:
        await session.connect()
    finally:
        await session.close()


async def _until_disconnected(session: MqttSession) -> None:
    from tests.fixtures.waiting import wait_for

    await wait_for(lambda: not session.connected.is_set(), timeout=10, what="the broker disconnecting it")


def _connack(server: LocalMosquitto, username: str | None, password: str | None) -> int:
    """The reason code of the CONNACK the broker answers a plain MQTT 5 CONNECT with (paho
    directly, so the code is the broker's own, not a wrapper's reading of it)."""
    import threading

    import paho.mqtt.client as paho

    answered = threading.Event()
    codes: list[int] = []

    def on_connect(_client, _userdata, _flags, reason_code, _properties) -> None:
        codes.append(reason_code.value)
        answered.set()

    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"connack-{uuid.uuid4().hex[:6]}",
                         protocol=paho.MQTTv5)
    client.username_pw_set(username, password)
    client.on_connect = on_connect
    client.connect(server.host, server.port)
    client.loop_start()
    try:
        assert answered.wait(REFUSED_WITHIN * 3), "no CONNACK"
    finally:
        client.disconnect()
        client.loop_stop()
    return codes[0]


SUCCESS = 0x00


async def test_every_refused_login_gets_connack_0x87(shared_mosquitto, accounts):
    """Mosquitto 2.0.11 with dynamic security answers every refused MQTT 5 login with CONNACK
    0x87 Not authorized (never 0x86 or 0x8A): a wrong password, an unknown or anonymous user, a
    disabled, revoked or deleted account all look alike to the client, so none tells an
    attacker which accounts exist. Our session's ConnectError names that reason."""
    name = f"app.org-a.gone-{uuid.uuid4().hex[:6]}"
    app = Account(username=name, password="pw-1", role="app", subject="org-a")
    await accounts.ensure(app)

    async def connack(username: str | None = name, password: str | None = "pw-1") -> int:
        return await asyncio.to_thread(_connack, shared_mosquitto, username, password)

    assert await connack() == SUCCESS
    assert await connack(password="not-pw-1") == NOT_AUTHORISED
    assert await connack(password=None) == NOT_AUTHORISED
    assert await connack(username=f"nobody-{name}") == NOT_AUTHORISED
    assert await connack(username=None, password=None) == NOT_AUTHORISED  # anonymous

    await accounts.disable(name)
    assert await connack() == NOT_AUTHORISED
    with pytest.raises(ConnectError, match="Not authorized"):
        await _connect_once(shared_mosquitto, app)
    await accounts.ensure(app)  # enabled again
    assert await connack() == SUCCESS

    await accounts.revoke(name)  # roles taken, disabled: what decommissioning does
    state = await accounts.get(name)
    assert state is not None and state.disabled and state.roles == ()
    assert await connack() == NOT_AUTHORISED

    await accounts.delete(name)
    assert await connack() == NOT_AUTHORISED
    with pytest.raises(ConnectError, match="Not authorized"):
        await _connect_once(shared_mosquitto, app)



async def test_the_api_account_administers_accounts_and_no_other_control_topic(shared_mosquitto):
    """The web API's login on a live broker. By design (broker/accounts.py) it has the cloud's
    rights (it publishes commands and domain requests) plus the dynamic security plugin's
    topics; under $CONTROL nothing else: another plugin's topics and $SYS writes are refused
    with 0x87 (and, T1, nobody but the api may write the plugin's topic)."""
    from tests.fixtures.waiting import wait_for

    answers: list[bytes] = []

    async def answer(message) -> None:
        answers.append(message.payload)

    async with login(shared_mosquitto, API) as api:
        await api.subscribe("$CONTROL/dynamic-security/v1/response", answer)
        await api.publish("$CONTROL/dynamic-security/v1", b'{"commands": [{"command": "listRoles"}]}')
        await wait_for(lambda: bool(answers), timeout=10, what="the plugin's answer to the api account")
        assert b'"listRoles"' in answers[0] and b'"error"' not in answers[0]
        await api.publish("concentrator/conc-1/command", b"{}")  # the cloud's rights
        await api.subscribe("app/+/metering/reading/+", _nothing)
        for action, topic in (("sub", "$CONTROL/#"), ("sub", "$CONTROL/broker/#"), ("sub", "$CONTROL/+/v1/response"),
                              ("sub", "$share/g/$CONTROL/#"), ("pub", "$CONTROL/broker/v1"),
                              ("pub", "$CONTROL/other-plugin/v1"), ("pub", "$SYS/broker/uptime")):
            with pytest.raises(NegativeAckError) as refused:
                if action == "pub":
                    await api.publish(topic, b"refused")
                else:
                    await api.subscribe(topic, _nothing)
            assert refused.value.reason_code == NOT_AUTHORISED, (action, topic)
