"""The built-in dashboard and the API docs in real headless Chromium against a real ``up``.

Issue 8, acceptance 2: against ``iot-collector up --simulate 5`` (the devices are simulated
by the command itself), the page loads, lists the devices as online, draws a chart with data
points, updates within 10 s, logs no console error; screenshots are saved as artifacts (into
``$IOT_TEST_ARTIFACTS`` when set, else the test's temporary directory). With API keys set, the
page asks for a key, says clearly when one is wrong, and shows the data with the right one.

Chromium is the Debian package (``/usr/bin/chromium``), driven by Playwright's Python package;
Playwright's own browser downloads are never used.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from playwright.sync_api import ConsoleMessage, Page, Route, expect, sync_playwright

from support.mosquitto import free_port

if TYPE_CHECKING:
    from collections.abc import Iterator

    from playwright.sync_api import Browser

# Debian's package here; GitHub's Ubuntu runners have no usable one, but Google Chrome.
CHROMIUM = Path(os.environ.get("IOT_TEST_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SIMULATED = 5
DEVICES = tuple(f"sim-{i:04d}" for i in range(SIMULATED))  # what `up --simulate 5` names them
SENSORS = ("temperature", "humidity", "pressure", "co2", "battery")
API_KEY = "dashboard-test-key-0123456789abcdef"
KEY_STORAGE = "iotcollector.apiKey"
NO_VALUE = "\u2013"  # what a counter shows before it has a value

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason=f"{CHROMIUM} is absent (apt-get install chromium, or set IOT_TEST_CHROMIUM)",
    ),
]


def _artifacts(tmp_path: Path) -> Path:
    directory = Path(os.environ.get("IOT_TEST_ARTIFACTS") or tmp_path)
    directory.mkdir(parents=True, exist_ok=True)
    return directory


class Up:
    """``iot-collector up --simulate 5`` on free ports, in its own working directory."""

    def __init__(
        self, workdir: Path, env: dict[str, str] | None = None, simulate: int = SIMULATED
    ) -> None:
        self.mqtt_port, self.api_port = free_port(), free_port()
        self.base = f"http://127.0.0.1:{self.api_port}"
        self.log = workdir / "up.log"
        clean = {k: v for k, v in os.environ.items() if not k.startswith("IOT_")}
        clean |= {
            "IOT_EMBEDDED_MQTT_PORT": str(self.mqtt_port),
            "IOT_API_PORT": str(self.api_port),
            **(env or {}),
        }
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "iotcollector", "up", "--simulate", str(simulate)],
                cwd=workdir,
                env=clean,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"`up` exited {self.proc.returncode}: {self.log.read_text()}")
            try:
                if httpx.get(f"{self.base}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"`up` not ready after {timeout}s: {self.log.read_text()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Console:
    """Console errors and uncaught exceptions of a page."""

    def __init__(self, page: Page) -> None:
        self.errors: list[str] = []
        page.on("console", self._on_console)
        page.on("pageerror", lambda exc: self.errors.append(f"uncaught: {exc}"))

    def _on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(f"{message.text} ({message.location.get('url', '')})")

    def unexpected(self, *allowed: str) -> list[str]:
        return [e for e in self.errors if not any(a in e for a in allowed)]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def up(tmp_path: Path) -> Iterator[Up]:
    collector = Up(tmp_path)
    try:
        collector.wait_ready()
        yield collector
    finally:
        collector.stop()


@pytest.fixture
def up_with_keys(tmp_path: Path) -> Iterator[Up]:
    collector = Up(tmp_path, {"IOT_API_KEYS": API_KEY})
    try:
        collector.wait_ready()
        yield collector
    finally:
        collector.stop()


def _wait_for_devices(base: str, count: int, headers: dict[str, str] | None = None) -> None:
    """Wait until the API lists ``count`` devices, each with every simulated sensor type."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        body = httpx.get(f"{base}/api/devices", headers=headers, timeout=5).json()
        complete = [d for d in body["data"] if len(d["sensor_types"]) >= len(SENSORS)]
        if len(complete) >= count:
            return
        time.sleep(0.2)
    raise AssertionError(f"the API never listed {count} devices with {len(SENSORS)} sensors")


