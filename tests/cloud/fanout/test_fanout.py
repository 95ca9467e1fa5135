"""Issue 19: apps subscribe to their meters' live readings. Real Mosquitto (dynamic security, the
apps' own accounts), a real ingest process and a real fan-out process, influxd and a SQLite
registry: each organisation's app receives, once stored, exactly the readings of the meters it
may read; another organisation's subtree is refused (0x87); a revoked authorisation stops the
stream; recovered readings are marked historical; a killed fan-out loses nothing of a durable
app's view."""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from broker import topics
from broker.schemas import SEQ_PROPERTY, seq_list
from broker.session import Message, MqttSession, NegativeAckError, publish_properties
from cloud.registry import Registry
from cloud.registry.functions import FunctionGroup
from cloud.registry.schemas import OrganisationCreate
from cloud.store.influx import InfluxStore
from gridwire.procs import ManagedProcess
from tests.cloud.ingest.rig import ROOT, IngestProcess, registered_fleet
from tests.factories import reading
from tests.fixtures.waiting import wait_for, wait_until

ORG_A, ORG_B = "org-a", "org-b"
REFRESH = 0.5  # GRIDWIRE_FANOUT_ACCESS_REFRESH_SECONDS in these tests


class FanoutProcess:
    """``gridwire cloud fanout`` in its own process, with a stable MQTT client id."""

    def __init__(self, *, mosquitto, influxd, database: str, registry: str, directory: Path,
                 client_id: str = "fanout-1", env: dict[str, str] | None = None) -> None:
        self.log = directory / f"{client_id}.log"
        self._starts = 0
        self.process = ManagedProcess(
            argv=[sys.executable, "-m", "gridwire.cli", "cloud", "fanout"], log=self.log, cwd=ROOT,
            env={"GRIDWIRE_MQTT_HOST": mosquitto.host, "GRIDWIRE_MQTT_PORT": str(mosquitto.port),
                 "GRIDWIRE_MQTT_USERNAME": "gridwire-cloud",
                 "GRIDWIRE_MQTT_PASSWORD": mosquitto.credentials("gridwire-cloud")["password"],
                 "GRIDWIRE_MQTT_CLIENT_ID": client_id, "GRIDWIRE_INFLUX_URL": influxd.url,
                 "GRIDWIRE_INFLUX_DATABASE": database, "GRIDWIRE_DATABASE_URL": registry,
                 "GRIDWIRE_FANOUT_ACCESS_REFRESH_SECONDS": str(REFRESH), **(env or {})})

    def start(self) -> None:
        self._starts += 1
        self.process.start()

        def subscribed() -> bool:
            text = self.log.read_text(errors="replace") if self.log.exists() else ""
            assert self.process.running, f"fan-out exited:\n{text[-3000:]}"
            return text.count("republishing stored readings") >= self._starts

        wait_until(subscribed, timeout=30, what="the fan-out to subscribe")

    def log_count(self, text: str) -> int:
        return (self.log.read_text(errors="replace") if self.log.exists() else "").count(text)


@dataclass
class App:
    """An organisation's app on its own broker account, recording what it receives."""

    org: str
    session: MqttSession
    received: list[tuple[str, dict, dict[str, str], bool]] = field(default_factory=list)

    async def on_message(self, message: Message) -> None:
        self.received.append((message.topic, json.loads(message.payload), message.user_properties, message.retain))

    def readings(self, meter: str | None = None) -> list[dict]:
        return [body for topic, body, _props, _retain in self.received
                if meter is None or topic == topics.app_reading(self.org, meter)]

    def ids(self, meter: str | None = None) -> list[str]:
        return [body["meterReadingIdentifier"] for body in self.readings(meter)]


def app_session(mosquitto, org: str, *, client_id: str | None = None, durable: bool = False) -> MqttSession:
    return MqttSession(client_id=client_id or f"app-{org}-{uuid.uuid4().hex[:6]}", host=mosquitto.host,
                       port=mosquitto.port, session_expiry=3600 if durable else 0,
                       **mosquitto.credentials(f"app.{org}"))


