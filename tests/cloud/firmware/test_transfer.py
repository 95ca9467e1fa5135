"""The chunk protocol over the real broker with the project's ACL: ChunkServer and Downloader."""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker.schemas.firmware import ChunkRequest, SignedManifest
from broker.session import Message, MqttSession, NegativeAckError, publish_properties
from firmware_ota.chunk_server import ChunkServer, serve_chunks, serve_request
from firmware_ota.downloader import Downloader, DownloadFailed, SignatureInvalid
from firmware_ota.signing import generate_key, key_id_of, sign
from firmware_ota.store import FirmwareStore
from gridwire.services import LocalMosquitto
from tests.firmware_ota.conftest import make_manifest

BIG = bytes((i * 7 + 3) % 251 for i in range(200_000))


def session(broker: LocalMosquitto, user: str, **options: object) -> MqttSession:
    return MqttSession(client_id=f"{user}-{uuid.uuid4().hex[:8]}", host=broker.host, port=broker.port,
                       **broker.credentials(user), **options)  # type: ignore[arg-type]


@pytest.fixture
def store(tmp_path: Path, image: bytes, signed: SignedManifest, trusted: dict[str, bytes]) -> FirmwareStore:
    store = FirmwareStore(root=tmp_path / "store")
    store.add(image=image, signed=signed, trusted=trusted)
    return store


@pytest.fixture
async def server(shared_mosquitto: LocalMosquitto, store: FirmwareStore) -> AsyncIterator[ChunkServer]:
    async with session(shared_mosquitto, "gridwire-cloud", session_expiry=0) as cloud:
        chunk_server = ChunkServer(session=cloud, store=store, group=f"fw-{uuid.uuid4().hex[:6]}")
        await chunk_server.start()
        yield chunk_server


# --- request parsing never fails the server ------------------------------------------------------

@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=st.one_of(
    st.binary(max_size=200),
    st.builds(lambda d: json.dumps(d).encode(), st.dictionaries(
        st.sampled_from(["firmwareId", "offset", "length", "other"]),
        st.one_of(st.integers(-2**70, 2**70), st.text(max_size=20), st.none(), st.floats(), st.booleans()),
        max_size=4)),
))
def test_any_payload_gets_data_or_a_named_error(store: FirmwareStore, payload: bytes) -> None:
    data, props = serve_request(store, payload)
    if "error" in props:
        assert props["error"] in ("UNKNOWN_FIRMWARE", "OUT_OF_RANGE", "BAD_REQUEST") and props["reason"]
        assert data == b""
    else:
        assert set(props) == {"firmwareId", "offset"} and 0 < len(data) <= 65536


def test_answers_name_the_problem(store: FirmwareStore, image: bytes) -> None:
    def ask(**fields: object) -> tuple[bytes, dict[str, str]]:
        return serve_request(store, json.dumps(fields).encode())

    assert ask(firmwareId="sim-meter-2.1.0", offset=10, length=5) == (image[10:15],
                                                                     {"firmwareId": "sim-meter-2.1.0", "offset": "10"})
    assert ask(firmwareId="sim-meter-2.1.0", offset=len(image) - 2, length=100)[0] == image[-2:]
    assert ask(firmwareId="nope", offset=0, length=5)[1]["error"] == "UNKNOWN_FIRMWARE"
    assert ask(firmwareId="sim-meter-2.1.0", offset=len(image), length=5)[1]["error"] == "OUT_OF_RANGE"
    refused = ask(firmwareId="sim-meter-2.1.0", offset=0, length=65537)[1]
    assert refused["error"] == "BAD_REQUEST" and "length" in refused["reason"]
    assert ask(firmwareId="../etc", offset=0, length=1)[1]["error"] == "BAD_REQUEST"
    assert ask(firmwareId="sim-meter-2.1.0", offset="0", length=1)[1]["error"] == "BAD_REQUEST"


# --- over the broker ---------------------------------------------------------------------------------

async def test_bad_requests_are_answered_and_the_server_keeps_serving(shared_mosquitto: LocalMosquitto,
                                                                    server: ChunkServer, image: bytes) -> None:
    answers: asyncio.Queue[Message] = asyncio.Queue()

    async def collect(message: Message) -> None:
        await answers.put(message)

    async with session(shared_mosquitto, "conc-1", session_expiry=0) as conc:
        await conc.subscribe("concentrator/conc-1/firmware/chunk", collect)
        for payload in (b"\xff\x00garbage", b'{"firmwareId": "nope", "offset": 0, "length": 4}',
                        b'{"firmwareId": "sim-meter-2.1.0", "offset": 4, "length": 4}'):
            await conc.publish("concentrator/conc-1/firmware/request", payload,
                               properties=publish_properties(correlation_data=payload[:8]))
        got = [await asyncio.wait_for(answers.get(), 10) for _ in range(3)]
    by_corr = {m.correlation_data: m for m in got}
    assert by_corr[b"\xff\x00garbage"[:8]].user_properties["error"] == "BAD_REQUEST"
    errors = sorted(m.user_properties.get("error", "") for m in got)
    assert errors == ["", "BAD_REQUEST", "UNKNOWN_FIRMWARE"]
    assert next(m for m in got if not m.user_properties.get("error")).payload == image[4:8]
    assert server.errors_sent == 2 and server.chunks_served == 1