def _chart_totals(page: Page) -> tuple[int, int]:
    """(charts with points, readings summed over every chart) as the page shows them."""
    counts: list[int] = page.evaluate(
        """() => {
            const charts = [...document.querySelectorAll("figure.chart")];
            return [
                charts.filter((f) => Number(f.dataset.points) > 0 && f.querySelector("canvas"))
                    .length,
                charts.reduce((sum, f) => sum + Number(f.dataset.readings), 0),
            ];
        }"""
    )
    return counts[0], counts[1]


def _screenshots_keyboard_phone_and_dark(page: Page, artifacts: Path) -> None:
    """Screenshots on a desktop, a phone and in the dark scheme; the keyboard's way in."""
    desktop = artifacts / "dashboard-desktop.png"
    page.screenshot(path=str(desktop), full_page=True)
    print(f"screenshot: {desktop}")

    # Keyboard: the first Tab reaches the skip link, which leads to the content.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip-link"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"

    # A phone-sized screen: nothing wider than the viewport, the charts resized to fit.
    page.set_viewport_size({"width": 390, "height": 844})
    page.wait_for_timeout(500)
    overflow = page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0, f"the page is {overflow}px wider than a phone screen"
    widest = page.evaluate(
        """() => Math.max(...[...document.querySelectorAll("figure.chart canvas")]
            .map((c) => c.getBoundingClientRect().right))"""
    )
    assert 200 < widest <= 390, f"the charts were not fitted to the screen: {widest}px"
    phone = artifacts / "dashboard-phone.png"
    page.screenshot(path=str(phone), full_page=True)
    print(f"screenshot: {phone}")

    # The dark colour scheme: the charts are redrawn in its colours.
    page.set_viewport_size({"width": 1280, "height": 1000})
    page.emulate_media(color_scheme="dark")
    page.wait_for_timeout(300)
    dark = artifacts / "dashboard-dark.png"
    page.screenshot(path=str(dark), full_page=True)
    print(f"screenshot: {dark}")


def test_dashboard_shows_live_devices_charts_and_counters(
    browser: Browser, up: Up, tmp_path: Path
) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    page = context.new_page()
    console = Console(page)
    try:
        _wait_for_devices(up.base, len(DEVICES))
        response = page.goto(f"{up.base}/")
        assert response is not None
        assert response.ok
        assert "default-src 'self'" in (response.headers.get("content-security-policy") or "")

        # Devices, listed as online.
        online = page.locator("#devices tbody tr[data-status='online']")
        expect(online).to_have_count(len(DEVICES), timeout=15_000)
        for device in DEVICES:
            expect(page.locator(f"#devices tbody tr[data-device='{device}']")).to_contain_text(
                "online"
            )
        expect(page.locator("#connection")).to_contain_text(
            f"{len(DEVICES)} of {len(DEVICES)} devices online"
        )

        # One chart per device and sensor type, drawn with data points.
        expect(page.locator("figure.chart")).to_have_count(len(DEVICES) * len(SENSORS))
        page.wait_for_function(
            """() => [...document.querySelectorAll("figure.chart")].some(
                (f) => Number(f.dataset.points) > 0 && f.querySelector("canvas"))""",
            timeout=15_000,
        )
        drawn, readings_before = _chart_totals(page)
        assert drawn >= 1
        # Every drawn card as high as the others, whatever its caption holds.
        heights = page.evaluate(
            """() => [...document.querySelectorAll("figure.chart[data-state='ok']")].map(
                (f) => Math.round(f.getBoundingClientRect().height))"""
        )
        assert len(set(heights)) == 1, heights
        first = page.locator("figure.chart[data-state='ok']").first
        expect(first.locator("canvas")).to_be_visible()
        label = first.locator(".plot").get_attribute("aria-label") or ""
        assert "readings in" in label, label

        # It updates by itself within 10 s: the counters and the charts move on.
        received_before = page.locator("#m-received").inner_text()
        started = time.monotonic()
        page.wait_for_function(
            """([received, readings]) => {
                const charts = [...document.querySelectorAll("figure.chart")];
                const total = charts.reduce((sum, f) => sum + Number(f.dataset.readings), 0);
                return document.getElementById("m-received").textContent !== received
                    && total > readings;
            }""",
            arg=[received_before, readings_before],
            timeout=10_000,
        )
        print(f"dashboard updated after {time.monotonic() - started:.1f} s")
        expect(page.locator("#m-message-rate")).not_to_have_text(NO_VALUE, timeout=10_000)

        _screenshots_keyboard_phone_and_dark(page, _artifacts(tmp_path))

        assert console.unexpected() == []
    finally:
        context.close()