@dataclass
class Rig:
    registry: str
    ingest: IngestProcess
    fanout: FanoutProcess
    store: InfluxStore
    concentrator: MqttSession
    seq: itertools.count = field(default_factory=lambda: itertools.count(1))

    async def send(self, meter: str, index: int, *, historical: bool = False, property_id: str | None = None) -> str:
        """One reading per message (the live shape), as a concentrator forwards it; its id."""
        one = reading(meter, index)
        if historical:
            one = one.model_copy(update={"historical": True})
        if property_id is not None:
            value = one.property_values[0]
            renamed = value.model_copy(update={"operational_property": value.operational_property.model_copy(
                update={"property_id": property_id})})
            one = one.model_copy(update={"property_values": [renamed]})
        kind = topics.ReadingTopic.HISTORICAL if historical else topics.ReadingTopic.METER_READING
        await self.concentrator.publish(topics.concentrator_meter_message("conc-1", meter, kind),
                                        one.model_dump_json(by_alias=True, exclude_none=True).encode(), qos=1,
                                        properties=publish_properties(user_properties={SEQ_PROPERTY: str(next(self.seq))}))
        return str(one.meter_reading_identifier)

    async def send_batch(self, sent: list[tuple[str, int]], *, refused: tuple[str, int] | None = None) -> list[str]:
        """Readings of several meters as a concentrator's live batch (one message, a seq each),
        and ``refused``'s reading with a property ingest refuses; the ids of the others."""
        ones = [reading(meter, index) for meter, index in sent]
        bodies = [one.model_dump_json(by_alias=True, exclude_none=True).encode() for one in ones]
        if refused is not None:
            bodies.append(reading(*refused).model_dump_json(by_alias=True, exclude_none=True).replace(
                "OBIS_1.8.1", "NOT_IN_THE_CATALOGUE").encode())
        seqs = [next(self.seq) for _ in bodies]
        await self.concentrator.publish(topics.concentrator_reading_batch("conc-1"),
                                        b'{"meterReadings":[%s]}' % b",".join(bodies), qos=1,
                                        properties=publish_properties(user_properties={SEQ_PROPERTY: seq_list(seqs)}))
        return [str(one.meter_reading_identifier) for one in ones]


@pytest.fixture
async def rig(mosquitto, influxd, influx_db, tmp_path) -> AsyncIterator[Rig]:
    url = f"sqlite+aiosqlite:///{tmp_path}/registry.sqlite"
    await registered_fleet(url, {"conc-1": ["m1", "m2", "m3"]})
    async with Registry(url=url) as registry:
        for org in (ORG_A, ORG_B):
            await registry.add_organisation(OrganisationCreate(identification=org, name=org))
        # org-a may read m1 (owner) and m2 (monitoring); org-b m2 (ad hoc); m3's installer reads nothing.
        await registry.grant("m1", ORG_A, FunctionGroup.OWNER)
        await registry.grant("m2", ORG_A, FunctionGroup.MONITORING)
        await registry.grant("m2", ORG_B, FunctionGroup.AD_HOC)
        await registry.grant("m3", ORG_B, FunctionGroup.INSTALLATION)
    ingest = IngestProcess(mosquitto=mosquitto, influxd=influxd, database=influx_db, client_id="ingest-fanout",
                           directory=tmp_path, registry=url)
    fanout = FanoutProcess(mosquitto=mosquitto, influxd=influxd, database=influx_db, registry=url,
                           # Few readings held at once: confirmations must still get through (they
                           # come at QoS 0, outside the receive maximum the held readings fill).
                           directory=tmp_path, env={"GRIDWIRE_FANOUT_RECEIVE_MAXIMUM": "10",
                                                    "GRIDWIRE_FANOUT_CONFIRM_WAIT": "5",
                                                    "GRIDWIRE_FANOUT_RETAINED": json.dumps([ORG_A]),
                                                    "GRIDWIRE_FANOUT_PROPERTIES": json.dumps({ORG_B: ["OBIS_1.8.1"]})})
    await asyncio.gather(asyncio.to_thread(ingest.start), asyncio.to_thread(fanout.start))
    store = InfluxStore(url=influxd.url, database=influx_db)
    concentrator = MqttSession(client_id=f"conc-1-{uuid.uuid4().hex[:6]}", host=mosquitto.host, port=mosquitto.port,
                               **mosquitto.credentials("conc-1"))
    await concentrator.connect()
    try:
        yield Rig(registry=url, ingest=ingest, fanout=fanout, store=store, concentrator=concentrator)
    finally:
        await concentrator.close()
        await store.aclose()
        ingest.stop()
        fanout.process.stop()