async def test_a_concentrator_cannot_request_on_another_ones_subtree(shared_mosquitto: LocalMosquitto) -> None:
    async with session(shared_mosquitto, "conc-1", session_expiry=0) as conc:
        with pytest.raises(NegativeAckError) as refused:
            await conc.publish("concentrator/conc-2/firmware/request", b"{}",
                               properties=publish_properties(correlation_data=b"x"))
        assert refused.value.reason_code == 0x87
        # The subscription itself is refused (SUBACK 0x87), not just filtered on delivery.
        got: asyncio.Queue[Message] = asyncio.Queue()

        async def collect(message: Message) -> None:
            await got.put(message)

        with pytest.raises(NegativeAckError) as refused:
            await conc.subscribe("concentrator/conc-2/firmware/chunk", collect)
        assert refused.value.reason_code == 0x87
        await conc.subscribe("concentrator/conc-1/firmware/chunk", collect)
        async with session(shared_mosquitto, "gridwire-cloud", session_expiry=0) as cloud:
            await cloud.publish("concentrator/conc-2/firmware/chunk", b"secret")
            await cloud.publish("concentrator/conc-1/firmware/chunk", b"mine")
            first = await asyncio.wait_for(got.get(), 10)
        assert first.topic == "concentrator/conc-1/firmware/chunk" and got.empty()


async def test_many_concurrent_fetches_download_the_image_once(shared_mosquitto: LocalMosquitto, tmp_path: Path,
                                                               keypair: tuple[bytes, bytes],
                                                               trusted: dict[str, bytes]) -> None:
    store = FirmwareStore(root=tmp_path / "store")
    signed = sign(make_manifest(BIG, firmware_id="big-1"), keypair[0])
    store.add(image=BIG, signed=signed, trusted=trusted)
    async with session(shared_mosquitto, "gridwire-cloud", session_expiry=0) as cloud, \
            session(shared_mosquitto, "conc-2", session_expiry=0) as conc:
        chunk_server = ChunkServer(session=cloud, store=store, group=f"fw-{uuid.uuid4().hex[:6]}")
        await chunk_server.start()
        downloader = Downloader(session=conc, concentrator_id="conc-2", cache_dir=tmp_path / "cache",
                                trusted=trusted, chunk_size=16384, window=3, request_timeout=5)
        await downloader.start()
        paths = await asyncio.gather(*(downloader.fetch(signed) for _ in range(8)))
        assert len(set(paths)) == 1 and paths[0].read_bytes() == BIG
        assert paths[0].name == hashlib.sha256(BIG).hexdigest() + ".bin"
        assert chunk_server.chunks_served == 13 and downloader.downloads == 1  # ceil(200000 / 16384)
        assert chunk_server.bytes_by_concentrator == {"conc-2": len(BIG)}
        assert await downloader.fetch(signed) == paths[0]
        assert chunk_server.chunks_served == 13 and downloader.cache_hits == 1
        assert not list((tmp_path / "cache").glob("*.part"))


async def test_signature_checked_before_any_request(shared_mosquitto: LocalMosquitto, tmp_path: Path,
                                                    server: ChunkServer, signed: SignedManifest,
                                                    trusted: dict[str, bytes]) -> None:
    _, other_public = generate_key()
    forged = SignedManifest(manifest=signed.manifest.model_copy(update={"version": "6.6.6"}),
                            key_id=signed.key_id, signature=signed.signature)
    async with session(shared_mosquitto, "conc-3", session_expiry=0) as conc:
        stranger = Downloader(session=conc, concentrator_id="conc-3", cache_dir=tmp_path / "cache",
                              trusted={key_id_of(other_public): other_public}, request_timeout=2)
        trusting = Downloader(session=conc, concentrator_id="conc-3", cache_dir=tmp_path / "cache",
                              trusted=trusted, request_timeout=2)
        await trusting.start()
        with pytest.raises(SignatureInvalid, match="unknown signing key"):
            await stranger.fetch(signed)
        with pytest.raises(SignatureInvalid, match="bad signature"):
            await trusting.fetch(forged)
    assert server.chunks_served == 0 and server.errors_sent == 0
    assert stranger.chunks_requested == 0 and trusting.chunks_requested == 0


async def test_tampered_image_is_refused_and_not_cached(shared_mosquitto: LocalMosquitto, tmp_path: Path,
                                                        store: FirmwareStore, server: ChunkServer,
                                                        signed: SignedManifest, trusted: dict[str, bytes]) -> None:
    # Someone changes the stored bytes behind the store's back (same size, other content).
    path = store.image_path(signed.manifest.firmware_id)
    tampered = bytearray(path.read_bytes())
    tampered[100] ^= 0xFF
    path.write_bytes(bytes(tampered))
    async with session(shared_mosquitto, "conc-3", session_expiry=0) as conc:
        downloader = Downloader(session=conc, concentrator_id="conc-3", cache_dir=tmp_path / "cache",
                                trusted=trusted, request_timeout=5)
        await downloader.start()
        with pytest.raises(SignatureInvalid, match="sha256"):
            await downloader.fetch(signed)
    assert list((tmp_path / "cache").iterdir()) == []


