"""The operator console in a real headless Chromium (Debian's ``chromium``, driven by Playwright,
no browser download) against the demo: log in, see the demo fleet, open a meter and see its
readings drawn, switch a light and see its result, pause a campaign. Every page is screenshotted
into ``test-artefacts/console/`` (gitignored) and checked for what it must show."""

from __future__ import annotations

import contextlib
import os
import shutil
import ssl
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from gridwire.demo import CONCENTRATOR_ID, meter_id
from tests.fixtures.demo import Demo
from tests.fixtures.leaks import descendants
from tests.fixtures.waiting import wait_until

ROOT = Path(__file__).resolve().parents[1]
ARTEFACTS = ROOT / "test-artefacts" / "console"
# The chart's first series colour (static/meter-chart.js).
SERIES_RGB = (0x1F, 0x77, 0xB4)
CONSOLE_MODEL = "console-test-meter"


@pytest.fixture
def browser() -> Iterator[Browser]:
    """A headless Chromium for one test (its renderers are the test's: all gone at teardown)."""
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is needed (scripts/install.sh installs it)"
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    manager = sync_playwright()
    playwright = manager.start()
    # Playwright's event loop writes screenshots through its default executor: give it one of our
    # own, shut down (its threads joined) at teardown.
    executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="playwright-io")
    manager._loop.set_default_executor(executor)  # noqa: SLF001 - the loop sync_playwright runs
    launched = playwright.chromium.launch(executable_path=chromium,
                                          args=["--no-sandbox", "--disable-crash-reporter", "--disable-breakpad"])
    try:
        yield launched
    finally:
        launched.close()
        manager.__exit__(None, None, None)
        executor.shutdown(wait=True)
        _reap_browser()


def _reap_browser() -> None:
    """Chromium's helpers outlive it for a moment and, orphaned, become this process's children
    (the leak guard is their subreaper): wait for each to exit and reap it."""
    def gone() -> bool:
        left = [p for p in descendants() if p.command.startswith(("chrom", "chrome_crashpad"))]
        for process in left:
            if process.state == "Z":
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(process.pid, 0)
        return not left

    wait_until(gone, timeout=30, interval=0.1, what="chromium's processes to exit")


def demo_ca(demo: Demo) -> ssl.SSLContext:
    """Trust for the demo's HTTPS: its CA."""
    return ssl.create_default_context(cafile=str(demo.directory / "pki" / "ca.pem"))


@pytest.fixture
def page(browser: Browser, demo: Demo) -> Iterator[Page]:
    # The demo serves HTTPS with its own CA's certificate, which chromium has no way to be given
    # here; httpx and the CLI below check it against that CA.
    context = browser.new_context(base_url=demo.api_url, viewport={"width": 1280, "height": 900},
                                  ignore_https_errors=True)
    opened = context.new_page()
    try:
        yield opened
    finally:
        context.close()


def log_in(page: Page, token: str, target: str = "/console") -> None:
    page.goto(target)
    assert "/console/login" in page.url  # not logged in: the login form, nothing else
    page.fill("#token", token)
    page.click("#login")
    page.wait_for_url(lambda url: url.endswith(target))


def reloaded(page: Page) -> bool:
    page.reload()
    return True


def shot(page: Page, name: str) -> Path:
    path = ARTEFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000  # a page, not a blank
    return path


def test_log_in_and_see_the_demo_fleet(page: Page, demo: Demo) -> None:
    # The demo says where the console is and what to log in with.
    assert f"  console     {demo.api_url}/console" in demo.log.read_text()
    page.goto("/console/login")
    page.fill("#token", "not-a-token")
    page.click("#login")
    assert "invalid token" in page.inner_text("#login-error")
    log_in(page, demo.token)
    wait_until(lambda: reloaded(page) and page.inner_text("#concentrators-online") == "1", timeout=30,
               interval=0.5, what="the demo concentrator online")
    row = page.locator("#concentrators tr", has_text=CONCENTRATOR_ID)
    assert "ONLINE" in row.inner_text()
    assert "demo-utility" in page.inner_text("#by-organisation")
    assert "street light" in page.inner_text(".cards")
    shot(page, "overview")
    page.click(f"text={CONCENTRATOR_ID}")
    meters = page.inner_text("#meters")
    assert meter_id(0) in meters and meter_id(2000) in meters and meter_id(3000) in meters
    shot(page, "concentrator")


def test_a_meter_page_draws_its_readings(page: Page, demo: Demo) -> None:
    log_in(page, demo.token, f"/console/meters/{meter_id(0)}?hours=1")
    wait_until(lambda: reloaded(page) and int(page.get_attribute("#chart", "data-points") or 0) >= 5, timeout=30,
               interval=0.5, what="five readings of the meter stored")
    points = int(page.get_attribute("#chart", "data-points") or 0)
    page.wait_for_selector("#chart[data-drawn]")
    assert int(page.get_attribute("#chart", "data-drawn")) == points
    assert "OBIS_1.8.1" in page.inner_text("#latest")
    # Pixels of the first series' colour in the chart's canvas: its line and points were drawn.
    drawn = page.evaluate("""([r, g, b]) => {
        const canvas = document.querySelector('#chart canvas');
        const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
        let hits = 0;
        for (let i = 0; i < data.length; i += 4) {
            if (Math.abs(data[i] - r) < 30 && Math.abs(data[i + 1] - g) < 30 && Math.abs(data[i + 2] - b) < 30
                && data[i + 3] > 200) hits++;
        }
        return hits;
    }""", list(SERIES_RGB))
    path = shot(page, "meter")
    assert drawn > 200, drawn
    clip = page.locator("#chart").bounding_box()
    assert clip and clip["width"] > 400 and clip["height"] > 300
    page.screenshot(path=str(path.with_name("meter-chart.png")), clip=clip)