async def test_each_organisation_receives_the_readings_of_its_meters_once_stored(rig, mosquitto):
    apps = {org: App(org, app_session(mosquitto, org)) for org in (ORG_A, ORG_B)}
    stored_when_received: list[bool] = []

    async def check_stored(message: Message) -> None:
        found = await rig.store.find_reading(json.loads(message.payload)["meterReadingIdentifier"])
        stored_when_received.append(found is not None)
        await apps[ORG_A].on_message(message)

    for org, app in apps.items():
        await app.session.connect()
        await app.session.subscribe(topics.app_subtree(org), check_stored if org == ORG_A else app.on_message)
    try:
        # Another organisation's subtree, or the concentrators' readings: refused by the broker.
        for forbidden in (topics.app_subtree(ORG_B), topics.ALL_METER_MESSAGES, "app/+/metering/reading/+"):
            with pytest.raises(NegativeAckError) as refused:
                await apps[ORG_A].session.subscribe(forbidden, apps[ORG_A].on_message)
            assert refused.value.reason_code == 0x87, forbidden
        # A reading ingest dead-letters (a property the OMDP catalogue does not know) is not republished.
        refused = await rig.send("m1", 50, property_id="NOT_IN_THE_CATALOGUE")
        sent = {meter: [await rig.send(meter, i) for i in range(3)] for meter in ("m1", "m2", "m3")}
        recovered = await rig.send("m1", 100, historical=True)
        # A concentrator's live batch: each reading reaches its meter's app topic as a live one;
        # the one ingest refuses does not.
        batched = await rig.send_batch([("m1", 10), ("m2", 10), ("m3", 10)], refused=("m1", 51))
        for meter, rid in zip(("m1", "m2", "m3"), batched, strict=True):
            sent[meter].append(rid)
        await wait_for(lambda: len(apps[ORG_A].received) == 9 and len(apps[ORG_B].received) == 4, timeout=60,
                       what="org-a's 9 and org-b's 4 readings")
        a, b = apps[ORG_A], apps[ORG_B]
        # Each once; in the order ingest confirmed them, which need not be the order sent.
        assert sorted(a.ids("m1")) == sorted([*sent["m1"], recovered]) and sorted(a.ids("m2")) == sorted(sent["m2"])
        assert sorted(b.ids("m2")) == sorted(sent["m2"]) and b.ids("m1") == [] and b.ids("m3") == [] == a.ids("m3")
        assert all(stored_when_received), "a reading reached an app before it was stored"
        assert refused not in a.ids() and rig.fanout.log_count("not in the OMDP catalogue") == 2
        # The payload is the OMDP MeterReading; a recovered one says so, in the payload and a property.
        historical = {body["meterReadingIdentifier"]: (body["historical"], props.get("historical"))
                      for _t, body, props, _r in a.received}
        assert historical == {**{rid: (False, None) for rid in sent["m1"] + sent["m2"]}, recovered: (True, "true")}
        # org-b asked for energy only: its apps get that property alone.
        assert {tuple(v["operationalPropertyDefinition"]["propertyId"] for v in body["propertyValues"])
                for body in b.readings()} == {("OBIS_1.8.1",)}
        assert len(a.readings("m1")[0]["propertyValues"]) == 2
    finally:
        for app in apps.values():
            await app.session.close()
    # org-a keeps a retained last live value per meter: an app starting now gets it at once.
    late = App(ORG_A, app_session(mosquitto, ORG_A))
    async with late.session:
        await late.session.subscribe(topics.app_readings(ORG_A), late.on_message)
        await wait_for(lambda: len(late.received) == 2, timeout=10, what="the retained values of m1 and m2")
        assert {(topic, body["meterReadingIdentifier"], retain) for topic, body, _p, retain in late.received} == {
            (topics.app_reading(ORG_A, "m1"), sent["m1"][-1], True),
            (topics.app_reading(ORG_A, "m2"), sent["m2"][-1], True)}


async def test_revoking_an_authorisation_stops_the_stream_within_the_refresh(rig, mosquitto):
    app = App(ORG_B, app_session(mosquitto, ORG_B))
    async with app.session:
        await app.session.subscribe(topics.app_subtree(ORG_B), app.on_message)
        first = await rig.send("m2", 0)
        await wait_for(lambda: app.ids() == [first], timeout=30, what="org-b's first m2 reading")
        views = rig.fanout.log_count("reading access changed")
        async with Registry(url=rig.registry) as registry:
            assert await registry.revoke("m2", ORG_B, FunctionGroup.AD_HOC)
        # The fan-out reads the registry again every REFRESH seconds (the documented bound).
        await wait_for(lambda: rig.fanout.log_count("reading access changed") > views, timeout=10 * REFRESH + 10,
                       what="the fan-out to see the revocation")
        # Readings sent from then on do not reach org-b; org-a (monitoring) still gets them.
        watcher = App(ORG_A, app_session(mosquitto, ORG_A))
        async with watcher.session:
            await watcher.session.subscribe(topics.app_readings(ORG_A), watcher.on_message)
            later = [await rig.send("m2", i) for i in range(1, 6)]
            await wait_for(lambda: set(later) <= set(watcher.ids("m2")), timeout=30, what="org-a's m2 readings")
        assert not set(later) & set(app.ids()), "org-b still received m2 after its authorisation was revoked"