def test_api_docs_render_with_the_network_cut(browser: Browser, up: Up, tmp_path: Path) -> None:
    """Issue 14: /docs is Swagger UI from the package; every request elsewhere is aborted."""
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    elsewhere: list[str] = []

    def only_the_collector(route: Route) -> None:
        if route.request.url.startswith(up.base + "/"):
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    context.route("**/*", only_the_collector)
    page = context.new_page()
    console = Console(page)
    try:
        response = page.goto(f"{up.base}/docs")
        assert response is not None
        assert response.ok
        operations = page.locator(".opblock")
        expect(operations.first).to_be_visible(timeout=15_000)
        paths = set(page.locator(".opblock-summary-path").all_inner_texts())
        assert {"/api/data", "/api/devices", "/healthz"} <= {p.replace("\u200b", "") for p in paths}
        expect(page.locator(".opblock-get").first).to_be_visible()
        expect(page.locator(".opblock-post").first).to_be_visible()
        screenshot = _artifacts(tmp_path) / "api-docs-offline.png"
        page.screenshot(path=str(screenshot))
        print(f"screenshot: {screenshot}")
        assert elsewhere == []
        assert console.unexpected() == []
    finally:
        context.close()


def test_dashboard_without_devices_says_where_to_publish(browser: Browser, tmp_path: Path) -> None:
    up = Up(tmp_path, simulate=0)
    context = browser.new_context(viewport={"width": 1024, "height": 800})
    try:
        up.wait_ready()
        page = context.new_page()
        console = Console(page)
        page.goto(f"{up.base}/")
        empty = page.locator("#devices-empty")
        expect(empty).to_be_visible(timeout=15_000)
        expect(empty).to_contain_text(
            f"Publish readings to the MQTT topic iot/data on the broker "
            f"mqtt://127.0.0.1:{up.mqtt_port}"
        )
        assert console.unexpected() == []
    finally:
        context.close()
        up.stop()