async def test_unknown_firmware_fails_the_download_with_the_servers_reason(
        shared_mosquitto: LocalMosquitto, tmp_path: Path, server: ChunkServer, keypair: tuple[bytes, bytes],
        trusted: dict[str, bytes]) -> None:
    signed = sign(make_manifest(b"never stored", firmware_id="ghost-1"), keypair[0])
    async with session(shared_mosquitto, "conc-3", session_expiry=0) as conc:
        downloader = Downloader(session=conc, concentrator_id="conc-3", cache_dir=tmp_path / "cache",
                                trusted=trusted, request_timeout=5)
        await downloader.start()
        with pytest.raises(DownloadFailed, match="UNKNOWN_FIRMWARE") as caught:
            await downloader.fetch(signed)
    assert caught.value.code == "DOWNLOAD_FAILED"


# --- several chunks per request --------------------------------------------------------------------

def test_a_multi_chunk_request_is_answered_chunk_by_chunk_up_to_the_image_end(store: FirmwareStore,
                                                                             image: bytes) -> None:
    firmware_id = next(iter(m.manifest.firmware_id for m in store.list()))
    length = 1000
    offset = len(image) - 2 * length - 10  # two whole chunks, a short one, then past the end
    payload = json.dumps({"firmwareId": firmware_id, "offset": offset, "length": length, "count": 5}).encode()
    answers = serve_chunks(store, payload)
    assert [props["offset"] for _, props in answers] == [str(offset), str(offset + length), str(offset + 2 * length)]
    assert b"".join(data for data, _ in answers) == image[offset:]
    assert ChunkRequest(firmware_id="f-1", offset=0, length=10).to_wire() == \
        b'{"firmwareId":"f-1","offset":0,"length":10}'  # count 1 reads as before count existed


class LossyChunkServer(ChunkServer):
    """Loses one chunk answer the first time it serves it; can refuse multi-chunk requests as old servers did."""

    def __init__(self, *, lose_offset: int, refuse_count: bool = False, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.lose_offset: int | None = lose_offset
        self.refuse_count = refuse_count
        self.requests: list[dict[str, int]] = []

    def answers(self, payload: bytes) -> list[tuple[bytes, dict[str, str]]]:
        body = json.loads(payload)
        self.requests.append({"offset": body["offset"], "count": body.get("count", 1)})
        if self.refuse_count and "count" in body:
            return [(b"", {"error": "BAD_REQUEST", "reason": "count: Extra inputs are not permitted"})]
        answers = super().answers(payload)
        kept = [(d, p) for d, p in answers if p.get("offset") != str(self.lose_offset)]
        if len(kept) < len(answers):
            self.lose_offset = None
        return kept


@pytest.mark.parametrize("refuse_count", [False, True], ids=["lost-answer", "old-server"])
async def test_batched_download_asks_again_only_for_what_is_missing(
        shared_mosquitto: LocalMosquitto, tmp_path: Path, keypair: tuple[bytes, bytes], trusted: dict[str, bytes],
        refuse_count: bool) -> None:
    store = FirmwareStore(root=tmp_path / "store")
    signed = sign(make_manifest(BIG, firmware_id="big-2"), keypair[0])
    store.add(image=BIG, signed=signed, trusted=trusted)
    async with session(shared_mosquitto, "gridwire-cloud", session_expiry=0) as cloud, \
            session(shared_mosquitto, "conc-2", session_expiry=0) as conc:
        chunk_server = LossyChunkServer(session=cloud, store=store, group=f"fw-{uuid.uuid4().hex[:6]}",
                                        lose_offset=5 * 16384, refuse_count=refuse_count)
        await chunk_server.start()
        downloader = Downloader(session=conc, concentrator_id="conc-2", cache_dir=tmp_path / "cache",
                                trusted=trusted, chunk_size=16384, window=2, batch=4, request_timeout=0.5)
        await downloader.start()
        path = await downloader.fetch(signed)
    assert path.read_bytes() == BIG and downloader.retries == 1
    requests = chunk_server.requests
    if refuse_count:
        # Each worker's 4-chunk request refused, then one chunk per request for all 13.
        assert sorted((r["offset"], r["count"]) for r in requests if r["count"] > 1) == [(0, 4), (65536, 4)]
        singles = [r["offset"] for r in requests if r["count"] == 1]
        assert sorted(set(singles)) == [n * 16384 for n in range(13)] and singles.count(5 * 16384) == 2
    else:
        # 13 chunks in runs of 4 (4 requests); the lost chunk alone asked again, nothing else.
        assert [(r["offset"], r["count"]) for r in requests[4:]] == [(5 * 16384, 1)]
        assert sorted((r["offset"], r["count"]) for r in requests[:4]) == \
            [(0, 4), (65536, 4), (131072, 4), (196608, 1)]
    # Published bytes (the lost answer was never published): every chunk exactly once.
    assert chunk_server.bytes_by_concentrator == {"conc-2": len(BIG)}