async def test_a_fanout_killed_mid_stream_loses_nothing_of_a_durable_apps_view(rig, mosquitto):
    app = App(ORG_A, app_session(mosquitto, ORG_A, client_id="app-org-a-durable", durable=True))
    await app.session.connect()
    await app.session.subscribe(topics.app_readings(ORG_A), app.on_message)
    try:
        sent = [await rig.send("m1", i) for i in range(100)]
        await wait_for(lambda: len(app.received) >= 20, timeout=60, what="the first readings to reach the app")
        rig.fanout.process.kill()
        sent += [await rig.send("m1", i) for i in range(100, 200)]
        await asyncio.to_thread(rig.fanout.start)  # the same client id: it resumes its session
        await wait_for(lambda: set(sent) <= set(app.ids("m1")), timeout=90, what="every reading at the app")
    finally:
        await app.session.close()
    ids = app.ids("m1")
    # QoS 1 end to end: at least once. A repeat is a message the killed process had published
    # but not acknowledged; it carries the same reading id, and there are few.
    assert set(ids) == set(sent)
    assert len(ids) - len(set(ids)) <= 100


async def test_an_offline_app_loses_its_oldest_values_when_they_expire_and_ingest_is_not_held_back(
        mosquitto, influxd, influx_db, tmp_path):
    """GRIDWIRE_FANOUT_MESSAGE_EXPIRY bounds what waits for an offline durable app: readings
    older than it are gone from its queue when it returns, newer ones are there; ingest
    confirmed every reading meanwhile."""
    url = f"sqlite+aiosqlite:///{tmp_path}/registry.sqlite"
    await registered_fleet(url, {"conc-1": ["m1"]})
    async with Registry(url=url) as registry:
        await registry.add_organisation(OrganisationCreate(identification=ORG_A, name=ORG_A))
        await registry.grant("m1", ORG_A, FunctionGroup.OWNER)
    expiry = 2
    ingest = IngestProcess(mosquitto=mosquitto, influxd=influxd, database=influx_db, client_id="ingest-expiry",
                           directory=tmp_path, registry=url)
    fanout = FanoutProcess(mosquitto=mosquitto, influxd=influxd, database=influx_db, registry=url,
                           directory=tmp_path, env={"GRIDWIRE_FANOUT_MESSAGE_EXPIRY": str(expiry)})
    await asyncio.gather(asyncio.to_thread(ingest.start), asyncio.to_thread(fanout.start))
    store = InfluxStore(url=influxd.url, database=influx_db)
    concentrator = MqttSession(client_id=f"conc-1-{uuid.uuid4().hex[:6]}", host=mosquitto.host, port=mosquitto.port,
                               **mosquitto.credentials("conc-1"))
    await concentrator.connect()
    rig = Rig(registry=url, ingest=ingest, fanout=fanout, store=store, concentrator=concentrator)
    try:
        offline = App(ORG_A, app_session(mosquitto, ORG_A, client_id="app-org-a-away", durable=True))
        async with offline.session:  # subscribe once, then go away: the broker queues for it
            await offline.session.subscribe(topics.app_readings(ORG_A), offline.on_message)
        watcher = App(ORG_A, app_session(mosquitto, ORG_A))
        async with watcher.session:
            await watcher.session.subscribe(topics.app_readings(ORG_A), watcher.on_message)
            old = [await rig.send("m1", i) for i in range(5)]
            await wait_for(lambda: set(old) <= set(watcher.ids()), timeout=30, what="the old readings published")
            published = asyncio.get_running_loop().time()
            # The expiry is what is under test: let it pass for the old readings.
            await wait_for(lambda: asyncio.get_running_loop().time() > published + expiry + 1, timeout=expiry + 5,
                           what="the old readings' expiry")
            new = [await rig.send("m1", i) for i in range(5, 10)]
            await wait_for(lambda: set(new) <= set(watcher.ids()), timeout=30, what="the new readings published")
        back = App(ORG_A, app_session(mosquitto, ORG_A, client_id="app-org-a-away", durable=True))
        async with back.session:
            await back.session.subscribe(topics.app_readings(ORG_A), back.on_message)
            await wait_for(lambda: set(new) <= set(back.ids()), timeout=30, what="the queued new readings")
        assert not set(old) & set(back.ids()), "expired readings were still delivered"
        for reading_id in old + new:  # every one stored all the same: the app catches up through the API
            assert await store.find_reading(reading_id) is not None
    finally:
        await concentrator.close()
        await store.aclose()
        ingest.stop()
        fanout.process.stop()