def test_dashboard_asks_for_the_api_key(browser: Browser, up_with_keys: Up, tmp_path: Path) -> None:
    up = up_with_keys
    context = browser.new_context(viewport={"width": 1024, "height": 900})
    page = context.new_page()
    console = Console(page)
    try:
        _wait_for_devices(up.base, 1, {"Authorization": f"Bearer {API_KEY}"})
        page.goto(f"{up.base}/")

        # The page itself is open; the data is not: it asks for a key.
        form = page.locator("#key-section")
        expect(form).to_be_visible(timeout=10_000)
        expect(page.locator("#content")).to_be_hidden()
        expect(page.locator("#connection")).to_have_text("An API key is required")
        expect(page.get_by_label("API key", exact=True)).to_be_focused()

        # A wrong key is refused with a clear message.
        page.get_by_label("API key", exact=True).fill("not-the-right-key-0123456789")
        page.get_by_role("button", name="Connect").click()
        error = page.locator("#key-error")
        expect(error).to_contain_text("This key was rejected by the collector")
        expect(page.get_by_label("API key", exact=True)).to_have_attribute("aria-invalid", "true")
        expect(page.locator("#content")).to_be_hidden()
        assert page.evaluate(f"localStorage.getItem('{KEY_STORAGE}')") is None
        rejected = _artifacts(tmp_path) / "dashboard-key-rejected.png"
        page.screenshot(path=str(rejected))
        print(f"screenshot: {rejected}")

        # The right key, submitted with the keyboard, shows the data and is kept.
        page.get_by_label("API key", exact=True).fill(API_KEY)
        page.keyboard.press("Enter")
        expect(form).to_be_hidden()
        expect(page.locator("#devices tbody tr[data-status='online']")).to_have_count(
            len(DEVICES), timeout=15_000
        )
        page.wait_for_function(
            """() => [...document.querySelectorAll("figure.chart")].some(
                (f) => Number(f.dataset.points) > 0)""",
            timeout=15_000,
        )
        assert page.evaluate(f"localStorage.getItem('{KEY_STORAGE}')") == API_KEY
        screenshot = _artifacts(tmp_path) / "dashboard-with-key.png"
        page.screenshot(path=str(screenshot), full_page=True)
        print(f"screenshot: {screenshot}")

        # Reloaded, it uses the kept key without asking.
        page.reload()
        expect(page.locator("#devices tbody tr")).to_have_count(len(DEVICES), timeout=15_000)
        expect(form).to_be_hidden()
        expect(page.get_by_role("button", name="Forget API key")).to_be_visible()

        # A kept key that stops working (keys rotated): it asks again, and says why.
        page.evaluate(f"localStorage.setItem('{KEY_STORAGE}', 'rotated-away-key-0123456789')")
        page.reload()
        expect(form).to_be_visible(timeout=10_000)
        expect(error).to_contain_text("The saved key was not accepted")
        assert page.evaluate(f"localStorage.getItem('{KEY_STORAGE}')") is None

        # The only console errors are Chromium's notes of the refused (401) requests.
        assert console.unexpected("status of 401") == []
    finally:
        context.close()


def test_dashboard_lists_dead_letters_pending_then_replayed(
    browser: Browser, up: Up, tmp_path: Path
) -> None:
    import paho.mqtt.client as mqtt  # noqa: PLC0415
    from paho.mqtt.enums import CallbackAPIVersion  # noqa: PLC0415

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="dead-letter-test")
    client.connect("127.0.0.1", up.mqtt_port)
    client.loop_start()
    client.publish("iot/data", b'{"t": 21.5}', qos=1).wait_for_publish(timeout=10)
    client.loop_stop()
    client.disconnect()
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    page = context.new_page()
    console = Console(page)
    try:
        page.goto(f"{up.base}/")
        row = page.locator("#rejected tbody tr").first
        expect(row).to_contain_text("missing_field", timeout=15_000)
        expect(row).to_contain_text("iot/data")
        expect(row.locator(".badge")).to_have_text("pending")
        # The rule that was missing, then the real replay command on the same database.
        rules = tmp_path / "rules.yaml"
        rules.write_text(
            'mappings:\n  - topic: "iot/data"\n    device_id: boiler-7\n'
            '    readings: [{sensor_type: temperature, value: "$.t"}]\n'
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("IOT_")}
        env |= {
            "IOT_DATABASE_URL": f"sqlite:///{tmp_path}/data/iot.db",
            "IOT_MAPPINGS_FILE": str(rules),
        }
        done = subprocess.run(
            [sys.executable, "-m", "iotcollector", "rejected", "replay"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert "1 stored" in done.stdout
        expect(row.locator(".badge")).to_have_text("replayed", timeout=15_000)
        assert console.unexpected() == []
    finally:
        context.close()