def test_switch_a_light_and_see_its_result(page: Page, demo: Demo) -> None:
    log_in(page, demo.token, "/console/lights")
    row = page.locator("#light-row-light-3")
    row.locator("input.dim").fill("35")
    row.locator("button.on").click()
    page.wait_for_url("**/console/commands/*")
    # The page refreshes itself while the request is pending.
    wait_until(lambda: page.inner_text("#request-status") != "PENDING", timeout=30, interval=0.3,
               what="the light's answer")
    assert page.inner_text("#request-status") == "SUCCEEDED"
    assert '"dimLevel": 35' in page.inner_text("#request-result")
    assert "SUCCEEDED" in page.inner_text("#commands")
    shot(page, "light-result")
    # A form without the CSRF value is refused.
    session = {c["name"]: c["value"] for c in page.context.cookies() if c["name"] == "gw_console"}
    assert session
    refused = httpx.post(f"{demo.api_url}/console/lights/light-3", data={"on": "false"}, cookies=session,
                         verify=demo_ca(demo))
    assert refused.status_code == 403


def test_pause_a_campaign(page: Page, demo: Demo, tmp_path: Path) -> None:
    campaign_id = _campaign_that_waits(demo, tmp_path)
    log_in(page, demo.token, f"/console/campaigns/{campaign_id}")
    assert page.inner_text("#campaign-state") == "RUNNING"
    assert "IN_FLIGHT" not in page.inner_text("#waves")  # counts, not states: a row per wave
    page.click("#pause")
    page.wait_for_selector("#message")
    assert page.inner_text("#campaign-state") == "PAUSED"
    assert demo.api.get(f"/v1/campaigns/{campaign_id}").json()["state"] == "PAUSED"
    shot(page, "campaign-paused")
    page.click("#resume")
    page.wait_for_selector("#message")
    assert page.inner_text("#campaign-state") == "RUNNING"
    page.click("#cancel")
    page.wait_for_selector("#message")
    assert page.inner_text("#campaign-state") in ("CANCELLED", "CANCELLING")


def test_every_page_needs_a_login_and_renders(page: Page, demo: Demo) -> None:
    for path in ("/console/commands", "/console/campaigns", "/console/dead-letters", "/console/events"):
        assert httpx.get(f"{demo.api_url}{path}", follow_redirects=False, verify=demo_ca(demo)).status_code == 303
    log_in(page, demo.token)
    for name, path, must in (("commands", "/console/commands", "setLight"), ("campaigns", "/console/campaigns", ""),
                             ("dead-letters", "/console/dead-letters", "messages kept"),
                             ("events", "/console/events", "CONCENTRATOR_ONLINE")):
        page.goto(path)
        assert must in page.inner_text("main"), name
        shot(page, name)


def _campaign_that_waits(demo: Demo, tmp_path: Path) -> str:
    """A running campaign whose one target is behind a concentrator that never connects: its
    update_firmware command stays in flight, so the campaign stays RUNNING until paused. The
    meter's model is its own, so no campaign of the demo's model (the recipe's) includes it."""
    api = demo.api
    for device in ({"identification": "console-conc", "deviceType": "CONCENTRATOR", "protocol": "MQTT"},
                   {"identification": "console-meter", "deviceType": "SMART_METER", "protocol": "DLMS",
                    "concentratorId": "console-conc", "model": CONSOLE_MODEL}):
        made = api.post("/v1/installation/devices", json=device)
        assert made.status_code in (201, 409), made.text
    key = demo.directory / "firmware-keys" / "signing.key"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "GRIDWIRE_API_TOKEN": demo.token, "GRIDWIRE_API_CA": str(demo.directory / "pki" / "ca.pem")}
    for argv in (["gridwire", "sim", "firmware-image", "--version", "9.9.9", "--out", "fw.bin"],
                 ["gridwire", "firmware", "sign", "--key", str(key), "--image", "fw.bin", "--firmware-id",
                  "console-9.9.9", "--version", "9.9.9", "--model", CONSOLE_MODEL, "--image-identifier", "CONSOLE"],
                 ["gridwire", "firmware", "upload", "--image", "fw.bin", "--manifest", "fw.bin.manifest.json",
                  "--api", demo.api_url]):
        done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, (argv, done.stderr)
    created = api.post("/v1/campaigns", json={"name": "console pause", "firmwareId": "console-9.9.9",
                                              "devices": ["console-meter"], "start": True})
    assert created.status_code == 201, created.text
    return created.json()["id"]
