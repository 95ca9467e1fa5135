"""Input the web API must refuse with a clear 4xx and its reason, never a 500, a 503 or a store's
parser text: NaN and Infinity in any JSON body, offsets and pages past 64 bits, bodies over the
limit, control characters in meter ids; and what it must accept: dates anywhere in the calendar,
numbers written with exponents. Each case against the real app on uvicorn with a real influxd
(the platform's registry-backed routes also with a real Mosquitto with dynamic security), and
each refusal checked to have changed nothing."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta

import httpx
import pytest

from cloud.api import create_app
from cloud.api.openapi import REFUSAL_REF
from cloud.auth import issue_token
from cloud.registry import OrganisationCreate, PlatformRole, Registry
from cloud.settings import InfluxSettings
from cloud.store import InfluxStore
from gridwire.apidocs import openapi_json
from tests.cloud.api.conftest import SECRET, Clock, make_settings
from tests.cloud.api.test_provisioning import ADMIN, bearer, platform
from tests.cloud.core.harness import serve
from tests.cloud.store.factories import T0, series
from tests.fixtures.influx import InfluxServer
from tests.fixtures.mosquitto import TlsMosquitto

METERS = ["m-1", "m-2"]
LIMIT = 64 * 1024  # the body limit of these tests' OMDP app


def window(**extra: object) -> dict:
    return {"readingTimeStart": T0.isoformat(), "readingTimeEnd": (T0 + timedelta(days=1)).isoformat(), **extra}


@pytest.fixture
async def omdp(influxd: InfluxServer, influx_db: str) -> AsyncIterator[httpx.AsyncClient]:
    """The OMDP app on uvicorn over 30 readings (15 per meter), as a platform administrator."""
    settings = make_settings(influx=InfluxSettings(url=influxd.url, database=influx_db), max_body_bytes=LIMIT)
    async with InfluxStore(url=influxd.url, database=influx_db) as store:
        await store.write_readings(series(METERS, 15))  # energy 100..114, power 0..6 per meter
        token = issue_token(secret=SECRET, org="ops", scopes=["admin"], now=Clock()())
        async with serve(create_app(settings=settings, store=store)) as base, \
                httpx.AsyncClient(base_url=base, timeout=30, headers={"Authorization": f"Bearer {token}"}) as http:
            yield http


async def _post_raw(http: httpx.AsyncClient, path: str, content: bytes | str) -> httpx.Response:
    return await http.post(path, content=content, headers={"Content-Type": "application/json"})


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
async def test_nan_or_infinity_in_a_query_body_is_a_422_with_the_reason(omdp, constant):
    body = json.dumps(window(operationalProperties=[{"propertyId": "OBIS_1.8.1", "numericalValueGreaterThan": 1}]))
    answer = await _post_raw(omdp, "/v1/meterReadings", body.replace('"numericalValueGreaterThan": 1',
                                                                     f'"numericalValueGreaterThan": {constant}'))
    assert answer.status_code == 422, answer.text
    assert "NaN or Infinity" in answer.json()["detail"]
    # Inside a string it is only text.
    text = await omdp.post("/v1/meterReadings", json=window(
        operationalProperties=[{"propertyId": "OBIS_0.0.96.13.0", "textValueEqualTo": constant}]))
    assert text.status_code == 422 and "privacy" in text.json()["detail"]


async def test_a_refused_input_is_not_echoed_when_large(omdp):
    answer = await omdp.post("/v1/meterReadings", json=window(meterIndividualIds=["m" * 40_000]))
    assert answer.status_code == 422
    assert len(answer.content) < 2_000
    [problem] = answer.json()["detail"]
    assert problem["loc"] == ["body", "meterIndividualIds", 0] and "at most 128 characters" in problem["msg"]
    assert "input" not in problem
    short = await omdp.post("/v1/meterReadings", json=window(pageSize="ten"))
    assert short.json()["detail"][0]["input"] == "ten"


async def test_a_body_over_the_limit_is_a_413_with_the_limit_and_no_retry(omdp):
    twenty_mb = json.dumps(window(meterIndividualIds=["m" * 20_000_000]))
    answer = await _post_raw(omdp, "/v1/meterReadings", twenty_mb)
    assert answer.status_code == 413, answer.text[:300]
    assert answer.json() == {"detail": f"the request body is larger than the {LIMIT} bytes this API accepts here"}
    assert "retry-after" not in answer.headers

    async def streamed() -> AsyncIterator[bytes]:  # no Content-Length: counted as it arrives
        for _ in range(4):
            yield b" " * (LIMIT // 2)

    chunked = await omdp.post("/v1/meterReadings", content=streamed(), headers={"Content-Type": "application/json"})
    assert chunked.status_code == 413
    # Just under the limit is read and answered as usual.
    padded = json.dumps(window()).encode().ljust(LIMIT - 1)
    assert (await _post_raw(omdp, "/v1/meterReadings", padded)).status_code == 200


async def test_a_meter_id_with_a_control_character_is_a_422_not_a_store_error(omdp):
    for meter in ("m-1\n", "m-1\r", "m\x7f1", "m/1"):
        answer = await omdp.post("/v1/meterReadings", json=window(meterIndividualIds=[meter]))
        assert answer.status_code == 422, answer.text
        [problem] = answer.json()["detail"]
        assert problem["loc"] == ["body", "meterIndividualIds", 0] and "pattern" in problem["msg"]
        assert "InfluxDB" not in answer.text
    nul = await omdp.post("/v1/meterReadings", json=window(meterIndividualIds=["m\x00-1"]))
    assert nul.status_code == 422 and "NUL character" in nul.json()["detail"]


async def test_dates_anywhere_in_the_calendar_select_what_is_stored(omdp):
    answer = await omdp.post("/v1/meterReadings", json={"readingTimeStart": "0001-01-01T00:00:00Z",
                                                        "readingTimeEnd": "9999-12-31T23:59:59Z"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["totalRows"] == 30
    before = await omdp.post("/v1/meterReadings", json={"readingTimeStart": "0001-01-01T00:00:00Z",
                                                        "readingTimeEnd": "1600-01-01T00:00:00+05:00"})
    assert before.status_code == 422 and "privacy" in before.json()["detail"]  # none there, refused as too few


async def test_numbers_written_with_exponents_are_valid_filters(omdp):
    async def total(**condition: object) -> int:
        answer = await _post_raw(omdp, "/v1/meterReadings", json.dumps(window(
            operationalProperties=[{"propertyId": "OBIS_1.8.1", **condition}])).replace('"@', "").replace('@"', ""))
        assert answer.status_code in (200, 422), answer.text
        return answer.json()["totalRows"] if answer.status_code == 200 else 0

    # Raw JSON numbers as a client writes them: 1e-07, 1.05E2, 1e+300.
    assert await total(numericalValueGreaterThan="@1e-07@") == 30
    assert await total(numericalValueGreaterThan="@1.03E2@") == 22  # 104..114 of each meter
    assert await total(numericalValueLessThan="@1e+300@") == 30
    assert await total(numericalValueGreaterThan="@-1.7976931348623157e308@") == 30


@pytest.mark.parametrize("path", [
    "/v1/deadLetters?offset=9223372036854775808",
    "/v1/deadLetters?offset=99999999999999999999999",
])
async def test_offsets_past_64_bits_are_a_422(omdp, path):
    answer = await omdp.get(path)
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"][0]["loc"] == ["query", "offset"]


async def test_page_numbers_past_64_bits_are_a_422(omdp):
    answer = await omdp.post("/v1/meterReadings", json=window(pageNumber=2**63))
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["body", "pageNumber"]
    rows = await omdp.post("/v1/meterReadings", json=window(maxRows=2**64))
    assert rows.status_code == 422 and rows.json()["detail"][0]["loc"] == ["body", "maxRows"]


async def test_options_and_405_name_every_method_of_the_path(omdp):
    options = await omdp.options("/v1/meterReadings")
    assert options.status_code == 204 and options.headers["allow"] == "DELETE, OPTIONS, POST"
    refused = await omdp.put("/v1/meterReadings", json={})
    assert refused.status_code == 405 and refused.headers["allow"] == "DELETE, OPTIONS, POST"
    assert "PUT is not allowed" in refused.json()["detail"]
    assert (await omdp.options("/v1/deadLetters")).headers["allow"] == "GET, OPTIONS"
    assert (await omdp.options("/v1/nowhere")).status_code == 404


# --- the platform's registry-backed routes ---------------------------------------------------


@pytest.fixture
async def platform_api(tls_mosquitto: TlsMosquitto, influxd: InfluxServer, influx_db: str,
                       postgres_url: str) -> AsyncIterator[tuple[httpx.AsyncClient, Registry]]:
    url = postgres_url  # the registry as deployed: PostgreSQL, whose text holds no NUL
    async with platform(tls_mosquitto, url, pki_dir=tls_mosquitto.pki_dir,
                        influx=InfluxSettings(url=influxd.url, database=influx_db)) as base, \
            Registry(url=url) as registry:
        await registry.add_organisation(OrganisationCreate(identification=ADMIN, name="Operator",
                                                           role=PlatformRole.ADMIN))
        async with httpx.AsyncClient(base_url=base, timeout=30, headers=bearer(ADMIN)) as http:
            yield http, registry


def _bodies_with(constant: str) -> Iterator[tuple[str, str, str]]:
    """(method, path, body) for routes of several areas, each body holding ``constant``."""
    yield "POST", "/v1/admin/organisations", f'{{"identification": "org-x", "name": "x", "extra": {constant}}}'
    yield "POST", "/v1/admin/organisations", f'{{"identification": {constant}, "name": "x"}}'
    yield "POST", "/v1/installation/devices", (f'{{"identification": "lamp-x", "deviceType": "STREET_LIGHT", '
                                               f'"protocol": "MQTT", "latitude": {constant}}}')
    yield "POST", "/v1/smartmetering/readSchedules", f'{{"intervalSeconds": {constant}}}'
    yield "PUT", "/v1/events/subscriptions/POWER_FAILURE", f'{{"mqtt": {constant}}}'


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
async def test_nan_or_infinity_in_any_json_body_is_a_422_and_changes_nothing(platform_api, constant):
    http, registry = platform_api
    before = [o.identification for o in await registry.list_organisations()]
    for method, path, body in _bodies_with(constant):
        answer = await http.request(method, path, content=body, headers={"Content-Type": "application/json"})
        assert answer.status_code == 422, (path, answer.status_code, answer.text)
        assert "NaN or Infinity" in answer.json()["detail"]
    assert [o.identification for o in await registry.list_organisations()] == before
    assert (await http.get("/v1/installation/devices")).json() == []
    made = await http.post("/v1/admin/organisations", json={"identification": "org-nan", "name": constant})
    assert made.status_code == 201 and made.json()["name"] == constant


@pytest.mark.parametrize("path", [
    "/v1/events?page=9223372036854775808",
    "/v1/installation/devices?offset=9223372036854775808",
    "/v1/campaigns/any/targets?page=9223372036854775808",
    "/v1/deadLetters?offset=18446744073709551616",
])
async def test_platform_offsets_and_pages_past_64_bits_are_a_422(platform_api, path):
    http, _ = platform_api
    answer = await http.get(path)
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"][0]["loc"][0] == "query"


async def test_a_json_body_that_is_not_utf8_is_a_422(omdp):
    answer = await _post_raw(omdp, "/v1/meterReadings", b'{"readingTimeStart": "\xff\xfe"}')
    assert answer.status_code == 422 and "not UTF-8" in answer.json()["detail"]


async def test_subscription_channels_are_true_or_false_not_numbers(platform_api):
    http, _ = platform_api
    for flag in (0, 1, "yes"):
        answer = await http.put("/v1/events/subscriptions/POWER_FAILURE", json={"mqtt": flag})
        assert answer.status_code == 422, answer.text
    assert (await http.get("/v1/events/subscriptions")).json() == []


# --- the OpenAPI document says what the API answers ------------------------------------------

PUBLIC = {("get", "/healthz"), ("post", "/v1/installation/provision")}


def test_every_protected_operation_declares_the_bearer_scheme_and_its_refusals() -> None:
    document = json.loads(openapi_json())
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            if (method, path) in PUBLIC:
                assert "security" not in operation, (method, path)
                continue
            assert operation.get("security") == [{"HTTPBearer": []}], (method, path)
            assert {"401", "403"} <= set(responses), (method, path)
            assert "WWW-Authenticate" in responses["401"]["headers"]
            if "requestBody" in operation:
                assert {"413", "422"} <= set(responses), (method, path)
            for code, response in responses.items():
                if code[0] in "45":
                    assert response["content"]["application/json"]["schema"] == {"$ref": REFUSAL_REF}
                if code == "503":
                    assert "Retry-After" in response["headers"]


async def test_platform_refusals_found_by_schemathesis_are_4xx(platform_api):
    http, registry = platform_api
    for path in ("/v1/deadLetters?since=0.5", "/v1/events?to=1e3", "/v1/devices/m-1/clockDrift?since=12"):
        answer = await http.get(path)
        assert answer.status_code == 422 and "not a number" in answer.text, (path, answer.text)
    assert (await http.get("/v1/events?from=2026-03-01T00:00:00%2B01:00")).status_code == 200
    claim = await http.post("/v1/installation/concentrators/%D8%A7%D9%84%D9%83%D9%84/claims", json={})
    assert claim.status_code == 422 and claim.json()["detail"][0]["loc"] == ["path", "cid"]
    status = await http.post("/v1/campaigns/c-1/status")
    assert status.status_code == 405 and status.headers["allow"] == "GET, OPTIONS"
    made = await http.post("/v1/admin/organisations", json={"identification": "org-0", "name": "x", "enabled": 0})
    assert made.status_code == 422
    assert "org-0" not in [o.identification for o in await registry.list_organisations()]


async def test_a_nul_anywhere_in_a_request_is_a_422_not_a_database_error(platform_api):
    http, registry = platform_api
    for method, path, body in [("GET", "/v1/installation/devices/a%00b", None),
                               ("GET", "/v1/admin/organisations/a%00b", None),
                               ("POST", "/v1/smartmetering/devices/a%00b/actualReads", None),
                               ("GET", "/v1/installation/devices?feeder=a%00b", None),
                               ("GET", "/v1/events?deviceId=a%00b", None),
                               ("GET", "/v1/organisations/a%00b/mqttClients", None),
                               ("POST", "/v1/admin/organisations", {"identification": "org-x", "name": "a\u0000b"}),
                               ("POST", "/v1/admin/organisations", {"identification": "org-x", "name": "x",
                                                                     "webhookUrl": "https://a\u0000b.example"})]:
        answer = await http.request(method, path, json=body)
        assert answer.status_code == 422, (path, answer.text)
        assert "NUL character" in answer.json()["detail"]
    assert "org-x" not in [o.identification for o in await registry.list_organisations()]
    # A backslash and the letters u0000 are text like any other.
    made = await http.post("/v1/admin/organisations", json={"identification": "org-y", "name": "a\\u0000b"})
    assert made.status_code == 201 and made.json()["name"] == "a\\u0000b"
